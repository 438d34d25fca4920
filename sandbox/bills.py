"""The sandbox platforms' daily bills, built from the sandbox's own trades and refunds.

Alipay: `alipay.data.dataservice.bill.downloadurl.query` (bill_type `trade`, bill_date
`YYYY-MM-DD`) answers `bill_download_url`; that URL serves a ZIP holding the day's detail
bill and its summary, GBK CSV in Alipay's layout (comment lines start with `#`).

WeChat Pay: `GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=GZIP` answers
`download_url`, `hash_type` SHA1 and `hash_value` (of the bill before gzip); the download is
a signed request and answers the gzipped bill (every field prefixed with a backtick, then
the summary header and line).

A day is a calendar day in Asia/Shanghai: trades by the time they were paid, refunds by
the time they succeeded. Only days before today have a bill.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import zipfile
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.payments import ALIPAY_METHODS, CST, SandboxPayments, state
from sandbox.trades import verified_wechat_request

router = APIRouter(tags=["sandbox payments"])

ALIPAY_COLUMNS = [
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员",
    "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）",
    "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号",
    "服务费（元）", "分润（元）", "备注",
]
WECHAT_COLUMNS = [
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识", "交易类型",
    "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号", "商户退款单号", "退款金额",
    "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额",
    "费率备注",
]
WECHAT_SUMMARY = ["总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额", "申请退款总金额"]


def _day(text: str | None) -> str | None:
    """The Shanghai calendar day of a platform time (`YYYY-MM-DD HH:MM:SS` or RFC 3339)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace(" ", "T")).astimezone(CST).date().isoformat() if "T" in text or "+" in text \
        else text[:10]


def _billable(st: SandboxPayments, bill_date: str) -> bool:
    try:
        day = date.fromisoformat(bill_date)
    except ValueError:
        return False
    return day < datetime.fromtimestamp(st.now(), CST).date()


def alipay_bill_rows(st: SandboxPayments, app_id: str, bill_date: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for trade in sorted(st.alipay_trades.values(), key=lambda t: (t.get("gmt_payment") or "", t["trade_no"])):
        if trade["app_id"] != app_id or not trade.get("gmt_payment") or _day(trade["gmt_payment"]) != bill_date:
            continue
        rows.append([trade["trade_no"] + "\t", trade["out_trade_no"] + "\t", "交易", trade["subject"],
                     trade["gmt_create"], trade["gmt_payment"], "", "", "", "", "sandbox***@example.com",
                     trade["total_amount"], trade["total_amount"], "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00",
                     "0.00", "", "0.00", "0.00", ""])
    for refund in sorted(st.alipay_refunds.values(), key=lambda r: (r["gmt_refund_pay"], r["out_request_no"])):
        paid = st.alipay_trades.get(refund["trade_no"])
        if paid is None or paid["app_id"] != app_id or _day(refund["gmt_refund_pay"]) != bill_date:
            continue
        rows.append([paid["trade_no"] + "\t", paid["out_trade_no"] + "\t", "退款", paid["subject"],
                     paid["gmt_create"], refund["gmt_refund_pay"], "", "", "", "", "sandbox***@example.com",
                     paid["total_amount"], f"-{refund['refund_amount']}", "0.00", "0.00", "0.00", "0.00", "0.00", "",
                     "0.00", "0.00", refund["out_request_no"] + "\t", "0.00", "0.00", refund.get("refund_reason", "")])
    return rows


def alipay_bill_zip(st: SandboxPayments, app_id: str, bill_date: str) -> bytes:
    """The day's bill as Alipay ships it: a ZIP of GBK CSV files."""
    rows = alipay_bill_rows(st, app_id, bill_date)
    day = bill_date.replace("-", "")
    zh = f"{bill_date[:4]}年{bill_date[5:7]}月{bill_date[8:10]}日"
    out = io.StringIO()
    out.write("#支付宝业务明细查询\r\n")
    out.write(f"#账号：[{app_id}]\r\n")
    out.write(f"#起始日期：[{zh} 00:00:00]   终止日期：[{zh} 23:59:59]\r\n")
    out.write("#-----------------------------------------业务明细列表----------------------------------------\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ALIPAY_COLUMNS)
    writer.writerows(rows)
    trades = [r for r in rows if r[2] == "交易"]
    refunds = [r for r in rows if r[2] == "退款"]
    out.write("#-----------------------------------------业务明细列表结束------------------------------------\r\n")
    out.write(f"#交易合计：{len(trades)}笔，商家实收共{sum((Decimal(r[12]) for r in trades), Decimal(0)):.2f}元\r\n")
    out.write(f"#退款合计：{len(refunds)}笔，商家实收共{sum((Decimal(r[12]) for r in refunds), Decimal(0)):.2f}元\r\n")
    out.write(f"#导出时间：[{datetime.fromtimestamp(st.now(), CST):%Y年%m月%d日 %H:%M:%S}]\r\n")
    summary = f"#支付宝业务汇总查询\r\n#账号：[{app_id}]\r\n交易笔数,退款笔数\r\n{len(trades)},{len(refunds)}\r\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{app_id}_{day}_业务明细.csv", out.getvalue().encode("gbk"))
        zf.writestr(f"{app_id}_{day}_业务明细(汇总).csv", summary.encode("gbk"))
    return buf.getvalue()


async def alipay_bill_url(st: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    node = "alipay_data_dataservice_bill_downloadurl_query_response"
    try:
        biz = json.loads(params.get("biz_content", ""))
    except ValueError:
        biz = {}
    bill_date = str(biz.get("bill_date") or "") if isinstance(biz, dict) else ""
    if not isinstance(biz, dict) or biz.get("bill_type") not in ("trade", "signcustomer") or len(bill_date) != 10:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-arguments",
                                   "sub_msg": "参数无效"}, node)
    if not _billable(st, bill_date):
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist",
                                   "sub_msg": "账单不存在"}, node)
    url = str(request.base_url).rstrip("/") + f"/sandbox/alipay/bills/{params['app_id']}/{bill_date}.zip"
    return st.alipay_response({"code": "10000", "msg": "Success", "bill_download_url": url}, node)


