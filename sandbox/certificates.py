"""WeChat Pay platform certificates in the sandbox: `GET /v3/certificates` and a certificate rotation.

The sandbox's platform key (wechatpay-platform.pem) gets a self-signed certificate; the
certificate list is answered as the platform does: every certificate AEAD_AES_256_GCM-encrypted
with the merchant's APIv3 key (associated data `certificate`), the answer signed like every
other platform answer. A rotation is two sandbox-only steps, as the platform does it:
`POST /sandbox/wechatpay/certificates` publishes a certificate for a new platform key (listed,
not yet signing), `POST /sandbox/wechatpay/certificates/{serial_no}/use` makes answers and
notifications signed with it and named by its serial (Wechatpay-Serial).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.payments import CST, SandboxPayments, _parse_wechat_authorization, _verify, state

router = APIRouter(tags=["sandbox payments"])

CERTIFICATE_DAYS = 5 * 365


@dataclass
class SandboxCertificate:
    serial_no: str
    key: Any  # the platform's RSA private key
    pem: bytes
    effective: datetime
    expires: datetime


def _certificate(key: rsa.RSAPrivateKey, *, effective: datetime) -> SandboxCertificate:
    """A self-signed platform certificate; its serial is derived from the key, so it is stable across restarts."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    serial = (int.from_bytes(hashlib.sha256(der).digest()[:20], "big") & ((1 << 156) - 1)) | (1 << 156)  # 40 hex digits
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sandbox WeChat Pay"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Sandbox WeChat Pay platform"),
    ])
    expires = effective + timedelta(days=CERTIFICATE_DAYS)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(effective).not_valid_after(expires)
        .sign(key, hashes.SHA256())
    )
    return SandboxCertificate(
        serial_no=format(serial, "X"), key=key, pem=cert.public_bytes(serialization.Encoding.PEM),
        effective=effective, expires=expires,
    )


def certificates(request: Request) -> list[SandboxCertificate]:
    """The published certificates, the one of the development platform key first (created on first use)."""
    found: list[SandboxCertificate] | None = getattr(request.app.state, "sandbox_wechatpay_certificates", None)
    if found is None:
        st = state(request)
        effective = datetime(2026, 1, 1, tzinfo=UTC)
        found = [_certificate(st._key("wechatpay-platform.pem"), effective=effective)]
        request.app.state.sandbox_wechatpay_certificates = found
    return found


def _authorized(st: SandboxPayments, request: Request, body: bytes) -> bool:
    try:
        auth = _parse_wechat_authorization(request.headers.get("authorization", ""))
    except ValueError:
        return False
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    message = f"{request.method}\n{path}\n{auth.get('timestamp', '')}\n{auth.get('nonce_str', '')}\n".encode() + body + b"\n"
    return _verify(st._key("wechatpay-merchant.pub.pem"), message, auth.get("signature", ""))


@router.get("/sandbox/wechatpay/v3/certificates", summary="WeChat Pay API v3: the platform certificates")
async def wechat_certificates(request: Request) -> Response:
    st = state(request)
    if not _authorized(st, request, b""):
        return st.wechat_error(401, "SIGN_ERROR", "签名错误")
    apiv3 = st._key("wechatpay-apiv3.key")
    data = []
    for cert in certificates(request):
        nonce = secrets.token_hex(6)
        ciphertext = AESGCM(apiv3).encrypt(nonce.encode(), cert.pem, b"certificate")
        data.append({
            "serial_no": cert.serial_no,
            "effective_time": cert.effective.astimezone(CST).isoformat(timespec="seconds"),
            "expire_time": cert.expires.astimezone(CST).isoformat(timespec="seconds"),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "certificate",
                "ciphertext": base64.b64encode(ciphertext).decode(),
            },
        })
    return st.wechat_signed(json.dumps({"data": data}, separators=(",", ":")).encode())


@router.post("/sandbox/wechatpay/certificates", summary="Publish a new platform certificate (sandbox only)")
async def publish_certificate(request: Request) -> JSONResponse:
    st = state(request)
    found = certificates(request)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _certificate(key, effective=datetime.fromtimestamp(int(st.now()), UTC))
    found.append(cert)
    return JSONResponse({"serial_no": cert.serial_no, "signing": st.platform_serial}, status_code=201)


@router.post("/sandbox/wechatpay/certificates/{serial_no}/use", summary="Sign with a published certificate (sandbox only)")
async def use_certificate(serial_no: str, request: Request) -> JSONResponse:
    st = state(request)
    cert = next((c for c in certificates(request) if c.serial_no == serial_no), None)
    if cert is None:
        return JSONResponse({"code": "NOT_FOUND", "message": "证书不存在"}, status_code=404)
    # Answers and notifications are signed with the platform key the payment state holds, named by its serial.
    st._keys["wechatpay-platform.pem"] = cert.key
    st.platform_serial = cert.serial_no
    return JSONResponse({"serial_no": cert.serial_no, "signing": st.platform_serial})
