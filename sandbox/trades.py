"""The sandbox platforms' order query, close and refunds, and the test controls for notifications.

Alipay (through the gateway, RSA2-signed form in, signed `<method>_response` out):
`alipay.trade.query`, `alipay.trade.close`, `alipay.trade.refund` (synchronous, idempotent
per `out_request_no`: a retry answers `fund_change` N and moves no money) and
`alipay.trade.fastpay.refund.query`.

WeChat Pay API v3 (WECHATPAY2-SHA256-RSA2048 request signature verified, answers signed):
`GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`, `POST .../{out_trade_no}/close`
(204), `POST /v3/refund/domestic/refunds` (PROCESSING, idempotent per `out_refund_no`; the
refund then ends as `refund_outcome` says and a signed, encrypted `REFUND.*` notification
goes to its notify_url) and `GET /v3/refund/domestic/refunds/{out_refund_no}`.

Test controls: `POST /sandbox/notifications/rules` drops or delays notifications of one
channel or one order; `POST /sandbox/wechatpay/refund-outcome` sets how WeChat Pay
refunds end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.payments import (
    ALIPAY_METHODS,
    CST,
    SandboxPayments,
    _alipay_refusal,
    state,
    wechat_authorization,
)

router = APIRouter(tags=["sandbox payments"])

PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")


def _now_text(st: SandboxPayments) -> str:
    return datetime.fromtimestamp(st.now(), CST).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(value: str) -> Decimal:
    return Decimal(value)


def _biz(params: dict[str, str]) -> dict[str, Any] | None:
    try:
        biz = json.loads(params.get("biz_content", ""))
    except ValueError:
        return None
    return biz if isinstance(biz, dict) else None


def _alipay_trade(st: SandboxPayments, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any] | None:
    trade_no = biz.get("trade_no") or st.alipay_by_order.get((params.get("app_id", ""), str(biz.get("out_trade_no"))))
    return st.alipay_trades.get(str(trade_no)) if trade_no else None


# ---- Alipay ---------------------------------------------------------------------------------------


async def alipay_query(st: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    node = "alipay_trade_query_response"
    biz = _biz(params)
    trade = _alipay_trade(st, params, biz or {})
    if trade is None:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                                   "sub_msg": "交易不存在"}, node)
    answer = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
              "trade_status": trade["trade_status"], "total_amount": trade["total_amount"],
              "buyer_logon_id": "sandbox***@example.com"}
    if trade.get("gmt_payment"):
        answer["send_pay_date"] = trade["gmt_payment"]
    return st.alipay_response(answer, node)


async def alipay_close(st: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    node = "alipay_trade_close_response"
    trade = _alipay_trade(st, params, _biz(params) or {})
    if trade is None:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                                   "sub_msg": "交易不存在"}, node)
    if trade["trade_status"] in PAID:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR",
                                   "sub_msg": "交易状态不合法"}, node)
    trade["trade_status"] = "TRADE_CLOSED"
    return st.alipay_response({"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                               "out_trade_no": trade["out_trade_no"]}, node)


async def alipay_refund(st: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    node = "alipay_trade_refund_response"
    biz = _biz(params) or {}
    trade = _alipay_trade(st, params, biz)
    out_request_no = str(biz.get("out_request_no") or biz.get("out_trade_no") or "")
    amount = str(biz.get("refund_amount") or "")
    if trade is None:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                                   "sub_msg": "交易不存在"}, node)
    try:
        wanted = _yuan(amount)
    except ArithmeticError:
        return _alipay_refusal(st, "ACQ.INVALID_PARAMETER", "参数无效")
    key = (trade["trade_no"], out_request_no)
    existing = st.alipay_refunds.get(key)
    refunded = sum((_yuan(r["refund_amount"]) for r in st.alipay_refunds.values() if r["trade_no"] == trade["trade_no"]),
                   Decimal(0))
    if existing is not None:
        if existing["refund_amount"] != amount:
            return st.alipay_response({"code": "40004", "msg": "Business Failed",
                                       "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "sub_msg": "退款金额超限"}, node)
        fund_change = "N"
    else:
        if trade["trade_status"] not in PAID and not (trade["trade_status"] == "TRADE_CLOSED" and refunded):
            return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR",
                                       "sub_msg": "交易状态不合法"}, node)
        if wanted <= 0 or refunded + wanted > _yuan(trade["total_amount"]):
            return st.alipay_response({"code": "40004", "msg": "Business Failed",
                                       "sub_code": "ACQ.REASON_TRADE_REFUND_FEE_ERR", "sub_msg": "退款金额无效"}, node)
        st.alipay_refunds[key] = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                                  "out_request_no": out_request_no, "refund_amount": amount,
                                  "refund_reason": str(biz.get("refund_reason") or ""), "gmt_refund_pay": _now_text(st)}
        st.refunds_moved += 1
        refunded += wanted
        if refunded == _yuan(trade["total_amount"]):
            trade["trade_status"] = "TRADE_CLOSED"  # Alipay closes a trade refunded in full
        fund_change = "Y"
    return st.alipay_response({
        "code": "10000", "msg": "Success", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
        "buyer_logon_id": "sandbox***@example.com", "fund_change": fund_change, "refund_fee": f"{refunded:.2f}",
        "gmt_refund_pay": st.alipay_refunds[key]["gmt_refund_pay"],
    }, node)


async def alipay_refund_query(st: SandboxPayments, params: dict[str, str], request: Request) -> Response:
    node = "alipay_trade_fastpay_refund_query_response"
    biz = _biz(params) or {}
    trade = _alipay_trade(st, params, biz)
    refund = st.alipay_refunds.get((trade["trade_no"], str(biz.get("out_request_no")))) if trade else None
    if trade is None:
        return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                                   "sub_msg": "交易不存在"}, node)
    answer: dict[str, Any] = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                              "out_trade_no": trade["out_trade_no"]}
    if refund is not None:  # an unknown out_request_no answers success without refund fields
        answer.update(out_request_no=refund["out_request_no"], refund_amount=refund["refund_amount"],
                      total_amount=trade["total_amount"], refund_status="REFUND_SUCCESS")
    return st.alipay_response(answer, node)


ALIPAY_METHODS.update({
    "alipay.trade.query": alipay_query,
    "alipay.trade.close": alipay_close,
    "alipay.trade.refund": alipay_refund,
    "alipay.trade.fastpay.refund.query": alipay_refund_query,
})


# ---- WeChat Pay ---------------------------------------------------------------------------------------


async def verified_wechat_request(st: SandboxPayments, request: Request) -> tuple[dict[str, str] | None, bytes]:
    """The merchant's authorization fields when its signature over the request verifies, else None."""
    body = await request.body()
    auth = wechat_authorization(st, request, body)
    return (None if isinstance(auth, str) else auth), body


