"""Agency authorizations: a person lets an agency (by credit code) declare and pay for them, until a date."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.pii import id_hash
from services.common.principal import Principal
from services.contribution.declarations.creating import create_person_declaration
from services.contribution.errors import (
    AgencyNotAuthorized,
    AuthorizationInvalid,
    AuthorizationNotFound,
    DeclarationNotFound,
)
from services.contribution.models import AgencyAuthorization, Declaration, DeclarationSource
from services.contribution.schemas import (
    AgencyAuthorizationIn,
    AgencyAuthorizationOut,
    AuthorizationStatus,
    QuoteIn,
)

MAX_AUTHORIZATION_DAYS = 5 * 366


async def authorization_in_force(
    *, session: AsyncSession, agency_credit_code: str, person_key: str, today: date
) -> AgencyAuthorization | None:
    """The person's authorization of the agency that is in force today, if any."""
    stmt = select(AgencyAuthorization).where(
        AgencyAuthorization.agency_credit_code == agency_credit_code,
        AgencyAuthorization.person_key == person_key,
        AgencyAuthorization.revoked_at.is_(None),
        AgencyAuthorization.valid_until >= today,
    ).limit(1)
    return (await session.execute(stmt)).scalars().first()


def authorization_out(row: AgencyAuthorization, today: date) -> AgencyAuthorizationOut:
    if row.revoked_at is not None:
        status = AuthorizationStatus.revoked
    elif row.valid_until < today:
        status = AuthorizationStatus.lapsed
    else:
        status = AuthorizationStatus.active
    return AgencyAuthorizationOut(
        id=row.id, credit_code=row.agency_credit_code, valid_until=row.valid_until, status=status,
        created_at=aware(row.created_at), revoked_at=aware(row.revoked_at) if row.revoked_at else None,
    )


async def authorize_agency(
    *, session: AsyncSession, principal: Principal, body: AgencyAuthorizationIn, now: datetime, today: date
) -> AgencyAuthorization:
    """The citizen lets an agency declare and pay for them until a date."""
    assert principal.id_number
    if body.valid_until < today or (body.valid_until - today).days > MAX_AUTHORIZATION_DAYS:
        raise AuthorizationInvalid(
            detail_zh="授权截止日期应在今天至5年内", detail_en="valid_until must be between today and five years ahead",
            errors=[{"field": "valid_until", "code": "authorization_invalid",
                     "message_zh": "日期无效", "message_en": "out of range"}],
        )
    row = AgencyAuthorization(
        id=str(uuid.uuid4()), person_key=id_hash(principal.id_number), agency_credit_code=body.credit_code,
        valid_until=body.valid_until, note=body.note, created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def revoke_authorization(*, session: AsyncSession, principal: Principal, authorization_id: str, now: datetime) -> None:
    """The citizen revokes an authorization (404 when it is not theirs)."""
    assert principal.id_number
    row = await session.get(AgencyAuthorization, authorization_id) if len(authorization_id) <= 36 else None
    if row is None or row.person_key != id_hash(principal.id_number):
        raise AuthorizationNotFound()
    if row.revoked_at is None:
        row.revoked_at = now
        await session.flush()


async def list_authorizations(*, session: AsyncSession, principal: Principal) -> list[AgencyAuthorization]:
    """The citizen's authorizations, newest first (a person has few)."""
    assert principal.id_number
    stmt = (
        select(AgencyAuthorization)
        .where(AgencyAuthorization.person_key == id_hash(principal.id_number))
        .order_by(AgencyAuthorization.created_at.desc(), AgencyAuthorization.id)
        .limit(200)
    )
    return list((await session.execute(stmt)).scalars().all())


async def create_agency_declaration(
    *, session: AsyncSession, body: QuoteIn, id_number: str, principal: Principal, now: datetime, today: date,
    current_month: str, ttl: timedelta,
) -> Declaration:
    """An agency declares for a person whose authorization is in force (403 otherwise)."""
    assert principal.credit_code
    person_key = id_hash(id_number)
    if await authorization_in_force(session=session, agency_credit_code=principal.credit_code,
                                    person_key=person_key, today=today) is None:
        raise AgencyNotAuthorized()
    return await create_person_declaration(
        session=session, body=body, person_key=person_key, actor=principal, now=now, today=today,
        current_month=current_month, ttl=ttl, agency_credit_code=principal.credit_code,
    )


async def get_agency_declaration(*, session: AsyncSession, declaration_id: str, principal: Principal) -> Declaration:
    """A declaration the agency made; 404 for any other."""
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if decl is None or decl.source != DeclarationSource.agency or decl.agency_credit_code != principal.credit_code:
        raise DeclarationNotFound()
    return decl
