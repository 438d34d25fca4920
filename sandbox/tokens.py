"""The sandbox's token side: mint a real-name token for a persona, publish each issuer's JWKS."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox.issuers import SANDBOX_ISSUERS, jwks_of, mint_token
from services.common.errors import NotFound
from services.common.identifiers import CreditCode, IdNumber
from services.common.principal import ChannelKind, PrincipalKind, StaffRole

router = APIRouter(tags=["sandbox tokens"])

IssuerName = Literal["sandbox-alipay", "sandbox-wechat"]


class TokenRequest(BaseModel):
    """A persona as the platform knows it (our names; the issuer renames them in the token)."""

    model_config = ConfigDict(extra="forbid")

    issuer: IssuerName
    kind: PrincipalKind
    sub: str | None = Field(default=None, min_length=1, max_length=128)
    id_number: IdNumber | None = None
    name: str | None = Field(default=None, min_length=1, max_length=64)
    realname_level: int | None = Field(default=None, ge=1, le=3)
    auth_method: str | None = Field(default=None, min_length=1, max_length=32)
    auth_time: int | None = Field(default=None, ge=0, le=10**11)
    credit_code: CreditCode | None = None
    unit_name: str | None = Field(default=None, min_length=1, max_length=128)
    operator: str | None = Field(default=None, min_length=1, max_length=64)
    channel_kind: ChannelKind | None = None
    branch_id: str | None = Field(default=None, min_length=1, max_length=64)
    staff_id: str | None = Field(default=None, min_length=1, max_length=64)
    roles: list[StaffRole] | None = Field(default=None, max_length=8)
    ttl_seconds: int = Field(default=3600, ge=1, le=86_400)


class TokenAnswer(BaseModel):
    token: str
    issuer: str
    kid: str
    expires_at: datetime


@router.post("/sandbox/tokens", status_code=201, summary="Issue a platform token for a persona")
def issue_token(body: TokenRequest, request: Request) -> TokenAnswer:
    """Sign a token the way the chosen platform would, with its claim names."""
    persona = body.model_dump(mode="json", exclude={"issuer", "ttl_seconds"}, exclude_none=True)
    token, kid, expires_at = mint_token(
        body.issuer, persona, keys_dir=request.app.state.keys_dir, ttl_seconds=body.ttl_seconds,
    )
    return TokenAnswer(token=token, issuer=body.issuer, kid=kid, expires_at=expires_at)


@router.get("/sandbox/{issuer}/.well-known/jwks.json", summary="The issuer's public keys")
def issuer_jwks(issuer: Annotated[str, Path(max_length=64)], request: Request) -> dict[str, object]:
    spec = SANDBOX_ISSUERS.get(issuer)
    if spec is None:
        raise NotFound()
    return jwks_of(spec, request.app.state.keys_dir)