def _order_answer(order: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "appid": order["appid"], "mchid": order["mchid"], "out_trade_no": order["out_trade_no"],
        "trade_state": order["trade_state"], "trade_state_desc": order["trade_state"],
        "amount": {"total": order["total"], "currency": "CNY"},
    }
    if order["trade_state"] in ("SUCCESS", "REFUND"):
        out.update(transaction_id=order["transaction_id"], trade_type="JSAPI", bank_type="OTHERS",
                   success_time=order.get("success_time"), payer={"openid": order["openid"]})
        out["amount"].update(payer_total=order["total"], payer_currency="CNY")
    return out


@router.get("/sandbox/wechatpay/v3/pay/transactions/out-trade-no/{out_trade_no}",
            summary="WeChat Pay API v3: query an order by out_trade_no")
async def wechat_query(out_trade_no: str, request: Request) -> Response:
    st = state(request)
    auth, _body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    mchid = request.query_params.get("mchid") or ""
    if mchid != auth.get("mchid"):
        return st.wechat_error(400, "PARAM_ERROR", "mchid 与请求商户不符")
    order = st.wechat_orders.get((mchid, out_trade_no))
    if order is None:
        return st.wechat_error(404, "ORDER_NOT_EXIST", "订单不存在")
    return st.wechat_signed(json.dumps(_order_answer(order), ensure_ascii=False).encode())


