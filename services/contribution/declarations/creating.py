"""添加申报: a person's declaration (the citizen's own, or an agency's for them), after the enrolment check.

Employer declarations and staff assessments live in `employers/`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.enums import Category
from services.common.identifiers import month_index
from services.common.pii import id_hash
from services.common.principal import Principal
from services.contribution.declarations.claims import save_declaration
from services.contribution.enums import LinePayer
from services.contribution.errors import CategoryNotAllowed, NotEnrolled
from services.contribution.models import Declaration, DeclarationSource, DeclarationStatus, KnownEnrolment
from services.contribution.policies.pricing import Line
from services.contribution.policies.quotes import Priced, price
from services.contribution.schemas import DeclarationIn, QuoteIn


async def _check_enrolled(*, session: AsyncSession, person_key: str, priced: Priced) -> str | None:
    """An enrolment of the category in the region must cover every month; its person id."""
    rows = (
        await session.execute(
            select(KnownEnrolment).where(KnownEnrolment.id_hash == person_key, KnownEnrolment.category == priced.category)
        )
    ).scalars().all()
    if priced.category == Category.resident:
        assert priced.year is not None
        needed = [f"{priced.year:04d}-01", f"{priced.year:04d}-12"]
    else:
        needed = priced.months
    region_matches = [
        e for e in rows
        if priced.region_code == e.region_code
        or priced.region_code in _parents(e.region_code)
        or e.region_code in _parents(priced.region_code)
    ]

    def covered(first: str, last: str) -> bool:
        return any(
            month_index(e.start_month) <= month_index(last)
            and (e.end_month is None or month_index(e.end_month) >= month_index(first))
            for e in region_matches
        )

    if priced.category == Category.resident:
        # A resident's year is declared when the enrolment is open at some point in it.
        uncovered = [] if covered(needed[0], needed[1]) else [str(priced.year)]
    else:
        uncovered = [m for m in needed if not covered(m, m)]
    if uncovered or not region_matches:
        raise NotEnrolled(
            detail_zh="请先办理该类别、该地区的参保登记", detail_en="Enrol in this category and region first",
            params={"category": str(priced.category), "region_code": priced.region_code,
                    "months": uncovered or needed},
        )
    return region_matches[0].person_id


def _parents(region_code: str) -> tuple[str, str]:
    return region_code[:4] + "00", region_code[:2] + "0000"


def _person_claims(person_key: str, priced: Priced) -> list[tuple[str, str, str]]:
    if priced.category == Category.resident:
        return [(person_key, str(priced.year), "pension")]
    seen: dict[tuple[str, str, str], None] = {}
    for x in priced.lines:
        if x.payer != LinePayer.government:
            seen[(person_key, x.month, str(x.insurance))] = None
    return list(seen)


async def create_person_declaration(
    *, session: AsyncSession, body: QuoteIn, person_key: str, actor: Principal, now: datetime, today: date,
    current_month: str, ttl: timedelta, agency_credit_code: str | None = None,
) -> Declaration:
    """A flexible or resident declaration for a person (draft when the person makes it, awaiting payment
    when an authorized agency submits it)."""
    if body.category not in (Category.flexible, Category.resident):
        raise CategoryNotAllowed(
            detail_zh="职工由单位申报缴费", detail_en="Employees are declared by their employer",
            params={"allowed": ["flexible", "resident"]},
        )
    priced = await price(session=session, body=body, today=today, current_month=current_month)
    person_id = await _check_enrolled(session=session, person_key=person_key, priced=priced)
    by_agency = agency_credit_code is not None
    decl = Declaration(
        id=str(uuid.uuid4()),
        source=DeclarationSource.agency if by_agency else DeclarationSource.citizen,
        status=DeclarationStatus.awaiting_payment if by_agency else DeclarationStatus.draft,
        category=str(priced.category), region_code=priced.region_code, person_key=person_key, person_id=person_id,
        agency_credit_code=agency_credit_code, months=priced.months, year=priced.year, base_fen=body.base_fen,
        grade_fen=body.grade_fen, total_fen=priced.total_fen, subsidy_fen=priced.subsidy_fen,
        created_by=actor.actor_id, created_at=now, confirmed_at=now if by_agency else None, expires_at=now + ttl,
    )
    lines = [Line(**{**x.__dict__, "person_key": person_key, "person_id": person_id}) for x in priced.lines]
    return await save_declaration(session=session, declaration=decl, lines=lines,
                                  claims=_person_claims(person_key, priced))


async def create_citizen_declaration(
    *, session: AsyncSession, body: DeclarationIn, principal: Principal, now: datetime, today: date,
    current_month: str, ttl: timedelta,
) -> Declaration:
    """添加申报: the citizen's own declaration, as a draft to confirm."""
    assert principal.id_number
    return await create_person_declaration(
        session=session, body=body, person_key=id_hash(principal.id_number), actor=principal, now=now, today=today,
        current_month=current_month, ttl=ttl,
    )
