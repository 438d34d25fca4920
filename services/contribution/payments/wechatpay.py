"""WeChat Pay API v3 for mini-programs: JSAPI prepay, payment parameters, notifications.

Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=...,nonce_str=...,
signature=...,timestamp=...,serial_no=...`, the signature being SHA256withRSA with
the merchant key over `METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n` (URL = path and
query). Answers and notifications are signed by the platform over
`timestamp\\nnonce\\nbody\\n`; `Wechatpay-Serial` names the key, a platform
certificate serial or a public-key id (`PUB_KEY_ID_...`). A notification's
`resource` is AEAD_AES_256_GCM-encrypted with the APIv3 key.

In certificate mode the platform's keys are its certificates, listed by `GET /v3/certificates`
(each `data[].encrypt_certificate` AEAD_AES_256_GCM-encrypted with the APIv3 key, which
authenticates it); the answer must verify with a key already known, or with a listed certificate
when it names one not known yet. The list is fetched again periodically, so a new platform
certificate is known before the platform signs with it, and at once when a signature names an
unknown serial (at most once a minute).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.identifiers import ascii_digits

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
JSAPI_PATH = "/v3/pay/transactions/jsapi"
MAX_NOTIFICATION_BYTES = 64 * 1024


class WechatPayError(Exception):
    """The platform refused a request or answered something we cannot trust."""


class NotificationRejected(Exception):
    """A notification we must not act on (forged, stale, malformed or not ours)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def nonce_str() -> str:
    """32 random characters."""
    return secrets.token_hex(16).upper()


def rsa_sign(message: str, key: RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(message: bytes, signature: str, key: RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def request_message(method: str, url_path: str, timestamp: str, nonce: str, body: str) -> str:
    """What the merchant signs for one request."""
    return f"{method.upper()}\n{url_path}\n{timestamp}\n{nonce}\n{body}\n"


def authorization(
    *, method: str, url_path: str, body: str, mchid: str, serial_no: str, key: RSAPrivateKey, timestamp: int,
    nonce: str | None = None,
) -> str:
    """The `Authorization` header of one API v3 request."""
    n = nonce or nonce_str()
    signature = rsa_sign(request_message(method, url_path, str(timestamp), n, body), key)
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{n}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> dict[str, str]:
    """The fields of a `WECHATPAY2-SHA256-RSA2048 k="v",...` header (the sandbox verifies with it)."""
    if not header.startswith(SCHEMA + " "):
        raise ValueError("unknown schema")
    out: dict[str, str] = {}
    for part in header[len(SCHEMA) + 1 :].split(","):
        k, sep, v = part.strip().partition("=")
        if not sep or len(v) < 2 or v[0] != '"' or v[-1] != '"':
            raise ValueError("malformed authorization")
        out[k] = v[1:-1]
    return out


def pay_sign_message(appid: str, timestamp: str, nonce: str, package: str) -> str:
    """What the merchant signs for `wx.requestPayment`."""
    return f"{appid}\n{timestamp}\n{nonce}\n{package}\n"


def mini_program_params(*, appid: str, prepay_id: str, key: RSAPrivateKey, timestamp: int, nonce: str | None = None) -> dict[str, str]:
    """The parameters the mini-program hands to `wx.requestPayment`."""
    n = nonce or nonce_str()
    package = f"prepay_id={prepay_id}"
    ts = str(timestamp)
    return {
        "appId": appid,
        "timeStamp": ts,
        "nonceStr": n,
        "package": package,
        "signType": "RSA",
        "paySign": rsa_sign(pay_sign_message(appid, ts, n, package), key),
    }


def verify_signed_message(
    *, headers: Mapping[str, str], body: bytes, platform_keys: Mapping[str, RSAPublicKey], now: int, tolerance: int,
) -> str:
    """Verify a platform-signed answer or notification; return the serial that verified it."""
    timestamp = headers.get("wechatpay-timestamp") or headers.get("Wechatpay-Timestamp")
    nonce = headers.get("wechatpay-nonce") or headers.get("Wechatpay-Nonce")
    signature = headers.get("wechatpay-signature") or headers.get("Wechatpay-Signature")
    serial = headers.get("wechatpay-serial") or headers.get("Wechatpay-Serial")
    if not (timestamp and nonce and signature and serial):
        raise NotificationRejected("unsigned")
    kind = headers.get("wechatpay-signature-type") or headers.get("Wechatpay-Signature-Type")
    if kind and kind != SCHEMA:
        raise NotificationRejected("signature_type")
    if not ascii_digits(timestamp) or len(timestamp) > 12:
        raise NotificationRejected("timestamp")
    if abs(now - int(timestamp)) > tolerance:
        raise NotificationRejected("stale")
    key = platform_keys.get(serial)
    if key is None:
        raise NotificationRejected("unknown_serial")
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    if not rsa_verify(message, signature, key):
        raise NotificationRejected("signature")
    return serial


def decrypt_aead(resource: Mapping[str, Any], apiv3_key: bytes) -> bytes:
    """AEAD_AES_256_GCM-decrypt a `resource` or an `encrypt_certificate`: its plain bytes."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise NotificationRejected("algorithm")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    associated = resource.get("associated_data") or ""
    if not isinstance(ciphertext, str) or not isinstance(nonce, str) or not isinstance(associated, str):
        raise NotificationRejected("resource")
    try:
        return AESGCM(apiv3_key).decrypt(nonce.encode(), base64.b64decode(ciphertext, validate=True), associated.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise NotificationRejected("decrypt") from exc


def decrypt_resource(resource: Mapping[str, Any], apiv3_key: bytes) -> dict[str, Any]:
    """AEAD_AES_256_GCM-decrypt a notification's `resource` into its JSON object."""
    plain = decrypt_aead(resource, apiv3_key)
    try:
        data = json.loads(plain)
    except ValueError as exc:
        raise NotificationRejected("resource_json") from exc
    if not isinstance(data, dict):
        raise NotificationRejected("resource_json")
    return data


@dataclass(frozen=True)
class WechatPayConfig:
    base_url: str
    mchid: str
    appid: str
    merchant_key: RSAPrivateKey
    merchant_serial: str
    platform_keys: Mapping[str, RSAPublicKey]  # a PlatformKeys in a running service
    apiv3_key: bytes
    notify_url: str
    tolerance_seconds: int = 300


@dataclass(frozen=True)
class Transaction:
    """A verified, decrypted transaction notification."""

    notification_id: str
    event_type: str
    mchid: str
    appid: str
    out_trade_no: str
    transaction_id: str | None
    trade_state: str
    total_fen: int
    success_time: str | None
    serial: str
    data: dict[str, Any]

    @property
    def paid(self) -> bool:
        return self.trade_state == "SUCCESS"

    @property
    def closed(self) -> bool:
        return self.trade_state in ("CLOSED", "REVOKED", "PAYERROR")


# Refusals that say the sender is not WeChat Pay (answered 401; the others 400).
UNVERIFIED_REASONS = frozenset({"unsigned", "timestamp", "stale", "unknown_serial", "signature"})


def rejection_status(reason: str) -> int:
    """The status a refused notification is answered with."""
    return 401 if reason in UNVERIFIED_REASONS else 400


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The `Wechatpay-*` headers of a notification, as its record keeps them."""
    return {k: v[:512] for k, v in headers.items() if k.lower().startswith("wechatpay-")}


def _open_notification(
    config: WechatPayConfig, *, headers: Mapping[str, str], body: bytes, now: int,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Verify a notification's signature and decrypt its resource: (serial, envelope, resource);
    NotificationRejected otherwise."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise NotificationRejected("too_large")
    serial = verify_signed_message(
        headers=headers, body=body, platform_keys=config.platform_keys, now=now, tolerance=config.tolerance_seconds
    )
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise NotificationRejected("json") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("resource"), dict):
        raise NotificationRejected("resource")
    return serial, envelope, decrypt_resource(envelope["resource"], config.apiv3_key)


def parse_notification(config: WechatPayConfig, *, headers: Mapping[str, str], body: bytes, now: int) -> Transaction:
    """Verify, decrypt and read a payment notification, or raise NotificationRejected."""
    serial, envelope, data = _open_notification(config, headers=headers, body=body, now=now)
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    out_trade_no, trade_state = data.get("out_trade_no"), data.get("trade_state")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise NotificationRejected("amount")
    if not isinstance(out_trade_no, str) or not isinstance(trade_state, str):
        raise NotificationRejected("fields")
    tid = data.get("transaction_id")
    st = data.get("success_time")
    return Transaction(
        notification_id=str(envelope.get("id") or ""),
        event_type=str(envelope.get("event_type") or ""),
        mchid=str(data.get("mchid") or ""),
        appid=str(data.get("appid") or ""),
        out_trade_no=out_trade_no,
        transaction_id=tid if isinstance(tid, str) else None,
        trade_state=trade_state,
        total_fen=total,
        success_time=st if isinstance(st, str) else None,
        serial=serial,
        data=data,
    )


async def jsapi_prepay(
    config: WechatPayConfig, client: httpx.AsyncClient, *, out_trade_no: str, amount_fen: int, description: str,
    openid: str, now: int, time_expire: str | None = None,
) -> str:
    """Place a JSAPI order; verify the platform's signed answer; return the prepay_id."""
    payload: dict[str, Any] = {
        "appid": config.appid,
        "mchid": config.mchid,
        "description": description,
        "out_trade_no": out_trade_no,
        "notify_url": config.notify_url,
        "amount": {"total": amount_fen, "currency": "CNY"},
        "payer": {"openid": openid},
    }
    if time_expire:
        payload["time_expire"] = time_expire
    status, data = await api(config, client, "POST", JSAPI_PATH, now=now, payload=payload)
    if status != 200:
        code = data.get("code") if data else None
        raise WechatPayError(f"WeChat Pay refused: HTTP {status} {code or ''}".strip())
    prepay_id = data.get("prepay_id") if data else None
    if not isinstance(prepay_id, str) or not prepay_id:
        raise WechatPayError("WeChat Pay answer has no prepay_id")
    return prepay_id


# ---- query, close, refunds, bills ----------------------------------------------------------------

REFUNDS_PATH = "/v3/refund/domestic/refunds"
TRADEBILL_PATH = "/v3/bill/tradebill"


def _path_of(url: str) -> str:
    split = urlsplit(url)
    return split.path + (f"?{split.query}" if split.query else "")


async def _send(
    config: WechatPayConfig, client: httpx.AsyncClient, method: str, path: str, *, now: int,
    payload: Mapping[str, Any] | None = None,
) -> httpx.Response:
    """Sign and send one API v3 request; the answer is not verified yet."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload is not None else ""
    url = config.base_url.rstrip("/") + path
    auth = authorization(
        method=method, url_path=_path_of(url), body=body, mchid=config.mchid, serial_no=config.merchant_serial,
        key=config.merchant_key, timestamp=now,
    )
    headers = {"Authorization": auth, "Accept": "application/json"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    try:
        return await client.request(method, url, content=body.encode() if payload is not None else None, headers=headers)
    except httpx.HTTPError as exc:
        raise WechatPayError(f"WeChat Pay unreachable: {type(exc).__name__}") from exc


async def api(
    config: WechatPayConfig, client: httpx.AsyncClient, method: str, path: str, *, now: int,
    payload: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """One signed API v3 call; the platform's answer verified: (HTTP status, JSON body or None for 204)."""
    resp = await _send(config, client, method, path, now=now, payload=payload)
    try:
        verify_signed_message(
            headers=resp.headers, body=resp.content, platform_keys=config.platform_keys, now=now,
            tolerance=config.tolerance_seconds,
        )
    except NotificationRejected as exc:
        raise WechatPayError(f"WeChat Pay answer not verified: {exc.reason}") from exc
    if resp.status_code == 204 or not resp.content:
        return resp.status_code, None
    try:
        data = resp.json()
    except ValueError as exc:
        raise WechatPayError("WeChat Pay answer is not JSON") from exc
    if not isinstance(data, dict):
        raise WechatPayError("WeChat Pay answer is not an object")
    return resp.status_code, data


class WechatPayRefused(WechatPayError):
    """A 4xx answer with the platform's error `code` (ORDER_NOT_EXIST, ORDERPAID, NOT_ENOUGH, ...)."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"WeChat Pay refused: HTTP {status} {code}".strip())
        self.status = status
        self.code = code
        self.message = message


def _refused(status: int, data: dict[str, Any] | None) -> WechatPayRefused:
    data = data or {}
    return WechatPayRefused(status, str(data.get("code") or ""), str(data.get("message") or ""))


@dataclass(frozen=True)
class OrderState:
    """What the order query says: trade_state SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR."""

    out_trade_no: str
    transaction_id: str | None
    trade_state: str
    total_fen: int | None
    success_time: str | None

    @property
    def paid(self) -> bool:
        return self.trade_state in ("SUCCESS", "REFUND")

    @property
    def closed(self) -> bool:
        return self.trade_state in ("CLOSED", "REVOKED", "PAYERROR")


async def query_order(
    config: WechatPayConfig, client: httpx.AsyncClient, *, out_trade_no: str, now: int,
) -> OrderState | None:
    """`GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`; None when WeChat Pay has no such order."""
    status, data = await api(config, client, "GET",
                             f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={config.mchid}", now=now)
    if status == 404 or (status >= 400 and (data or {}).get("code") == "ORDER_NOT_EXIST"):
        return None
    if status != 200 or data is None:
        raise _refused(status, data)
    if data.get("out_trade_no") != out_trade_no or data.get("mchid") not in (None, config.mchid):
        raise WechatPayError("WeChat Pay answered another order")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    tid, st = data.get("transaction_id"), data.get("success_time")
    return OrderState(
        out_trade_no=out_trade_no, transaction_id=tid if isinstance(tid, str) and tid else None,
        trade_state=str(data.get("trade_state") or ""),
        total_fen=total if isinstance(total, int) and not isinstance(total, bool) else None,
        success_time=st if isinstance(st, str) else None,
    )


async def close_order(config: WechatPayConfig, client: httpx.AsyncClient, *, out_trade_no: str, now: int) -> bool:
    """`POST .../out-trade-no/{out_trade_no}/close` (204): True when closed, False when there is no such order.

    A paid order is refused (`ORDERPAID`, a WechatPayRefused): query it then.
    """
    status, data = await api(config, client, "POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                             now=now, payload={"mchid": config.mchid})
    if status == 204:
        return True
    if status == 404 or (data or {}).get("code") == "ORDER_NOT_EXIST":
        return False
    raise _refused(status, data)


@dataclass(frozen=True)
class RefundState:
    """A refund as the platform answers it: status SUCCESS, CLOSED, PROCESSING or ABNORMAL."""

    out_refund_no: str
    refund_id: str | None
    status: str
    refund_fen: int | None
    success_time: str | None


def _refund_state(data: Mapping[str, Any], status_field: str = "status") -> RefundState:
    amount = data.get("amount")
    refund_fen = amount.get("refund") if isinstance(amount, dict) else None
    rid, st = data.get("refund_id"), data.get("success_time")
    return RefundState(
        out_refund_no=str(data.get("out_refund_no") or ""), refund_id=rid if isinstance(rid, str) else None,
        status=str(data.get(status_field) or ""),
        refund_fen=refund_fen if isinstance(refund_fen, int) and not isinstance(refund_fen, bool) else None,
        success_time=st if isinstance(st, str) else None,
    )


async def create_refund(
    config: WechatPayConfig, client: httpx.AsyncClient, *, out_trade_no: str, out_refund_no: str, refund_fen: int,
    total_fen: int, reason: str, notify_url: str, now: int,
) -> RefundState:
    """`POST /v3/refund/domestic/refunds`; idempotent per `out_refund_no`. Usually answers PROCESSING."""
    payload = {
        "out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "reason": reason[:80], "notify_url": notify_url,
        "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
    }
    status, data = await api(config, client, "POST", REFUNDS_PATH, now=now, payload=payload)
    if status != 200 or data is None:
        raise _refused(status, data)
    state = _refund_state(data)
    if state.out_refund_no != out_refund_no:
        raise WechatPayError("WeChat Pay answered another refund")
    return state


async def query_refund(
    config: WechatPayConfig, client: httpx.AsyncClient, *, out_refund_no: str, now: int,
) -> RefundState | None:
    """`GET /v3/refund/domestic/refunds/{out_refund_no}`; None when WeChat Pay has no such refund."""
    status, data = await api(config, client, "GET", f"{REFUNDS_PATH}/{out_refund_no}", now=now)
    if status == 404 or (data or {}).get("code") == "RESOURCE_NOT_EXISTS":
        return None
    if status != 200 or data is None:
        raise _refused(status, data)
    return _refund_state(data)


@dataclass(frozen=True)
class RefundNotice:
    """A verified, decrypted refund notification."""

    notification_id: str
    event_type: str  # REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED
    mchid: str
    out_trade_no: str
    out_refund_no: str
    refund_id: str | None
    refund_status: str
    refund_fen: int | None
    success_time: str | None
    data: dict[str, Any]


def parse_refund_notification(config: WechatPayConfig, *, headers: Mapping[str, str], body: bytes, now: int) -> RefundNotice:
    """Verify, decrypt and read a refund notification, or raise NotificationRejected."""
    _serial, envelope, data = _open_notification(config, headers=headers, body=body, now=now)
    state = _refund_state(data, "refund_status")
    out_trade_no = data.get("out_trade_no")
    if not state.out_refund_no or not isinstance(out_trade_no, str) or not state.status:
        raise NotificationRejected("fields")
    return RefundNotice(
        notification_id=str(envelope.get("id") or ""), event_type=str(envelope.get("event_type") or ""),
        mchid=str(data.get("mchid") or ""), out_trade_no=out_trade_no, out_refund_no=state.out_refund_no,
        refund_id=state.refund_id, refund_status=state.status, refund_fen=state.refund_fen,
        success_time=state.success_time, data=data,
    )


@dataclass(frozen=True)
class BillLink:
    download_url: str
    hash_type: str
    hash_value: str


async def trade_bill(config: WechatPayConfig, client: httpx.AsyncClient, *, bill_date: str, now: int) -> BillLink:
    """`GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=GZIP`: where to download the day's bill."""
    status, data = await api(config, client, "GET",
                             f"{TRADEBILL_PATH}?bill_date={bill_date}&bill_type=ALL&tar_type=GZIP", now=now)
    if status != 200 or data is None:
        raise _refused(status, data)
    url, kind, value = data.get("download_url"), data.get("hash_type"), data.get("hash_value")
    if not isinstance(url, str) or not isinstance(kind, str) or not isinstance(value, str):
        raise WechatPayError("WeChat Pay answered no download_url")
    return BillLink(download_url=url, hash_type=kind, hash_value=value)


async def download_bill(config: WechatPayConfig, client: httpx.AsyncClient, link: BillLink, *, now: int) -> bytes:
    """The day's bill, unzipped: the download is a signed request, its answer checked by the SHA1 of the bill."""
    import gzip
    import hashlib

    auth = authorization(
        method="GET", url_path=_path_of(link.download_url), body="", mchid=config.mchid,
        serial_no=config.merchant_serial, key=config.merchant_key, timestamp=now,
    )
    try:
        resp = await client.get(link.download_url, headers={"Authorization": auth})
    except httpx.HTTPError as exc:
        raise WechatPayError(f"WeChat Pay unreachable: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise WechatPayError(f"WeChat Pay bill download answered HTTP {resp.status_code}")
    raw = resp.content
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise WechatPayError("WeChat Pay bill is not a readable gzip file") from exc
    if link.hash_type.upper() != "SHA1" or hashlib.sha1(raw, usedforsecurity=False).hexdigest().lower() != link.hash_value.lower():
        raise WechatPayError("WeChat Pay bill hash mismatch")
    return raw


# ---- platform certificates (certificate mode) ---------------------------------------------------

CERTIFICATES_PATH = "/v3/certificates"
MAX_CERTIFICATES = 20


@dataclass(frozen=True)
class PlatformCertificate:
    """A platform certificate from `GET /v3/certificates`, decrypted and checked."""

    serial_no: str
    effective_time: str
    expire_time: str
    not_after: float  # epoch seconds
    key: RSAPublicKey
    pem: str


class PlatformKeys(Mapping[str, RSAPublicKey]):
    """The platform's keys by serial: the configured ones, and the certificates fetched in certificate mode.

    A fetch adds every certificate listed and drops fetched certificates no longer listed (or expired);
    configured keys always stay. Reads are lock-free (a fresh dict is swapped in).
    """

    def __init__(self, configured: Mapping[str, RSAPublicKey]) -> None:
        self.configured = dict(configured)
        self.fetched: dict[str, PlatformCertificate] = {}
        self._all: dict[str, RSAPublicKey] = dict(self.configured)
        self.fetched_at: float | None = None
        # A serial asked for and not known (a certificate the platform began using before our next fetch).
        self.missed: str | None = None

    def __getitem__(self, serial: str) -> RSAPublicKey:
        try:
            return self._all[serial]
        except KeyError:
            self.missed = serial[:64]
            raise

    def __iter__(self) -> Any:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def replace_fetched(self, certificates: list[PlatformCertificate], *, now: float) -> None:
        self.fetched = {c.serial_no: c for c in certificates if c.not_after > now}
        merged = {serial: c.key for serial, c in self.fetched.items()}
        merged.update(self.configured)
        self._all = merged
        self.fetched_at = now
        self.missed = None


def _certificate_serial(pem: bytes) -> tuple[int, float, RSAPublicKey]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise WechatPayError("a platform certificate cannot be read") from exc
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise WechatPayError("a platform certificate is not an RSA certificate")
    return cert.serial_number, cert.not_valid_after_utc.timestamp(), key


def read_certificates(body: bytes, apiv3_key: bytes) -> list[PlatformCertificate]:
    """The certificates of a verified `GET /v3/certificates` answer, decrypted; each must carry the serial it is listed under."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise WechatPayError("certificates answer is not JSON") from exc
    items = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(items, list) or len(items) > MAX_CERTIFICATES:
        raise WechatPayError("certificates answer has no data list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("encrypt_certificate"), dict):
            raise WechatPayError("certificates answer: an item without encrypt_certificate")
        serial = item.get("serial_no")
        if not isinstance(serial, str) or not serial:
            raise WechatPayError("certificates answer: an item without serial_no")
        try:
            pem = decrypt_aead(item["encrypt_certificate"], apiv3_key)
        except NotificationRejected as exc:
            raise WechatPayError(f"a platform certificate cannot be decrypted: {exc.reason}") from exc
        cert_serial, not_after, key = _certificate_serial(pem)
        try:
            listed = int(serial, 16)
        except ValueError:
            listed = -1
        if listed != cert_serial:
            raise WechatPayError("a platform certificate is listed under another serial")
        out.append(PlatformCertificate(
            serial_no=serial, effective_time=str(item.get("effective_time") or ""),
            expire_time=str(item.get("expire_time") or ""), not_after=not_after, key=key, pem=pem.decode(),
        ))
    return out


async def fetch_certificates(config: WechatPayConfig, client: httpx.AsyncClient, *, now: int) -> list[PlatformCertificate]:
    """`GET /v3/certificates` (signed); the answer verified with a key already known; the certificates decrypted."""
    resp = await _send(config, client, "GET", CERTIFICATES_PATH, now=now)
    try:
        verify_signed_message(
            headers=resp.headers, body=resp.content, platform_keys=config.platform_keys, now=now,
            tolerance=config.tolerance_seconds,
        )
    except NotificationRejected as exc:
        if exc.reason != "unknown_serial" or resp.status_code != 200:
            raise WechatPayError(f"WeChat Pay certificates answer not verified: {exc.reason}") from exc
        # Signed by a certificate we do not know yet (the platform switched before our fetch): each listed
        # certificate is authenticated by its AEAD encryption with our APIv3 key, so the answer may be
        # verified with the one it names; nothing else is believed.
        listed = read_certificates(resp.content, config.apiv3_key)
        try:
            verify_signed_message(
                headers=resp.headers, body=resp.content, platform_keys={c.serial_no: c.key for c in listed},
                now=now, tolerance=config.tolerance_seconds,
            )
        except NotificationRejected as again:
            raise WechatPayError(f"WeChat Pay certificates answer not verified: {again.reason}") from again
        return listed
    if resp.status_code != 200:
        raise WechatPayError(f"WeChat Pay refused the certificates request: HTTP {resp.status_code}")
    return read_certificates(resp.content, config.apiv3_key)


async def refresh_certificates(
    config: WechatPayConfig, keys: PlatformKeys, client: httpx.AsyncClient, *, now: int,
) -> list[PlatformCertificate]:
    """Fetch the platform certificates and make them the fetched part of `keys`."""
    certificates = await fetch_certificates(config, client, now=now)
    keys.replace_fetched(certificates, now=now)
    return certificates
