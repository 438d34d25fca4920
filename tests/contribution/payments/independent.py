"""An independent implementation of the platforms' published signing rules (tests only).

Written straight from the Alipay and WeChat Pay v3 documentation with
`cryptography`, without the service's code, so a test signed here checks the
service against the rules rather than against itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def self_signed_cert(key: rsa.RSAPrivateKey) -> tuple[bytes, str]:
    """A platform certificate (PEM) and its serial as WeChat Pay names it (upper-case hex)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), format(cert.serial_number, "X")


def load_private(path: Any) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(open(path, "rb").read(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def load_public(path: Any) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(open(path, "rb").read())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def sha256_rsa(key: rsa.RSAPrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def sha256_rsa_ok(key: rsa.RSAPublicKey, data: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


# ---- Alipay --------------------------------------------------------------------


def alipay_notification(key: rsa.RSAPrivateKey, **fields: str) -> dict[str, str]:
    """Alipay's rule: sort every field but sign and sign_type, join k=v with &, RSA2, base64."""
    base = {
        "notify_time": "2026-03-10 10:05:00",
        "notify_type": "trade_status_sync",
        "notify_id": os.urandom(8).hex(),
        "charset": "utf-8",
        "version": "1.0",
        "gmt_create": "2026-03-10 10:00:00",
        "gmt_payment": "2026-03-10 10:04:59",
        "subject": "社会保险费",
        "buyer_open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5",
    }
    base.update(fields)
    content = "&".join(f"{k}={base[k]}" for k in sorted(base) if k not in ("sign", "sign_type"))
    base["sign"] = sha256_rsa(key, content.encode("utf-8"))
    base["sign_type"] = "RSA2"
    return base


def form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def alipay_request_content(params: dict[str, str]) -> str:
    """Alipay's request rule: every non-empty parameter but sign, sorted, k=v&..."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


# ---- WeChat Pay ------------------------------------------------------------------


def wechat_notification(
    *, platform_key: rsa.RSAPrivateKey, serial: str, apiv3_key: bytes, transaction: dict[str, Any], timestamp: int,
) -> tuple[bytes, dict[str, str]]:
    """Encrypt a transaction (AEAD_AES_256_GCM, APIv3 key) and sign `ts\\nnonce\\nbody\\n` like WeChat Pay."""
    nonce = os.urandom(6).hex()
    aad = "transaction"
    ct = AESGCM(apiv3_key).encrypt(nonce.encode(), json.dumps(transaction).encode(), aad.encode())
    body = json.dumps({
        "id": "EV-2018022511223320873",
        "create_time": "2026-03-10T10:05:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ct).decode(), "associated_data": aad, "nonce": nonce,
        },
    }, ensure_ascii=False).encode()
    sig_nonce = os.urandom(16).hex()
    message = f"{timestamp}\n{sig_nonce}\n".encode() + body + b"\n"
    headers = {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": sig_nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": sha256_rsa(platform_key, message),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        "Content-Type": "application/json",
    }
    return body, headers


def transaction(*, mchid: str, appid: str, out_trade_no: str, total: int, state: str = "SUCCESS") -> dict[str, Any]:
    return {
        "mchid": mchid, "appid": appid, "out_trade_no": out_trade_no,
        "transaction_id": "4200000000202603100000000001", "trade_type": "JSAPI", "trade_state": state,
        "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
        "success_time": "2026-03-10T10:04:59+08:00", "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }
