"""Alipay open platform for mini-programs: `alipay.trade.create` and trade notifications.

Requests are signed RSA2 (SHA256withRSA, PKCS#1 v1.5) with our app key over the
parameters sorted by name as `k=v&...` (every non-empty parameter but `sign`),
values unencoded. A response is signed over the exact text of its
`alipay_trade_create_response` node. A notification is signed over the sorted
`k=v&...` of every non-empty field but `sign` and `sign_type`, verified with the
Alipay public key (or any of several while Alipay's key is rotated).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from services.common.clock import SHANGHAI
from services.common.identifiers import ascii_digits
from services.contribution.payments.money import fen_to_yuan

METHOD_TRADE_CREATE = "alipay.trade.create"
RESPONSE_NODE = "alipay_trade_create_response"
PRODUCT_CODE = "JSAPI_PAY"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
CLOSED_STATUS = "TRADE_CLOSED"


class AlipayError(Exception):
    """The platform refused a request or answered something we cannot trust."""

    def __init__(self, message: str, *, code: str | None = None, sub_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.sub_code = sub_code


def sign_content(params: Mapping[str, str], *, exclude: frozenset[str] = frozenset({"sign"})) -> str:
    """The string Alipay signs: non-empty parameters but the excluded ones, sorted, `k=v&...`."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] not in (None, ""))


