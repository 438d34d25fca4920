"""The payment side of the sandbox: a local stand-in for Alipay and WeChat Pay.

It accepts `alipay.trade.create` (verifying our RSA2 request signature) and the
WeChat Pay API v3 JSAPI prepay call (verifying our WECHATPAY2-SHA256-RSA2048
authorization), answers signed like the real platforms, lets a person "pay"
(`POST /sandbox/alipay/trades/{trade_no}/pay`,
`POST /sandbox/wechatpay/transactions/{out_trade_no}/pay`) and then sends a signed
(for WeChat Pay also encrypted) notification to the notify_url given at creation,
retrying on a bounded, compressed schedule until it is acknowledged. State is
kept in memory: this is a development stand-in, never a platform.

It is written against the published rules with `cryptography` directly, apart
from the service's own client code, so each side checks the other.

Settings (environment): SANDBOX_NOTIFY_RETRY_SECONDS (first retry delay, default 2),
SANDBOX_ALIPAY_NOTIFY_ATTEMPTS (8), SANDBOX_WECHATPAY_NOTIFY_ATTEMPTS (15),
SANDBOX_WECHATPAY_PLATFORM_SERIAL (the key id it names in Wechatpay-Serial);
keys from $SOCIALSEC_VAR_DIR/keys/.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.common.identifiers import ascii_digits

log = logging.getLogger("socialsec.sandbox.payments")

router = APIRouter(tags=["sandbox payments"])

CST = timezone(timedelta(hours=8))
DEFAULT_PLATFORM_SERIAL = "PUB_KEY_ID_0112345678901234567890123456789012"
WECHAT_SCHEMA = "WECHATPAY2-SHA256-RSA2048"


def _sign(key: Any, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verify(key: Any, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class SandboxPayments:
    """The sandbox platforms' keys, trades and notification deliveries."""

    def __init__(
        self,
        *,
        keys_dir: Path,
        retry_seconds: float = 2.0,
        alipay_attempts: int = 8,
        wechat_attempts: int = 15,
        platform_serial: str = DEFAULT_PLATFORM_SERIAL,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.keys_dir = keys_dir
        self.retry_seconds = retry_seconds
        self.alipay_attempts = alipay_attempts
        self.wechat_attempts = wechat_attempts
        self.platform_serial = platform_serial
        self.now = now
        self._client = client
        self.alipay_trades: dict[str, dict[str, Any]] = {}
        self.alipay_by_order: dict[tuple[str, str], str] = {}
        self.wechat_orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._keys: dict[str, Any] = {}
        # Test controls (sandbox.trades): notifications to drop or delay, by order number or by channel.
        self.notify_rules: dict[str, dict[str, Any]] = {}
        # Refunds (sandbox.trades): Alipay's by (trade_no, out_request_no), WeChat Pay's by (mchid, out_refund_no).
        self.alipay_refunds: dict[tuple[str, str], dict[str, Any]] = {}
        self.wechat_refunds: dict[tuple[str, str], dict[str, Any]] = {}
        self.refund_outcome = "SUCCESS"  # how WeChat Pay refunds end: SUCCESS, ABNORMAL or CLOSED
        self.refund_settle_seconds = 0.2  # how long a WeChat Pay refund stays PROCESSING
        self.refunds_moved = 0  # refunds that moved money (a retry of one moves none)

    @classmethod
    def from_env(cls) -> SandboxPayments:
        var_dir = Path(os.environ.get("SOCIALSEC_VAR_DIR", "var"))
        return cls(
            keys_dir=var_dir / "keys",
            retry_seconds=float(os.environ.get("SANDBOX_NOTIFY_RETRY_SECONDS", "2")),
            alipay_attempts=int(os.environ.get("SANDBOX_ALIPAY_NOTIFY_ATTEMPTS", "8")),
            wechat_attempts=int(os.environ.get("SANDBOX_WECHATPAY_NOTIFY_ATTEMPTS", "15")),
            platform_serial=os.environ.get("SANDBOX_WECHATPAY_PLATFORM_SERIAL", DEFAULT_PLATFORM_SERIAL),
        )

    # -- keys --------------------------------------------------------------

    def _key(self, name: str) -> Any:
        if name not in self._keys:
            data = (self.keys_dir / name).read_bytes()
            if name.endswith(".pub.pem"):
                self._keys[name] = serialization.load_pem_public_key(data)
            elif name.endswith(".pem"):
                self._keys[name] = serialization.load_pem_private_key(data, password=None)
            else:
                self._keys[name] = data.strip()
        return self._keys[name]

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        return self._client

    # -- notification delivery ----------------------------------------------

    def delays(self, attempts: int) -> list[float]:
        """Waits before each attempt: at once, then growing like the platforms' schedules, compressed."""
        return [0.0] + [self.retry_seconds * min(2**i, 16) for i in range(attempts - 1)]

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        """Wait until every delivery under way has finished (tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _deliver(
        self, record: dict[str, Any], url: str, build: Callable[[], tuple[bytes, dict[str, str]]],
        acknowledged: Callable[[httpx.Response], bool], attempts: int,
    ) -> None:
        rule = self.notify_rule(record)
        if rule.get("drop"):
            record["notified"], record["dropped"] = False, True
            return
        if rule.get("delay_seconds"):
            await asyncio.sleep(float(rule["delay_seconds"]))
        for delay in self.delays(attempts):
            if delay:
                await asyncio.sleep(delay)
            body, headers = build()
            record["notify_attempts"] = record.get("notify_attempts", 0) + 1
            try:
                resp = await self.client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                record["last_notify_result"] = type(exc).__name__
                continue
            except Exception as exc:  # a stand-in must keep retrying, whatever the receiver did
                log.warning("notification to %s failed: %s", url, type(exc).__name__)
                record["last_notify_result"] = type(exc).__name__
                continue
            record["last_notify_result"] = f"{resp.status_code} {resp.text[:60]}"
            if acknowledged(resp):
                record["notified"] = True
                return
        record["notified"] = False

    def notify_rule(self, record: dict[str, Any]) -> dict[str, Any]:
        """The test control for a notification: by order number first, then by channel (alipay, wechat)."""
        channel = "wechat" if "mchid" in record else "alipay"
        return self.notify_rules.get(str(record.get("out_trade_no")), self.notify_rules.get(channel, {}))

    # -- Alipay ----------------------------------------------------------------

    def alipay_response(self, node: dict[str, Any], node_name: str = "alipay_trade_create_response") -> Response:
        raw = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        sign = _sign(self._key("alipay-platform.pem"), raw.encode())
        text = f'{{"{node_name}":{raw},"sign":"{sign}"}}'
        return Response(text, media_type="application/json;charset=utf-8")

    def alipay_notification(self, trade: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        now = datetime.fromtimestamp(self.now(), CST).strftime("%Y-%m-%d %H:%M:%S")
        fields = {
            "notify_time": now,
            "notify_type": "trade_status_sync",
            "notify_id": trade.setdefault("notify_id", uuid.uuid4().hex),
            "app_id": trade["app_id"],
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "trade_status": trade["trade_status"],
            "total_amount": trade["total_amount"],
            "receipt_amount": trade["total_amount"],
            "buyer_pay_amount": trade["total_amount"],
            "subject": trade["subject"],
            "gmt_create": trade["gmt_create"],
            "gmt_payment": trade.get("gmt_payment") or now,
        }
        if trade.get("seller_id"):
            fields["seller_id"] = trade["seller_id"]
        for k in ("buyer_id", "buyer_open_id"):
            if trade.get(k):
                fields[k] = trade[k]
        content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k] != "")
        fields["sign"] = _sign(self._key("alipay-platform.pem"), content.encode())
        fields["sign_type"] = "RSA2"
        body = str(httpx.QueryParams(fields)).encode()
        return body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    # -- WeChat Pay --------------------------------------------------------------

    def wechat_signed(self, body: bytes, status_code: int = 200) -> Response:
        ts, nonce = str(int(self.now())), secrets.token_hex(16)
        message = f"{ts}\n{nonce}\n".encode() + body + b"\n"
        headers = {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": self.platform_serial,
            "Wechatpay-Signature": _sign(self._key("wechatpay-platform.pem"), message),
            "Wechatpay-Signature-Type": WECHAT_SCHEMA,
            "Request-ID": str(uuid.uuid4()),
        }
        return Response(body, status_code=status_code, media_type="application/json", headers=headers)

    def wechat_error(self, status_code: int, code: str, message: str) -> Response:
        return self.wechat_signed(json.dumps({"code": code, "message": message}).encode(), status_code)

    def wechat_notification(self, order: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        success_time = datetime.fromtimestamp(self.now(), CST).isoformat(timespec="seconds")
        transaction = {
            "mchid": order["mchid"],
            "appid": order["appid"],
            "out_trade_no": order["out_trade_no"],
            "transaction_id": order["transaction_id"],
            "trade_type": "JSAPI",
            "trade_state": order["trade_state"],
            "trade_state_desc": "支付成功" if order["trade_state"] == "SUCCESS" else order["trade_state"],
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": order.get("success_time") or success_time,
            "payer": {"openid": order["openid"]},
            "amount": {"total": order["total"], "payer_total": order["total"], "currency": "CNY", "payer_currency": "CNY"},
        }
        nonce = secrets.token_hex(6)
        associated = "transaction"
        ct = AESGCM(self._key("wechatpay-apiv3.key")).encrypt(
            nonce.encode(), json.dumps(transaction, ensure_ascii=False).encode(), associated.encode()
        )
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": success_time,
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS" if order["trade_state"] == "SUCCESS" else "TRANSACTION.CLOSED",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ct).decode(),
                "associated_data": associated,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        signed = self.wechat_signed(body)
        headers = {k: v for k, v in signed.headers.items() if k.lower().startswith("wechatpay-")}
        headers["Content-Type"] = "application/json"
        return body, headers


# Further open API methods (sandbox.trades, sandbox.bills, sandbox.messages): method -> handler(state, the
# verified parameters, request) -> the signed answer.
ALIPAY_METHODS: dict[str, Callable[[SandboxPayments, dict[str, str], Request], Awaitable[Response]]] = {}


def state(request: Request) -> SandboxPayments:
    """The sandbox's payment state, created on first use."""
    st = getattr(request.app.state, "sandbox_payments", None)
    if st is None:
        st = SandboxPayments.from_env()
        request.app.state.sandbox_payments = st
    return st


def _alipay_refusal(st: SandboxPayments, sub_code: str, sub_msg: str) -> Response:
    return st.alipay_response({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})


@router.post("/sandbox/alipay/gateway.do", summary="Alipay open API gateway (alipay.trade.create)")
async def alipay_gateway(request: Request) -> Response:
    st = state(request)
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    params.update({k: v for k, v in request.query_params.items() if k not in params})
    sign = params.get("sign", "")
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    if params.get("sign_type") != "RSA2" or not _verify(st._key("alipay-app.pub.pem"), content.encode(), sign):
        return st.alipay_response(
            {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}
        )
    other = ALIPAY_METHODS.get(params.get("method", ""))
    if other is not None:
        return await other(st, params, request)
    if params.get("method") != "alipay.trade.create":
        return st.alipay_response(
            {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"},
            node_name="error_response",
        )
    try:
        biz = json.loads(params.get("biz_content", ""))
    except ValueError:
        return _alipay_refusal(st, "isv.invalid-biz-content", "biz_content 格式错误")
    out_trade_no, amount = biz.get("out_trade_no"), biz.get("total_amount")
    buyer_id, buyer_open_id = biz.get("buyer_id"), biz.get("buyer_open_id")
    if not out_trade_no or not amount or not (buyer_id or buyer_open_id) or not params.get("notify_url") or not params.get("app_id"):
        return _alipay_refusal(st, "ACQ.INVALID_PARAMETER", "参数无效")
    key = (params["app_id"], out_trade_no)
    existing = st.alipay_by_order.get(key)
    if existing is not None:
        trade = st.alipay_trades[existing]
        if trade["total_amount"] != amount:
            return _alipay_refusal(st, "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
    else:
        now = datetime.fromtimestamp(st.now(), CST)
        trade_no = now.strftime("%Y%m%d") + "22" + "".join(secrets.choice("0123456789") for _ in range(18))
        trade = {
            "trade_no": trade_no, "out_trade_no": out_trade_no, "app_id": params["app_id"],
            "total_amount": amount, "subject": biz.get("subject", ""), "seller_id": biz.get("seller_id") or "2088000000000001",
            "buyer_id": buyer_id, "buyer_open_id": buyer_open_id, "notify_url": params["notify_url"],
            "trade_status": "WAIT_BUYER_PAY", "gmt_create": now.strftime("%Y-%m-%d %H:%M:%S"),
            "notify_attempts": 0,
        }
        st.alipay_trades[trade_no] = trade
        st.alipay_by_order[key] = trade_no
    return st.alipay_response(
        {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"], "trade_no": trade["trade_no"]}
    )


@router.post("/sandbox/alipay/trades/{trade_no}/pay", summary="The person pays an Alipay trade (sandbox only)")
async def alipay_pay(trade_no: str, request: Request) -> Response:
    st = state(request)
    trade = st.alipay_trades.get(trade_no)
    if trade is None:
        return JSONResponse({"code": "TRADE_NOT_EXIST", "message": "交易不存在"}, status_code=404)
    if trade["trade_status"] == "WAIT_BUYER_PAY":
        trade["trade_status"] = "TRADE_SUCCESS"
        trade["gmt_payment"] = datetime.fromtimestamp(st.now(), CST).strftime("%Y-%m-%d %H:%M:%S")
        st.spawn(st._deliver(
            trade, trade["notify_url"], lambda: st.alipay_notification(trade),
            lambda r: r.status_code == 200 and r.text.strip() == "success", st.alipay_attempts,
        ))
    return JSONResponse(_public(trade))


@router.get("/sandbox/alipay/trades/{trade_no}", summary="An Alipay trade and its notification state (sandbox only)")
async def alipay_trade(trade_no: str, request: Request) -> Response:
    trade = state(request).alipay_trades.get(trade_no)
    if trade is None:
        return JSONResponse({"code": "TRADE_NOT_EXIST", "message": "交易不存在"}, status_code=404)
    return JSONResponse(_public(trade))


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "notify_url"}


def wechat_authorization(st: SandboxPayments, request: Request, body: bytes) -> dict[str, str] | str:
    """The merchant's authorization fields when its signature over the request verifies, else
    what is wrong with it (the message of the 401 SIGN_ERROR answer)."""
    try:
        auth = _parse_wechat_authorization(request.headers.get("authorization", ""))
    except ValueError:
        return "Authorization 格式错误"
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    message = f"{request.method}\n{path}\n{auth.get('timestamp')}\n{auth.get('nonce_str')}\n".encode() + body + b"\n"
    ts = auth.get("timestamp", "")
    if (
        not ascii_digits(ts) or abs(int(ts) - st.now()) > 300
        or not _verify(st._key("wechatpay-merchant.pub.pem"), message, auth.get("signature", ""))
    ):
        return "签名错误"
    return auth


@router.post("/sandbox/wechatpay/v3/pay/transactions/jsapi", summary="WeChat Pay API v3 JSAPI prepay")
async def wechat_jsapi(request: Request) -> Response:
    st = state(request)
    body = await request.body()
    auth = wechat_authorization(st, request, body)
    if isinstance(auth, str):
        return st.wechat_error(401, "SIGN_ERROR", auth)
    try:
        data = json.loads(body)
        mchid, appid, out_trade_no = data["mchid"], data["appid"], data["out_trade_no"]
        total, openid, notify_url = data["amount"]["total"], data["payer"]["openid"], data["notify_url"]
    except (ValueError, KeyError, TypeError):
        return st.wechat_error(400, "PARAM_ERROR", "参数错误")
    if mchid != auth.get("mchid") or not isinstance(total, int) or total <= 0:
        return st.wechat_error(400, "PARAM_ERROR", "参数错误")
    key = (mchid, out_trade_no)
    order = st.wechat_orders.get(key)
    if order is None:
        order = {
            "mchid": mchid, "appid": appid, "out_trade_no": out_trade_no, "total": total, "openid": openid,
            "notify_url": notify_url, "trade_state": "NOTPAY", "description": data.get("description", ""),
            "prepay_id": f"wx{datetime.fromtimestamp(st.now(), CST):%d%H%M%S}{secrets.token_hex(12)}",
            "transaction_id": "4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
            "notify_attempts": 0,
        }
        st.wechat_orders[key] = order
    elif order["total"] != total:
        return st.wechat_error(400, "INVALID_REQUEST", "订单号重复")
    return st.wechat_signed(json.dumps({"prepay_id": order["prepay_id"]}).encode())


@router.post("/sandbox/wechatpay/transactions/{out_trade_no}/pay", summary="The person pays a WeChat Pay order (sandbox only)")
async def wechat_pay(out_trade_no: str, request: Request) -> Response:
    st = state(request)
    matches = [o for (_m, o_no), o in st.wechat_orders.items() if o_no == out_trade_no]
    if not matches:
        return JSONResponse({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, status_code=404)
    order = matches[0]
    if order["trade_state"] == "NOTPAY":
        order["trade_state"] = "SUCCESS"
        order["success_time"] = datetime.fromtimestamp(st.now(), CST).isoformat(timespec="seconds")
        st.spawn(st._deliver(
            order, order["notify_url"], lambda: st.wechat_notification(order),
            lambda r: r.status_code in (200, 204), st.wechat_attempts,
        ))
    return JSONResponse(_public(order))


@router.get("/sandbox/wechatpay/transactions/{out_trade_no}", summary="A WeChat Pay order and its notification state (sandbox only)")
async def wechat_order(out_trade_no: str, request: Request) -> Response:
    matches = [o for (_m, o_no), o in state(request).wechat_orders.items() if o_no == out_trade_no]
    if not matches:
        return JSONResponse({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, status_code=404)
    return JSONResponse(_public(matches[0]))


def _parse_wechat_authorization(header: str) -> dict[str, str]:
    if not header.startswith(WECHAT_SCHEMA + " "):
        raise ValueError("schema")
    out = {}
    for part in header[len(WECHAT_SCHEMA) + 1 :].split(","):
        k, sep, v = part.strip().partition("=")
        if not sep or len(v) < 2 or not (v.startswith('"') and v.endswith('"')):
            raise ValueError("field")
        out[k] = v[1:-1]
    return out


# Query, close, refunds and bills live beside this module; their routes are served with these.
from sandbox import bills, trades  # noqa: E402

router.include_router(trades.router)  # type: ignore[has-type]
router.include_router(bills.router)  # type: ignore[has-type]
