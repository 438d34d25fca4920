"""Platform token verification: the one place python-jose is used, with none of its defaults trusted.

- the algorithm must be one the issuer lists (never `none`, never HS*: the registry refuses them);
- the key is the issuer's JWK chosen by `kid` here, never a whole key set for the library to try;
- the key's type (and curve) must fit the algorithm;
- exp, iat, iss, aud and the subject are required; nbf is honoured; times allow the issuer's leeway;
- tokens over 8 KB are refused before any parsing.
Claims are then mapped from the issuer's names to ours and normalized into the principal
the gateway signs for the services.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jose import jwk, jws
from jose.exceptions import JOSEError

from gateway.errors import (
    AlgorithmNotAllowed,
    AudienceInvalid,
    ClaimInvalid,
    ClaimMissing,
    IssuerUntrusted,
    KindNotAllowedForIssuer,
    SignatureInvalid,
    SigningKeyUnknown,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenNotYetValid,
    TokenTooLarge,
)
from gateway.issuers import EC_CURVE_OF, KEY_TYPE_OF, IssuerConfig, IssuerRegistry, Verified
from services.common.identifiers import ascii_digits, normalize_credit_code, normalize_id_number
from services.common.principal import ChannelKind, PrincipalKind, StaffRole

MAX_TOKEN_BYTES = 8192
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_TEXT_LIMITS = {"sub": 128, "name": 64, "auth_method": 32, "unit_name": 128, "operator": 64, "branch_id": 64, "staff_id": 64}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header; None without the header, 401 for another scheme."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenInvalid(detail_en="expected Authorization: Bearer <token>", detail_zh="应使用 Bearer 凭证")
    return value.strip()


async def authenticate(token: str, *, registry: IssuerRegistry, now: float) -> dict[str, Any]:
    """Verify a platform token and return the normalized principal (our claim names)."""
    return (await verify_token(token, registry=registry, now=now)).principal


async def verify_token(token: str, *, registry: IssuerRegistry, now: float) -> Verified:
    """Verify a platform token (or find it verified): its principal, token exp, and signed principals."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLarge()
    cached = registry.verified.entry(token, now)
    if cached is not None:
        return cached
    principal, valid_until, exp = await _verify(token, registry=registry, now=now)
    return registry.verified.put(token, principal, until=valid_until, now=now, exp=exp)


async def _verify(token: str, *, registry: IssuerRegistry, now: float) -> tuple[dict[str, Any], float, float]:
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLarge()
    if not _TOKEN_RE.match(token):
        raise TokenInvalid()
    try:
        header = jws.get_unverified_header(token)
        unverified = json.loads(jws.get_unverified_claims(token))
    except (JOSEError, ValueError, UnicodeDecodeError) as exc:
        raise TokenInvalid() from exc
    if not isinstance(header, dict) or not isinstance(unverified, dict):
        raise TokenInvalid()
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ClaimMissing(params={"claim": "iss"})
    state = registry.get(iss)
    if state is None:
        raise IssuerUntrusted()
    cfg = state.config
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in cfg.algorithms:
        raise AlgorithmNotAllowed(params={"allowed": list(cfg.algorithms)})
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenInvalid()
    key_data = await registry.key_for(state, kid)
    key = state.constructed.get((kid, alg))
    if key is None:
        key = state.constructed[(kid, alg)] = _construct_key(key_data, alg)
    try:
        payload = jws.verify(token, key, algorithms=[alg])
        claims = json.loads(payload)
    except (JOSEError, ValueError, UnicodeDecodeError) as exc:
        raise SignatureInvalid() from exc
    if not isinstance(claims, dict):
        raise TokenInvalid()
    _check_registered_claims(claims, cfg, now)
    exp = float(claims["exp"])
    return normalize_principal(claims, cfg, now), exp + cfg.leeway_seconds, exp


def _construct_key(key_data: dict[str, Any], alg: str) -> Any:
    """A python-jose key for exactly this algorithm, refusing a key of another type or curve."""
    if key_data.get("kty") != KEY_TYPE_OF[alg[:2]]:
        raise SigningKeyUnknown(detail_en="the key named by kid does not fit the algorithm", detail_zh="签名密钥与算法不符")
    if alg in EC_CURVE_OF and key_data.get("crv") != EC_CURVE_OF[alg]:
        raise SigningKeyUnknown(detail_en="the key named by kid does not fit the algorithm", detail_zh="签名密钥与算法不符")
    if key_data.get("alg") not in (None, alg):
        raise AlgorithmNotAllowed(detail_en="the key is published for another algorithm", detail_zh="签名密钥不用于此算法")
    try:
        return jwk.construct(key_data, alg)
    except (JOSEError, ValueError, TypeError) as exc:
        raise SigningKeyUnknown(detail_en="the published key cannot be used", detail_zh="签名密钥无法使用") from exc


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise ClaimMissing(params={"claim": name})
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimInvalid(params={"claim": name})
    return float(value)


