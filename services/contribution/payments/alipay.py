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
    try:
        resp = await client.post(config.gateway_url, data=params)
    except httpx.HTTPError as exc:
        raise AlipayError(f"Alipay unreachable: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise AlipayError(f"Alipay answered HTTP {resp.status_code}")
    raw, node, sign = response_node(resp.text, RESPONSE_NODE)
    if not sign or not rsa2_verify(raw, sign, config.alipay_public_key):
        raise AlipayError("Alipay response signature invalid")
    if node.get("code") != "10000":
        raise AlipayError(
            f"Alipay refused: {node.get('sub_code') or node.get('code')}",
            code=str(node.get("code")), sub_code=str(node.get("sub_code") or "") or None,
        )
    if node.get("out_trade_no") != out_trade_no or not isinstance(node.get("trade_no"), str):
        raise AlipayError("Alipay answered another order")
    return TradeCreated(trade_no=str(node["trade_no"]), out_trade_no=out_trade_no)


@dataclass(frozen=True)
class AlipayNotification:
    """A verified trade notification."""

    notify_id: str
    app_id: str
    seller_id: str | None
    out_trade_no: str
    trade_no: str
    trade_status: str
    total_amount: str
    fields: dict[str, str]

    @property
    def paid(self) -> bool:
        return self.trade_status in PAID_STATUSES

    @property
    def closed(self) -> bool:
        return self.trade_status == CLOSED_STATUS


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
