"""The gateway's signed principal (`X-Principal`) and the route guards built on it.

The gateway authenticates the caller's platform token and forwards a short-lived
ES256 JWS with the normalized principal, audience = the target service. Services
trust nothing else: a plain header, a missing or a forged principal is 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from jose import jws, jwt
from jose.exceptions import JOSEError
from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.clock import request_clock
from services.common.errors import DomainError
from services.common.keyset import KeySet

PRINCIPAL_HEADER = "X-Principal"
PRINCIPAL_ISSUER = "socialsec-gateway"
PRINCIPAL_TTL_SECONDS = 60
FRESH_AUTH_SECONDS = 300


class PrincipalKind(StrEnum):
    citizen = "citizen"
    employer = "employer"
    agency = "agency"
    channel = "channel"
    staff = "staff"


class ChannelKind(StrEnum):
    bank = "bank"
    hospital = "hospital"
    window = "window"
    hotline = "hotline"


class StaffRole(StrEnum):
    operator = "operator"
    reviewer = "reviewer"
    admin = "admin"


class Principal(BaseModel):
    """Who is calling, as the gateway normalized it from the platform token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: PrincipalKind
    sub: str
    issuer: str | None = None
    platform: str | None = None  # alipay, wechat, ... (from the issuer registry)
    id_number: str | None = None
    name: str | None = None
    realname_level: int | None = None
    auth_method: str | None = None
    auth_time: int | None = None  # epoch seconds
    credit_code: str | None = None
    unit_name: str | None = None
    operator: str | None = None
    channel_kind: str | None = None
    branch_id: str | None = None
    staff_id: str | None = None
    roles: tuple[str, ...] = ()

    @property
    def actor_id(self) -> str:
        """A stable, PII-free handle for audit rows and idempotency scopes."""
        if self.kind == PrincipalKind.staff and self.staff_id:
            return f"staff:{self.staff_id}"
        if self.kind in (PrincipalKind.employer, PrincipalKind.agency) and self.credit_code:
            return f"{self.kind}:{self.credit_code}"
        if self.kind == PrincipalKind.channel:
            return f"channel:{self.channel_kind}:{self.branch_id or self.sub}"
        return f"{self.kind}:{self.issuer}:{self.sub}"

    def has_role(self, role: str) -> bool:
        """Staff role check; admin includes operator and reviewer."""
        return self.kind == PrincipalKind.staff and (role in self.roles or StaffRole.admin in self.roles)


# ---- errors -----------------------------------------------------------------


class PrincipalRequired(DomainError):
    status = 401
    code = "principal_required"
    title_zh = "需要登录"
    title_en = "Authentication required"


class PrincipalInvalid(DomainError):
    status = 401
    code = "principal_invalid"
    title_zh = "身份凭证无效"
    title_en = "Invalid principal"


class PrincipalKindNotAllowed(DomainError):
    status = 403
    code = "principal_kind_not_allowed"
    title_zh = "当前身份无权办理此业务"
    title_en = "This kind of caller may not do this"


class RealnameLevelTooLow(DomainError):
    status = 403
    code = "realname_level_too_low"
    title_zh = "实名认证等级不足，请提升认证等级"
    title_en = "Real-name level too low: step up authentication"


class FreshAuthRequired(DomainError):
    status = 403
    code = "fresh_auth_required"
    title_zh = "请重新进行身份认证（5分钟内）"
    title_en = "A fresh authentication (under 5 minutes) is required"


class FaceAuthRequired(DomainError):
    status = 403
    code = "face_auth_required"
    title_zh = "请先完成人脸识别认证"
    title_en = "A fresh face authentication is required"


class StaffRoleRequired(DomainError):
    status = 403
    code = "staff_role_required"
    title_zh = "工作人员角色无权办理此业务"
    title_en = "Your staff role does not allow this"


# ---- encode / decode ----------------------------------------------------------


class NotOwnEmployer(DomainError):
    status = 403
    code = "not_own_employer"
    title_zh = "只能办理本单位的业务"
    title_en = "An employer may act only on its own credit code"


def check_own_unit(principal: Principal, credit_code: str) -> None:
    """A path naming another unit's credit code is 403 `not_own_employer` for an employer; staff act on every unit.

    Both sides are compared normalized (trimmed, upper case), as credit codes are
    stored; the route decides which kinds may call it at all.
    """
    own = (principal.credit_code or "").strip().upper()
    if principal.kind == PrincipalKind.employer and own != credit_code.strip().upper():
        raise NotOwnEmployer()


def encode_principal(
    principal: Principal | dict[str, Any],
    *,
    audience: str,
    private_key_pem: str,
    request_id: str | None = None,
    now: float | None = None,
    ttl: int = PRINCIPAL_TTL_SECONDS,
    kid: str | None = None,
) -> str:
    """Sign a principal for one service (the gateway signs one per verified token and service, and reuses it
    for part of its lifetime; the request id travels in X-Request-ID, so `request_id` is only for callers
    that want it bound into the signature)."""
    issued = int(now if now is not None else time.time())
    prn = principal.model_dump(mode="json", exclude_none=True) if isinstance(principal, Principal) else principal
    claims = {
        "iss": PRINCIPAL_ISSUER,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl,
        "prn": prn,
    }
    if request_id is not None:
        claims["rid"] = request_id
    headers = {"kid": kid} if kid else None
    token: str = jwt.encode(claims, private_key_pem, algorithm="ES256", headers=headers)
    return token


def decode_principal(
    token: str, *, audience: str, public_key_pem: str | None = None, keys: KeySet | None = None,
) -> Principal:
    """Verify a gateway principal: ES256 only, our issuer, this service's audience, unexpired.

    With a key set, the key is the one the token's `kid` names (a kid the set does not hold is refused);
    a token without kid (signed before kids were sent) is tried against every key of the set.
    """
    if len(token) > 8192:
        raise PrincipalInvalid(detail_en="principal too large", detail_zh="身份凭证过大")
    if keys is not None:
        try:
            kid = jws.get_unverified_header(token).get("kid")
        except (JOSEError, AttributeError) as exc:
            raise PrincipalInvalid() from exc
        if kid is not None and not isinstance(kid, str):
            raise PrincipalInvalid()
        pems = [k.pem for k in keys.candidates(kid)]
    elif public_key_pem is not None:
        pems = [public_key_pem]
    else:
        raise ValueError("decode_principal needs public_key_pem or keys")
    if not pems:
        raise PrincipalInvalid()
    if len(pems) > 1:
        # No kid: the key of the set whose signature verifies, then the claims with it alone.
        pems = [pem for pem in pems if _signed_by(token, pem)][:1]
        if not pems:
            raise PrincipalInvalid()
    try:
        claims = jwt.decode(
            token,
            pems[0],
            algorithms=["ES256"],
            audience=audience,
            issuer=PRINCIPAL_ISSUER,
            options={"require_exp": True, "require_iat": True, "require_aud": True, "require_iss": True},
        )
    except JOSEError as exc:
        raise PrincipalInvalid() from exc
    try:
        return Principal.model_validate(claims.get("prn") or {})
    except ValidationError as exc:
        raise PrincipalInvalid() from exc


def _signed_by(token: str, pem: str) -> bool:
    try:
        jws.verify(token, pem, algorithms=["ES256"])
    except JOSEError:
        return False
    return True


# ---- FastAPI dependencies ----------------------------------------------------


def optional_principal(request: Request) -> Principal | None:
    """The verified principal, or None when the request carries none."""
    token = request.headers.get(PRINCIPAL_HEADER)
    if not token:
        return None
    verifier: Callable[[str], Principal] = request.app.state.principal_verifier
    return verifier(token)


def current_principal(request: Request) -> Principal:
    """The verified principal; 401 without one."""
    principal = optional_principal(request)
    if principal is None:
        raise PrincipalRequired()
    return principal