def _check_registered_claims(claims: dict[str, Any], cfg: IssuerConfig, now: float) -> None:
    """exp, iat, nbf with the issuer's leeway; aud is ours."""
    leeway = cfg.leeway_seconds
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if now > exp + leeway:
        raise TokenExpired()
    if nbf is not None and now + leeway < nbf:
        raise TokenNotYetValid()
    if now + leeway < iat:
        raise TokenNotYetValid(detail_en="issued in the future", detail_zh="签发时间晚于当前时间")
    aud = claims.get("aud")
    if aud is None:
        raise ClaimMissing(params={"claim": "aud"})
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if auds is None or not all(isinstance(a, str) for a in auds):
        raise AudienceInvalid()
    if not set(auds) & set(cfg.audiences):
        raise AudienceInvalid()


def _text(claims: dict[str, Any], cfg: IssuerConfig, ours: str) -> str | None:
    value = claims.get(cfg.claim(ours))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ClaimInvalid(params={"claim": ours})
    text = str(value).strip()
    if not text:
        return None
    if len(text) > _TEXT_LIMITS.get(ours, 128):
        raise ClaimInvalid(params={"claim": ours})
    return text


def _integer(claims: dict[str, Any], cfg: IssuerConfig, ours: str) -> int | None:
    value = claims.get(cfg.claim(ours))
    if value is None:
        return None
    if isinstance(value, str) and ascii_digits(value.strip()) and len(value.strip()) <= 12:
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClaimInvalid(params={"claim": ours})
    return value


def _kind(claims: dict[str, Any], cfg: IssuerConfig) -> PrincipalKind:
    value = claims.get(cfg.claim("kind"))
    if value is None:
        if len(cfg.kinds) == 1:
            return cfg.kinds[0]
        raise ClaimMissing(params={"claim": "kind"})
    try:
        kind = PrincipalKind(value)
    except ValueError as exc:
        raise ClaimInvalid(params={"claim": "kind"}) from exc
    if kind not in cfg.kinds:
        raise KindNotAllowedForIssuer(params={"kind": str(kind), "allowed": [str(k) for k in cfg.kinds]})
    return kind


def _roles(claims: dict[str, Any], cfg: IssuerConfig) -> list[str]:
    value = claims.get(cfg.claim("roles"))
    if value is None:
        return []
    if isinstance(value, str):
        items = [v for v in re.split(r"[\s,]+", value) if v]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ClaimInvalid(params={"claim": "roles"})
    known = {r.value for r in StaffRole}
    # Roles of the identity provider that mean nothing here are left out, never guessed at.
    return sorted({r for r in items if r in known})


def normalize_principal(claims: dict[str, Any], cfg: IssuerConfig, now: float) -> dict[str, Any]:
    """Our principal from the issuer's claims, checked per kind."""
    kind = _kind(claims, cfg)
    sub = _text(claims, cfg, "sub")
    if sub is None:
        raise ClaimMissing(params={"claim": "sub"})
    prn: dict[str, Any] = {"kind": kind.value, "sub": sub, "issuer": cfg.name}
    if cfg.platform:
        prn["platform"] = cfg.platform
    for name in ("name", "auth_method", "unit_name", "operator", "branch_id", "staff_id"):
        prn[name] = _text(claims, cfg, name)
    for claim, normalize in (("id_number", normalize_id_number), ("credit_code", normalize_credit_code)):
        value = _text(claims, cfg, claim)
        if value is not None:
            try:
                prn[claim] = normalize(value)
            except ValueError as exc:
                raise ClaimInvalid(params={"claim": claim}) from exc
    level = _integer(claims, cfg, "realname_level")
    if level is not None and not 1 <= level <= 3:
        raise ClaimInvalid(params={"claim": "realname_level"})
    prn["realname_level"] = level
    auth_time = _integer(claims, cfg, "auth_time")
    if auth_time is not None and auth_time > now + cfg.leeway_seconds:
        raise ClaimInvalid(params={"claim": "auth_time"})
    prn["auth_time"] = auth_time
    channel_kind = _text(claims, cfg, "channel_kind")
    if channel_kind is not None and channel_kind not in {c.value for c in ChannelKind}:
        raise ClaimInvalid(params={"claim": "channel_kind"})
    prn["channel_kind"] = channel_kind
    roles = _roles(claims, cfg)
    if roles:
        prn["roles"] = roles
    _require_for_kind(kind, prn)
    return {k: v for k, v in prn.items() if v is not None}


_REQUIRED = {
    PrincipalKind.citizen: ("id_number", "name", "realname_level"),
    PrincipalKind.employer: ("credit_code",),
    PrincipalKind.agency: ("credit_code",),
    PrincipalKind.channel: ("channel_kind",),
    PrincipalKind.staff: (),
}


def _require_for_kind(kind: PrincipalKind, prn: dict[str, Any]) -> None:
    if kind == PrincipalKind.staff and not prn.get("staff_id"):
        prn["staff_id"] = prn["sub"]
    for name in _REQUIRED[kind]:
        if prn.get(name) is None:
            raise ClaimMissing(params={"claim": name, "kind": kind.value})


__all__ = ["MAX_TOKEN_BYTES", "TokenError", "authenticate", "bearer_token", "normalize_principal", "verify_token"]