ALIPAY_METHODS["alipay.data.dataservice.bill.downloadurl.query"] = alipay_bill_url


@router.get("/sandbox/alipay/bills/{app_id}/{bill_date}.zip", summary="An Alipay day bill (ZIP of GBK CSV)")
async def alipay_bill(app_id: str, bill_date: str, request: Request) -> Response:
    st = state(request)
    if not _billable(st, bill_date):
        return Response(status_code=404)
    return Response(alipay_bill_zip(st, app_id, bill_date), media_type="application/zip")


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


def wechat_bill_text(st: SandboxPayments, mchid: str, bill_date: str) -> bytes:
    """The day's ALL bill: every field prefixed with a backtick, then the summary."""
    rows: list[list[str]] = []
    orders = [o for o in st.wechat_orders.values()
              if o["mchid"] == mchid and o.get("success_time") and _day(o["success_time"]) == bill_date]
    settled = refunded = 0
    for o in sorted(orders, key=lambda o: (o["success_time"], o["out_trade_no"])):
        t = datetime.fromisoformat(o["success_time"]).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([t, o["appid"], mchid, "0", "", o["transaction_id"], o["out_trade_no"], o["openid"], "JSAPI",
                     "SUCCESS", "OTHERS", "CNY", _yuan(o["total"]), "0.00", "0", "0", "0.00", "0.00", "", "",
                     o.get("description", ""), "", "0.00000", "0.60%", _yuan(o["total"]), "0.00", ""])
        settled += o["total"]
    refunds = [r for r in st.wechat_refunds.values()
               if r["mchid"] == mchid and r.get("success_time") and _day(r["success_time"]) == bill_date]
    for r in sorted(refunds, key=lambda r: (r["success_time"], r["out_refund_no"])):
        order = st.wechat_orders[(mchid, r["out_trade_no"])]
        t = datetime.fromisoformat(r["success_time"]).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([t, order["appid"], mchid, "0", "", r["transaction_id"], r["out_trade_no"], order["openid"],
                     "JSAPI", "REFUND", "OTHERS", "CNY", "0.00", "0.00", r["refund_id"], r["out_refund_no"],
                     _yuan(r["refund"]), "0.00", "ORIGINAL", "SUCCESS", order.get("description", ""), "", "0.00000",
                     "0.60%", _yuan(r["total"]), _yuan(r["refund"]), ""])
        refunded += r["refund"]
    lines = [",".join(WECHAT_COLUMNS)]
    lines += [",".join("`" + f for f in row) for row in rows]
    lines.append(",".join(WECHAT_SUMMARY))
    lines.append(",".join("`" + f for f in [str(len(rows)), _yuan(settled), _yuan(refunded), "0.00", "0.00000",
                                             _yuan(settled), _yuan(refunded)]))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _token(mchid: str, bill_date: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([mchid, bill_date]).encode()).decode().rstrip("=")


def _untoken(token: str) -> tuple[str, str] | None:
    try:
        mchid, bill_date = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        return None
    return str(mchid), str(bill_date)


@router.get("/sandbox/wechatpay/v3/bill/tradebill", summary="WeChat Pay API v3: where to download a day's trade bill")
async def wechat_tradebill(request: Request) -> Response:
    st = state(request)
    auth, _body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    bill_date = request.query_params.get("bill_date", "")
    if request.query_params.get("bill_type", "ALL") != "ALL" or len(bill_date) != 10:
        return st.wechat_error(400, "PARAM_ERROR", "参数错误")
    if not _billable(st, bill_date):
        return st.wechat_error(400, "NO_STATEMENT_EXIST", "账单文件不存在")
    text = wechat_bill_text(st, auth["mchid"], bill_date)
    url = str(request.base_url).rstrip("/") + "/sandbox/wechatpay/v3/billdownload/file?token=" + _token(auth["mchid"], bill_date)
    answer: dict[str, Any] = {"hash_type": "SHA1", "hash_value": hashlib.sha1(text, usedforsecurity=False).hexdigest(), "download_url": url}
    return st.wechat_signed(json.dumps(answer).encode())


@router.get("/sandbox/wechatpay/v3/billdownload/file", summary="WeChat Pay API v3: download a bill (gzip)")
async def wechat_bill_download(request: Request) -> Response:
    st = state(request)
    auth, _body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    found = _untoken(request.query_params.get("token", ""))
    if found is None or found[0] != auth["mchid"] or not _billable(st, found[1]):
        return st.wechat_error(400, "PARAM_ERROR", "token 无效")
    data = gzip.compress(wechat_bill_text(st, found[0], found[1]), mtime=0)
    return Response(data, media_type="application/octet-stream")