def _now(request: Request) -> float:
    return request_clock(request).now().timestamp()


def check_principal(
    principal: Principal,
    *,
    kinds: Iterable[str],
    now: float,
    min_level: int = 1,
    fresh: bool = False,
    face: bool = False,
    channel_kinds: Iterable[str] | None = None,
    roles: Iterable[str] | None = None,
) -> Principal:
    """Apply a route's who-rule to a principal; raise the refusal that tells the front end what to do."""
    allowed = set(kinds)
    if principal.kind not in allowed:
        raise PrincipalKindNotAllowed(params={"allowed": sorted(allowed)})
    if principal.kind == PrincipalKind.citizen:
        if not principal.id_number:
            raise PrincipalInvalid(detail_en="citizen principal without an id number", detail_zh="缺少证件号码")
        if (principal.realname_level or 0) < min_level:
            raise RealnameLevelTooLow(params={"required_level": min_level, "level": principal.realname_level or 0})
        if fresh or face:
            if principal.auth_time is None or now - principal.auth_time > FRESH_AUTH_SECONDS or principal.auth_time > now + 60:
                raise FaceAuthRequired() if face else FreshAuthRequired()
        if face and principal.auth_method != "face":
            raise FaceAuthRequired()
    if principal.kind == PrincipalKind.channel and channel_kinds is not None:
        ck = set(channel_kinds)
        if principal.channel_kind not in ck:
            raise PrincipalKindNotAllowed(params={"allowed_channels": sorted(ck)})
    if principal.kind in (PrincipalKind.employer, PrincipalKind.agency) and not principal.credit_code:
        raise PrincipalInvalid(detail_en="unit principal without a credit code", detail_zh="缺少统一社会信用代码")
    if principal.kind == PrincipalKind.staff and roles is not None:
        wanted = list(roles)
        if wanted and not any(principal.has_role(r) for r in wanted):
            raise StaffRoleRequired(params={"roles": wanted})
    return principal


def require(
    *kinds: str,
    min_level: int = 1,
    fresh: bool = False,
    face: bool = False,
    channel_kinds: Iterable[str] | None = None,
    roles: Iterable[str] | None = None,
) -> Callable[[Request], Principal]:
    """A dependency admitting the given principal kinds at a real-name level (citizens), freshness, roles."""
    kinds_t = tuple(str(k) for k in kinds)
    ck = tuple(channel_kinds) if channel_kinds is not None else None
    rl = tuple(roles) if roles is not None else None

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        return check_principal(
            principal, kinds=kinds_t, now=_now(request), min_level=min_level, fresh=fresh, face=face,
            channel_kinds=ck, roles=rl,
        )

    dependency.principal_guard = True  # type: ignore[attr-defined]  # the OpenAPI document lists 401 and 403
    # Who may call, as the OpenAPI operation's description states it (services.common.openapi_docs).
    dependency.principal_rule = {  # type: ignore[attr-defined]
        "kinds": kinds_t, "min_level": min_level, "fresh": fresh, "face": face, "channel_kinds": ck, "roles": rl,
    }
    return dependency


# Routes depending on one of these take a principal: their OpenAPI operations list 401 and 403
# (services.common.app completes the document from this mark).
optional_principal.principal_guard = True  # type: ignore[attr-defined]
current_principal.principal_guard = True  # type: ignore[attr-defined]

AnyPrincipal = Annotated[Principal, Depends(current_principal)]

# The principals several services' routes take; a route with other needs declares its own `require(...)`.
Staff = Annotated[Principal, Depends(require("staff"))]
StaffOperator = Annotated[Principal, Depends(require("staff", roles=["operator"]))]
StaffReviewer = Annotated[Principal, Depends(require("staff", roles=["reviewer"]))]
StaffAdmin = Annotated[Principal, Depends(require("staff", roles=["admin"]))]
EmployerPrincipal = Annotated[Principal, Depends(require("employer"))]
EmployerOrStaff = Annotated[Principal, Depends(require("employer", "staff"))]