@router.post("/sandbox/wechatpay/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
             summary="WeChat Pay API v3: close an unpaid order (204)")
async def wechat_close(out_trade_no: str, request: Request) -> Response:
    st = state(request)
    auth, body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    try:
        mchid = json.loads(body)["mchid"]
    except (ValueError, KeyError, TypeError):
        return st.wechat_error(400, "PARAM_ERROR", "参数错误")
    if mchid != auth.get("mchid"):
        return st.wechat_error(400, "PARAM_ERROR", "mchid 与请求商户不符")
    order = st.wechat_orders.get((mchid, out_trade_no))
    if order is None:
        return st.wechat_error(404, "ORDER_NOT_EXIST", "订单不存在")
    if order["trade_state"] in ("SUCCESS", "REFUND"):
        return st.wechat_error(400, "ORDERPAID", "订单已支付")
    order["trade_state"] = "CLOSED"
    resp = st.wechat_signed(b"", 204)
    del resp.headers["content-type"]
    return resp


def _refund_answer(refund: dict[str, Any]) -> dict[str, Any]:
    out = {k: refund[k] for k in ("refund_id", "out_refund_no", "transaction_id", "out_trade_no", "channel",
                                  "user_received_account", "create_time", "status", "funds_account")}
    out["amount"] = {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                     "payer_refund": refund["refund"], "settlement_refund": refund["refund"],
                     "settlement_total": refund["total"], "discount_refund": 0, "currency": "CNY"}
    if refund.get("success_time"):
        out["success_time"] = refund["success_time"]
    return out


@router.post("/sandbox/wechatpay/v3/refund/domestic/refunds", summary="WeChat Pay API v3: apply for a refund")
async def wechat_refund(request: Request) -> Response:
    st = state(request)
    auth, body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    mchid = auth["mchid"]
    try:
        data = json.loads(body)
        out_refund_no, amount = str(data["out_refund_no"]), data["amount"]
        refund_fen, total_fen = amount["refund"], amount["total"]
    except (ValueError, KeyError, TypeError):
        return st.wechat_error(400, "PARAM_ERROR", "参数错误")
    order = st.wechat_orders.get((mchid, str(data.get("out_trade_no"))))
    if order is None:
        return st.wechat_error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    existing = st.wechat_refunds.get((mchid, out_refund_no))
    if existing is not None:
        if existing["refund"] != refund_fen:
            return st.wechat_error(400, "INVALID_REQUEST", "退款单号重复")
        return st.wechat_signed(json.dumps(_refund_answer(existing), ensure_ascii=False).encode())
    if order["trade_state"] not in ("SUCCESS", "REFUND"):
        return st.wechat_error(400, "INVALID_REQUEST", "订单未支付")
    if not isinstance(refund_fen, int) or refund_fen <= 0 or total_fen != order["total"]:
        return st.wechat_error(400, "PARAM_ERROR", "退款金额无效")
    refunded = sum(r["refund"] for r in st.wechat_refunds.values()
                   if r["out_trade_no"] == order["out_trade_no"] and r["status"] != "CLOSED")
    if refunded + refund_fen > order["total"]:
        return st.wechat_error(403, "NOT_ENOUGH", "退款金额超过可退金额")
    refund = {
        "mchid": mchid, "refund_id": "5030" + "".join(secrets.choice("0123456789") for _ in range(25)),
        "out_refund_no": out_refund_no, "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
        "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "funds_account": "AVAILABLE",
        "create_time": datetime.fromtimestamp(st.now(), CST).isoformat(timespec="seconds"), "status": "PROCESSING",
        "total": order["total"], "refund": refund_fen, "reason": str(data.get("reason") or ""),
        "notify_url": str(data.get("notify_url") or ""), "notify_attempts": 0,
    }
    st.wechat_refunds[(mchid, out_refund_no)] = refund
    st.refunds_moved += 1
    st.spawn(_finish_wechat_refund(st, refund, order))
    return st.wechat_signed(json.dumps(_refund_answer(refund), ensure_ascii=False).encode())


