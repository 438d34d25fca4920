"""The sandbox's two token issuers, standing in for the Alipay and WeChat city-service wrappers.

They differ the way the real ones do: another signature algorithm (RS256 / ES256)
and other claim names. Their keys are the development keys under
`$SOCIALSEC_VAR_DIR/keys/` (created by devtools.keys.ensure_dev_keys), so tokens
stay valid across restarts. `make run` trusts them through the issuers file
written by `write_default_issuers_file`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

AUDIENCE = "socialsec"
ALL_KINDS = ["citizen", "employer", "agency", "channel", "staff"]


@dataclass(frozen=True)
class SandboxIssuer:
    """One stand-in platform: its iss, algorithm, key file and claim names (ours -> its)."""

    name: str
    iss: str
    algorithm: str
    key_file: str
    platform: str
    claims: dict[str, str]


SANDBOX_ISSUERS: dict[str, SandboxIssuer] = {
    "sandbox-alipay": SandboxIssuer(
        name="sandbox-alipay",
        iss="https://sandbox.socialsec.invalid/alipay",
        algorithm="RS256",
        key_file="sandbox-alipay-issuer.pem",
        platform="alipay",
        claims={
            "sub": "user_id",
            "kind": "principal_type",
            "id_number": "cert_no",
            "name": "user_name",
            "realname_level": "level",
            "auth_method": "auth_type",
            "auth_time": "auth_at",
            "credit_code": "org_cert_no",
            "unit_name": "org_name",
            "operator": "operator_name",
            "channel_kind": "channel_type",
            "branch_id": "branch_no",
            "staff_id": "staff_no",
            "roles": "roles",
        },
    ),
    "sandbox-wechat": SandboxIssuer(
        name="sandbox-wechat",
        iss="https://sandbox.socialsec.invalid/wechat",
        algorithm="ES256",
        key_file="sandbox-wechat-issuer.pem",
        platform="wechat",
        claims={
            "sub": "openid",
            "kind": "identity_type",
            "id_number": "id_card",
            "name": "real_name",
            "realname_level": "verify_level",
            "auth_method": "verify_method",
            "auth_time": "verify_time",
            "credit_code": "corp_code",
            "unit_name": "corp_name",
            "operator": "operator",
            "channel_kind": "channel",
            "branch_id": "branch",
            "staff_id": "staff_id",
            "roles": "role_list",
        },
    ),
}


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64u(n: int) -> str:
    return _b64u(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


def public_jwk(private_pem: bytes | str) -> dict[str, Any]:
    """The public JWK of a private key, with its RFC 7638 thumbprint as kid."""
    data = private_pem.encode() if isinstance(private_pem, str) else private_pem
    key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_numbers = key.public_key().public_numbers()
        members = {"e": _int_b64u(rsa_numbers.e), "kty": "RSA", "n": _int_b64u(rsa_numbers.n)}
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        ec_numbers = key.public_key().public_numbers()
        members = {
            "crv": "P-256", "kty": "EC",
            "x": _b64u(ec_numbers.x.to_bytes(32, "big")), "y": _b64u(ec_numbers.y.to_bytes(32, "big")),
        }
        alg = "ES256"
    else:
        raise ValueError("sandbox issuer keys are RSA or EC P-256")
    thumbprint = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return {**members, "kid": _b64u(thumbprint), "use": "sig", "alg": alg}


def issuer_private_pem(issuer: SandboxIssuer, keys_dir: Path) -> str:
    path = keys_dir / issuer.key_file
    if not path.exists():
        raise FileNotFoundError(f"sandbox issuer key {path} missing: run `python -m devtools.keys`")
    return path.read_text()


def jwks_of(issuer: SandboxIssuer, keys_dir: Path) -> dict[str, Any]:
    """The issuer's published key set."""
    return {"keys": [public_jwk(issuer_private_pem(issuer, keys_dir))]}


def derive_sub(issuer: SandboxIssuer, persona: dict[str, Any]) -> str:
    """A stable platform user id for a persona (the same person gets the same id on each token)."""
    handle = "|".join(
        str(persona.get(k) or "") for k in ("kind", "id_number", "credit_code", "channel_kind", "branch_id", "staff_id")
    )
    digest = hashlib.sha256(f"{issuer.name}|{handle}".encode()).digest()
    if issuer.platform == "alipay":
        return "2088" + str(int.from_bytes(digest[:8], "big"))[:12].zfill(12)  # Alipay user ids: 2088 + 12 digits
    return "o" + _b64u(digest)[:27]  # WeChat openids: 28 characters


def mint_token(
    issuer_name: str,
    persona: dict[str, Any],
    *,
    keys_dir: Path,
    now: float | None = None,
    ttl_seconds: int = 3600,
    audience: str = AUDIENCE,
) -> tuple[str, str, datetime]:
    """Sign a platform token for a persona (our claim names); return (token, kid, expires_at)."""
    issuer = SANDBOX_ISSUERS[issuer_name]
    issued = int(now if now is not None else time.time())
    private_pem = issuer_private_pem(issuer, keys_dir)
    kid = public_jwk(private_pem)["kid"]
    persona = {k: v for k, v in persona.items() if v is not None}
    persona.setdefault("sub", derive_sub(issuer, persona))
    if persona.get("kind") == "citizen":
        persona.setdefault("auth_time", issued)
    claims: dict[str, Any] = {
        "iss": issuer.iss,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    for ours, value in persona.items():
        claims[issuer.claims.get(ours, ours)] = value
    token = jwt.encode(claims, private_pem, algorithm=issuer.algorithm, headers={"kid": kid})
    return token, kid, datetime.fromtimestamp(issued + ttl_seconds, UTC)


def issuers_document(sandbox_url: str) -> dict[str, Any]:
    """An issuers file trusting the two sandbox issuers (keys fetched from the sandbox's JWKS)."""
    base = sandbox_url.rstrip("/")
    return {
        "issuers": [
            {
                "name": issuer.name,
                "issuer": issuer.iss,
                "audience": AUDIENCE,
                "algorithms": [issuer.algorithm],
                "kinds": list(ALL_KINDS),
                "platform": issuer.platform,
                "jwks_uri": f"{base}/sandbox/{issuer.name}/.well-known/jwks.json",
                "claims": dict(issuer.claims),
                "leeway_seconds": 60,
            }
            for issuer in SANDBOX_ISSUERS.values()
        ]
    }


def write_default_issuers_file(var_dir: Path, sandbox_url: str) -> Path:
    """Write $SOCIALSEC_VAR_DIR/issuers.json trusting the sandbox issuers, unless it exists; return its path."""
    path = Path(var_dir) / "issuers.json"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(issuers_document(sandbox_url), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