def rsa2_sign(content: str, key: RSAPrivateKey) -> str:
    """SHA256withRSA, base64."""
    return base64.b64encode(key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


# The Alipay public key, or several while Alipay's key is being rotated (any one of them verifies).
AlipayPublicKeys = RSAPublicKey | tuple[RSAPublicKey, ...]


def rsa2_verify(content: str, signature: str, key: AlipayPublicKeys) -> bool:
    """True when `signature` (base64) is a valid SHA256withRSA signature of `content` by the key, or one of the keys."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    for one in key if isinstance(key, tuple) else (key,):
        try:
            one.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return True
    return False


def buyer_field(user_id: str) -> str:
    """Alipay's payer field: `buyer_id` for a 2088... user id, else the newer `buyer_open_id`."""
    return "buyer_id" if len(user_id) == 16 and user_id.startswith("2088") and ascii_digits(user_id) else "buyer_open_id"


@dataclass(frozen=True)
class AlipayConfig:
    gateway_url: str
    app_id: str
    app_private_key: RSAPrivateKey
    alipay_public_key: AlipayPublicKeys
    notify_url: str
    seller_id: str | None = None


def trade_create_params(
    config: AlipayConfig, *, out_trade_no: str, amount_fen: int, subject: str, buyer_user_id: str, now: datetime,
    timeout_express: str | None = None,
) -> dict[str, str]:
    """The signed form parameters of an `alipay.trade.create` request."""
    biz: dict[str, str] = {
        "out_trade_no": out_trade_no,
        "total_amount": fen_to_yuan(amount_fen),
        "subject": subject,
        "product_code": PRODUCT_CODE,
        buyer_field(buyer_user_id): buyer_user_id,
    }
    if config.seller_id:
        biz["seller_id"] = config.seller_id
    if timeout_express:
        biz["timeout_express"] = timeout_express
    params = {
        "app_id": config.app_id,
        "method": METHOD_TRADE_CREATE,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "notify_url": config.notify_url,
        "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
    }
    params["sign"] = rsa2_sign(sign_content(params), config.app_private_key)
    return params


def response_node(text: str, node: str) -> tuple[str, dict[str, object], str | None]:
    """The exact text of a top-level response node (what Alipay signed), the node parsed, and the sign."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    raw_node: str | None = None
    parsed: dict[str, object] = {}
    try:
        pos = len(text) - len(text.lstrip(ws))
        if text[pos] != "{":
            raise AlipayError("response is not a JSON object")
        pos += 1
        while True:
            while text[pos] in ws:
                pos += 1
            if text[pos] == "}":
                break
            key, pos = decoder.raw_decode(text, pos)
            while text[pos] in ws:
                pos += 1
            if text[pos] != ":":
                raise AlipayError("malformed response")
            pos += 1
            while text[pos] in ws:
                pos += 1
            value, end = decoder.raw_decode(text, pos)
            if key in parsed:
                raise AlipayError("duplicate key in response")
            parsed[key] = value
            if key == node:
                raw_node = text[pos:end]
            pos = end
            while text[pos] in ws:
                pos += 1
            if text[pos] == ",":
                pos += 1
            elif text[pos] != "}":
                raise AlipayError("malformed response")
    except (ValueError, IndexError) as exc:
        raise AlipayError("response is not JSON") from exc
    body = parsed.get(node)
    if raw_node is None or not isinstance(body, dict):
        raise AlipayError(f"response has no {node}")
    sign = parsed.get("sign")
    return raw_node, body, sign if isinstance(sign, str) else None


@dataclass(frozen=True)
class TradeCreated:
    trade_no: str
    out_trade_no: str


async def create_trade(
    config: AlipayConfig, client: httpx.AsyncClient, *, out_trade_no: str, amount_fen: int, subject: str,
    buyer_user_id: str, now: datetime, timeout_express: str | None = None,
) -> TradeCreated:
    """Create the trade at Alipay; verify the signed answer; return its trade_no."""
    params = trade_create_params(
        config, out_trade_no=out_trade_no, amount_fen=amount_fen, subject=subject, buyer_user_id=buyer_user_id,
        now=now, timeout_express=timeout_express,
    )
    node = await _post(config, client, params, RESPONSE_NODE)
    if node.get("out_trade_no") != out_trade_no or not isinstance(node.get("trade_no"), str):
        raise AlipayError("Alipay answered another order")
    return TradeCreated(trade_no=str(node["trade_no"]), out_trade_no=out_trade_no)


class _TradeStatus:
    """What an Alipay `trade_status` means for the payment."""

    trade_status: str

    @property
    def paid(self) -> bool:
        return self.trade_status in PAID_STATUSES

    @property
    def closed(self) -> bool:
        return self.trade_status == CLOSED_STATUS


@dataclass(frozen=True)
class AlipayNotification(_TradeStatus):
    """A verified trade notification."""

    notify_id: str
    app_id: str
    seller_id: str | None
    out_trade_no: str
    trade_no: str
    trade_status: str
    total_amount: str
    fields: dict[str, str]


class NotificationRejected(Exception):
    """A notification we must not act on (forged, malformed or not ours)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_notification(fields: Mapping[str, str], *, public_key: AlipayPublicKeys) -> AlipayNotification:
    """Verify an async notification's RSA2 signature; return its fields or raise NotificationRejected."""
    sign = fields.get("sign")
    if not sign:
        raise NotificationRejected("unsigned")
    if fields.get("sign_type", "RSA2") != "RSA2":
        raise NotificationRejected("sign_type")
    content = sign_content(fields, exclude=frozenset({"sign", "sign_type"}))
    if not rsa2_verify(content, sign, public_key):
        raise NotificationRejected("signature")
    missing = [k for k in ("app_id", "out_trade_no", "trade_no", "trade_status", "total_amount") if not fields.get(k)]
    if missing:
        raise NotificationRejected("missing " + ",".join(missing))
    return AlipayNotification(
        notify_id=fields.get("notify_id", ""),
        app_id=fields["app_id"],
        seller_id=fields.get("seller_id") or None,
        out_trade_no=fields["out_trade_no"],
        trade_no=fields["trade_no"],
        trade_status=fields["trade_status"],
        total_amount=fields["total_amount"],
        fields=dict(fields),
    )


# ---- trade query, close, refund, bills -------------------------------------------------------

METHOD_TRADE_QUERY = "alipay.trade.query"
METHOD_TRADE_CLOSE = "alipay.trade.close"
METHOD_TRADE_REFUND = "alipay.trade.refund"
METHOD_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
METHOD_BILL_URL = "alipay.data.dataservice.bill.downloadurl.query"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"


def request_params(config: AlipayConfig, method: str, biz: Mapping[str, object], now: datetime,
                   *, notify: bool = False) -> dict[str, str]:
    """The signed common parameters of one open API request carrying `biz_content`."""
    params = {
        "app_id": config.app_id,
        "method": method,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
    }
    if notify:
        params["notify_url"] = config.notify_url
    params["sign"] = rsa2_sign(sign_content(params), config.app_private_key)
    return params


async def call(
    config: AlipayConfig, client: httpx.AsyncClient, method: str, biz: Mapping[str, object], now: datetime,
) -> dict[str, object]:
    """Call one open API method; verify the signed `<method>_response` node; return it when its code is 10000.

    A business refusal raises AlipayError with the node's `code` and `sub_code`.
    """
    return await _post(config, client, request_params(config, method, biz, now), method.replace(".", "_") + "_response")


async def _post(
    config: AlipayConfig, client: httpx.AsyncClient, params: Mapping[str, str], node_name: str,
) -> dict[str, object]:
    """Send signed form parameters; verify the signed `node_name` node; return it when its code is 10000."""
    try:
        resp = await client.post(config.gateway_url, data=params)
    except httpx.HTTPError as exc:
        raise AlipayError(f"Alipay unreachable: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise AlipayError(f"Alipay answered HTTP {resp.status_code}")
    try:
        raw, node, sign = response_node(resp.text, node_name)
    except AlipayError:
        _raw, node, _sign = response_node(resp.text, "error_response")
        raise AlipayError(f"Alipay refused: {node.get('sub_code') or node.get('code')}", code=str(node.get("code")),
                          sub_code=str(node.get("sub_code") or "") or None) from None
    if not sign or not rsa2_verify(raw, sign, config.alipay_public_key):
        raise AlipayError("Alipay response signature invalid")
    if node.get("code") != "10000":
        raise AlipayError(
            f"Alipay refused: {node.get('sub_code') or node.get('code')}",
            code=str(node.get("code")), sub_code=str(node.get("sub_code") or "") or None,
        )
    return node


@dataclass(frozen=True)
class TradeState(_TradeStatus):
    """What `alipay.trade.query` says of one order."""

    out_trade_no: str
    trade_no: str
    trade_status: str  # WAIT_BUYER_PAY, TRADE_CLOSED, TRADE_SUCCESS, TRADE_FINISHED
    total_amount: str
    send_pay_date: str | None


async def query_trade(
    config: AlipayConfig, client: httpx.AsyncClient, *, out_trade_no: str, now: datetime,
) -> TradeState | None:
    """`alipay.trade.query` by our order number; None when Alipay has no such trade (never created or paid)."""
    try:
        node = await call(config, client, METHOD_TRADE_QUERY, {"out_trade_no": out_trade_no}, now)
    except AlipayError as exc:
        if exc.sub_code == TRADE_NOT_EXIST:
            return None
        raise
    if node.get("out_trade_no") != out_trade_no or not isinstance(node.get("trade_no"), str):
        raise AlipayError("Alipay answered another order")
    send = node.get("send_pay_date")
    return TradeState(
        out_trade_no=out_trade_no, trade_no=str(node["trade_no"]), trade_status=str(node.get("trade_status") or ""),
        total_amount=str(node.get("total_amount") or ""), send_pay_date=send if isinstance(send, str) else None,
    )


async def close_trade(config: AlipayConfig, client: httpx.AsyncClient, *, out_trade_no: str, now: datetime) -> bool:
    """`alipay.trade.close`: True when closed now, False when Alipay has no such trade.

    A trade paid meanwhile is refused with `ACQ.TRADE_STATUS_ERROR` (an AlipayError): query it then.
    """
    try:
        await call(config, client, METHOD_TRADE_CLOSE, {"out_trade_no": out_trade_no}, now)
    except AlipayError as exc:
        if exc.sub_code == TRADE_NOT_EXIST:
            return False
        raise
    return True


@dataclass(frozen=True)
class RefundAnswer:
    """`alipay.trade.refund` answers synchronously: `fund_change` Y when this call moved money."""

    trade_no: str
    fund_change: bool
    refund_fee: str  # the trade's total refunded so far, yuan


async def refund(
    config: AlipayConfig, client: httpx.AsyncClient, *, out_trade_no: str, amount_fen: int, reason: str,
    out_request_no: str, now: datetime,
) -> RefundAnswer:
    """`alipay.trade.refund` of part or all of a trade; idempotent per `out_request_no` (a retry moves no money)."""
    biz = {"out_trade_no": out_trade_no, "refund_amount": fen_to_yuan(amount_fen), "refund_reason": reason[:256],
           "out_request_no": out_request_no}
    node = await call(config, client, METHOD_TRADE_REFUND, biz, now)
    if node.get("out_trade_no") != out_trade_no:
        raise AlipayError("Alipay answered another order")
    return RefundAnswer(trade_no=str(node.get("trade_no") or ""), fund_change=node.get("fund_change") == "Y",
                        refund_fee=str(node.get("refund_fee") or ""))


async def refund_query(
    config: AlipayConfig, client: httpx.AsyncClient, *, out_trade_no: str, out_request_no: str, now: datetime,
) -> str | None:
    """`alipay.trade.fastpay.refund.query`: the refund's amount (yuan) when it succeeded, else None."""
    node = await call(config, client, METHOD_REFUND_QUERY,
                      {"out_trade_no": out_trade_no, "out_request_no": out_request_no}, now)
    if node.get("refund_status") == "REFUND_SUCCESS" and node.get("out_request_no") == out_request_no:
        return str(node.get("refund_amount") or "")
    return None


async def bill_download_url(
    config: AlipayConfig, client: httpx.AsyncClient, *, bill_date: str, now: datetime, bill_type: str = "trade",
) -> str:
    """`alipay.data.dataservice.bill.downloadurl.query`: the short-lived URL of the day's zipped bill."""
    node = await call(config, client, METHOD_BILL_URL, {"bill_type": bill_type, "bill_date": bill_date}, now)
    url = node.get("bill_download_url")
    if not isinstance(url, str) or not url:
        raise AlipayError("Alipay answered no bill_download_url")
    return url