async def _finish_wechat_refund(st: SandboxPayments, refund: dict[str, Any], order: dict[str, Any]) -> None:
    await asyncio.sleep(st.refund_settle_seconds)
    refund["status"] = st.refund_outcome
    if refund["status"] == "SUCCESS":
        refund["success_time"] = datetime.fromtimestamp(st.now(), CST).isoformat(timespec="seconds")
        order["trade_state"] = "REFUND"
    if refund["notify_url"]:
        await st._deliver(refund, refund["notify_url"], lambda: refund_notification(st, refund),
                          lambda r: r.status_code in (200, 204), st.wechat_attempts)


def refund_notification(st: SandboxPayments, refund: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A signed notification whose resource (original_type refund) is AEAD_AES_256_GCM-encrypted."""
    resource = {
        "mchid": refund["mchid"], "out_trade_no": refund["out_trade_no"], "transaction_id": refund["transaction_id"],
        "out_refund_no": refund["out_refund_no"], "refund_id": refund["refund_id"],
        "refund_status": refund["status"], "user_received_account": refund["user_received_account"],
        "amount": {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                   "payer_refund": refund["refund"]},
    }
    if refund.get("success_time"):
        resource["success_time"] = refund["success_time"]
    nonce, associated = secrets.token_hex(6), "refund"
    ct = AESGCM(st._key("wechatpay-apiv3.key")).encrypt(
        nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), associated.encode()
    )
    envelope = {
        "id": str(uuid.uuid4()), "create_time": datetime.fromtimestamp(st.now(), CST).isoformat(timespec="seconds"),
        "resource_type": "encrypt-resource", "event_type": f"REFUND.{refund['status']}", "summary": "退款状态变更",
        "resource": {"original_type": "refund", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": base64.b64encode(ct).decode(), "associated_data": associated, "nonce": nonce},
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    signed = st.wechat_signed(body)
    headers = {k: v for k, v in signed.headers.items() if k.lower().startswith("wechatpay-")}
    headers["Content-Type"] = "application/json"
    return body, headers


@router.get("/sandbox/wechatpay/v3/refund/domestic/refunds/{out_refund_no}",
            summary="WeChat Pay API v3: query a refund by out_refund_no")
async def wechat_refund_query(out_refund_no: str, request: Request) -> Response:
    st = state(request)
    auth, _body = await verified_wechat_request(st, request)
    if auth is None:
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    refund = st.wechat_refunds.get((auth["mchid"], out_refund_no))
    if refund is None:
        return st.wechat_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return st.wechat_signed(json.dumps(_refund_answer(refund), ensure_ascii=False).encode())


# ---- test controls ---------------------------------------------------------------------------------------


@router.post("/sandbox/notifications/rules", summary="Drop or delay notifications of a channel or an order (sandbox only)")
async def notification_rule(request: Request) -> Response:
    """Body `{"target": "alipay" | "wechat" | <out_trade_no>, "drop": bool, "delay_seconds": number}`;
    `{"target": ..., "clear": true}` removes the rule."""
    st = state(request)
    try:
        body = await request.json()
        target = str(body["target"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"code": "PARAM_ERROR", "message": "target required"}, status_code=400)
    if body.get("clear"):
        st.notify_rules.pop(target, None)
    else:
        st.notify_rules[target] = {"drop": bool(body.get("drop")), "delay_seconds": float(body.get("delay_seconds") or 0)}
    return JSONResponse({"rules": st.notify_rules})


@router.post("/sandbox/wechatpay/refund-outcome", summary="How WeChat Pay refunds end from now on (sandbox only)")
async def refund_outcome(request: Request) -> Response:
    st = state(request)
    try:
        outcome = str((await request.json())["status"])
    except (ValueError, KeyError, TypeError):
        outcome = ""
    if outcome not in ("SUCCESS", "ABNORMAL", "CLOSED"):
        return JSONResponse({"code": "PARAM_ERROR", "message": "status: SUCCESS, ABNORMAL or CLOSED"}, status_code=400)
    st.refund_outcome = outcome
    return JSONResponse({"status": outcome})
