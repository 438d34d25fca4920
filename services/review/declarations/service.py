"""The employer annual declaration (年度申报): lines checked one by one (`lines.py`), differences, submit, decision."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock, aware
from services.common.pagination import keyset_page
from services.common.principal import Principal
from services.review.declarations.lines import differences, validate_lines
from services.review.declarations.roster import roster_for_year
from services.review.errors import (
    DeclarationIncomplete,
    DeclarationNotEditable,
    DeclarationNotFound,
    DeclarationNotSubmitted,
    EmployerNotFound,
    YearNotDeclarable,
)
from services.review.events import (
    ANNUAL_DECLARATION_APPROVED,
    OUTBOX,
    AnnualDeclarationApproved,
    ApprovedLine,
)
from services.review.models import AnnualDeclaration, Band, DeclarationLine, Employer, ReviewRule
from services.review.rules import band_in_force, clamp, rule_in_force
from services.review.schemas import (
    BandOut,
    DeclarationCheckOut,
    DeclarationOut,
    DeclarationPage,
    DeclarationStatus,
    DeclaredLineOut,
    DeclaredLinePage,
)

EDITABLE = (DeclarationStatus.draft, DeclarationStatus.returned)
SETTLED = (DeclarationStatus.submitted, DeclarationStatus.approved, DeclarationStatus.assessed)


def deadline_of(rule: ReviewRule, year: int) -> date:
    """The declaration deadline for a wage year (in the following year)."""
    mm, dd = (int(x) for x in rule.declaration_deadline.split("-"))
    return date(year + 1, mm, dd)


def effective_from_of(rule: ReviewRule, year: int) -> str:
    """The month the bases declared for a wage year apply from."""
    return f"{year + 1:04d}-{rule.bases_from_month:02d}"


async def get_employer(*, session: AsyncSession, credit_code: str) -> Employer:
    """A registered employer (404 employer_not_found)."""
    row = await session.get(Employer, credit_code)
    if row is None:
        raise EmployerNotFound()
    return row


def check_year(year: int, today: date) -> None:
    """Wages are declared for a past year only."""
    if not 2000 <= year < today.year:
        raise YearNotDeclarable(params={"year": year, "latest_year": today.year - 1})


def declaration_out(d: AnnualDeclaration) -> DeclarationOut:
    return DeclarationOut(
        id=d.id, credit_code=d.credit_code, year=d.year, region_code=d.region_code, status=DeclarationStatus(d.status),
        headcount=d.headcount, total_wages_fen=d.total_wages_fen, invalid_lines=d.invalid_lines,
        effective_from=d.effective_from, overdue=d.overdue, reasons=d.reasons, submitted_at=aware(d.submitted_at) if d.submitted_at else None,
        decided_at=aware(d.decided_at) if d.decided_at else None,
    )


def band_out(b: Band | None) -> BandOut | None:
    if b is None:
        return None
    return BandOut(region_code=b.region_code, effective_from=b.effective_from, effective_to=b.effective_to,
                   base_lower_fen=b.base_lower_fen, base_upper_fen=b.base_upper_fen)


async def get_or_create_declaration(
    session: AsyncSession, clock: Clock, employer: Employer, year: int, effective_from: str
) -> AnnualDeclaration:
    """The employer's declaration of the year, locked; created as a draft when missing (the unique key decides)."""
    q = select(AnnualDeclaration).where(
        AnnualDeclaration.credit_code == employer.credit_code, AnnualDeclaration.year == year
    ).with_for_update()
    row = (await session.execute(q)).scalar_one_or_none()
    if row is not None:
        return row
    now = clock.now()
    row = AnnualDeclaration(
        id=str(uuid.uuid4()), credit_code=employer.credit_code, year=year, region_code=employer.region_code,
        status=str(DeclarationStatus.draft), headcount=0, total_wages_fen=0, invalid_lines=0,
        effective_from=effective_from, overdue=False, created_at=now, updated_at=now, history=[],
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        row = (await session.execute(q)).scalar_one()
    return row


async def find_declaration(*, session: AsyncSession, credit_code: str, year: int) -> AnnualDeclaration:
    """The employer's declaration of a wage year (404 annual_declaration_not_found)."""
    row = (
        await session.execute(
            select(AnnualDeclaration).where(AnnualDeclaration.credit_code == credit_code, AnnualDeclaration.year == year)
        )
    ).scalar_one_or_none()
    if row is None:
        raise DeclarationNotFound()
    return row


async def put_lines(
    *, session: AsyncSession, clock: Clock, employer: Employer, year: int, raw_lines: list[Any], en: bool = False,
    numbers: list[int] | None = None, columns: dict[str, str] | None = None,
) -> DeclarationCheckOut:
    """Replace the declared lines; answer per-line errors and the differences with the roster and the band."""
    today = clock.today()
    check_year(year, today)
    rule = await rule_in_force(session=session, region_code=employer.region_code, on=today)
    effective_from = effective_from_of(rule, year)
    decl = await get_or_create_declaration(session, clock, employer, year, effective_from)
    if decl.status not in EDITABLE:
        raise DeclarationNotEditable(params={"status": decl.status})
    band = await band_in_force(session=session, region_code=employer.region_code, month=effective_from)
    valid, errors = validate_lines(raw_lines, today=today, en=en, numbers=numbers)
    if columns:
        for e in errors:
            e.column = columns.get(e.field)
    for v in valid:
        v["declaration_id"] = decl.id
        v["new_base_fen"] = clamp(v["avg_monthly_wage_fen"], band)
    await session.execute(delete(DeclarationLine).where(DeclarationLine.declaration_id == decl.id))
    if valid:
        await session.execute(insert(DeclarationLine), valid)
    decl.headcount = len(valid)
    decl.total_wages_fen = sum(v["avg_monthly_wage_fen"] for v in valid)
    decl.invalid_lines = len({e.line for e in errors})
    decl.effective_from = effective_from
    decl.region_code = employer.region_code
    decl.updated_at = clock.now()
    await session.flush()
    roster = await roster_for_year(session=session, credit_code=employer.credit_code, year=year)
    out = declaration_out(decl)
    return DeclarationCheckOut(
        **out.model_dump(), band=band_out(band), errors=errors, differences=differences(valid, roster, band),
    )


def add_history(d: AnnualDeclaration, entry: dict[str, Any]) -> None:
    """Append to the declaration's own history (submit, decisions, assessment)."""
    d.history = [*(d.history or []), entry]


async def submit(*, session: AsyncSession, clock: Clock, employer: Employer, year: int, actor: Principal) -> DeclarationOut:
    """Submit a draft or returned declaration for review."""
    decl = await find_declaration(session=session, credit_code=employer.credit_code, year=year)
    if decl.status not in EDITABLE:
        raise DeclarationNotEditable(params={"status": decl.status})
    if decl.headcount == 0 or decl.invalid_lines:
        raise DeclarationIncomplete(params={"headcount": decl.headcount, "invalid_lines": decl.invalid_lines})
    now = clock.now()
    decl.status = str(DeclarationStatus.submitted)
    decl.submitted_at = now
    decl.updated_at = now
    add_history(decl, {"at": now.isoformat(), "action": "submit", "by": actor.actor_id})
    await session.flush()
    return declaration_out(decl)


async def get_declaration(*, session: AsyncSession, declaration_id: str, lock: bool = False) -> AnnualDeclaration:
    """A declaration by id (404 annual_declaration_not_found)."""
    q = select(AnnualDeclaration).where(AnnualDeclaration.id == declaration_id)
    row = (await session.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
    if row is None:
        raise DeclarationNotFound()
    return row


async def emit_bases(session: AsyncSession, clock: Clock, decl: AnnualDeclaration, basis: str) -> None:
    """Publish the declaration's bases (review.annual_declaration.approved.v1) in this transaction."""
    lines = (
        await session.execute(
            select(DeclarationLine.id_hash, DeclarationLine.avg_monthly_wage_fen, DeclarationLine.new_base_fen)
            .where(DeclarationLine.declaration_id == decl.id).order_by(DeclarationLine.line_no)
        )
    ).all()
    OUTBOX.emit(
        session, type=ANNUAL_DECLARATION_APPROVED, subject=decl.credit_code, time=clock.now(),
        data=AnnualDeclarationApproved(
            declaration_id=decl.id, credit_code=decl.credit_code, year=decl.year, region_code=decl.region_code,
            effective_from=decl.effective_from, basis=basis,
            lines=[ApprovedLine(id_hash=h, avg_monthly_wage_fen=w, new_base_fen=b) for h, w, b in lines],
        ),
    )


async def decide(
    *, session: AsyncSession, clock: Clock, declaration_id: str, actor: Principal, decision: str, reasons: list[str]
) -> DeclarationOut:
    """A reviewer approves (the new bases are published) or returns a submitted declaration (audited)."""
    decl = await get_declaration(session=session, declaration_id=declaration_id, lock=True)
    if decl.status != DeclarationStatus.submitted:
        raise DeclarationNotSubmitted(params={"status": decl.status})
    now = clock.now()
    reasons = [r.strip() for r in reasons if r.strip()]
    decl.status = str(DeclarationStatus.approved if decision == "approve" else DeclarationStatus.returned)
    decl.reasons = reasons or None
    decl.decided_by = actor.actor_id
    decl.decided_at = now
    decl.updated_at = now
    add_history(decl, {"at": now.isoformat(), "action": decision, "by": actor.actor_id, "reasons": reasons})
    if decision == "approve":
        await emit_bases(session, clock, decl, "declared")
    record_audit(
        session, actor=actor, action=f"annual_declaration.{decision}", target_type="annual_declaration",
        target_id=decl.id, at=now, reason="; ".join(reasons) or None,
        details={"credit_code": decl.credit_code, "year": decl.year, "headcount": decl.headcount},
    )
    await session.flush()
    return declaration_out(decl)


async def list_declarations(
    *, session: AsyncSession, status: DeclarationStatus | None, year: int | None, limit: int, cursor: str | None
) -> DeclarationPage:
    """Declarations for staff, oldest update first (a reviewer's queue with status=submitted)."""
    q = select(AnnualDeclaration)
    if status is not None:
        q = q.where(AnnualDeclaration.status == str(status))
    if year is not None:
        q = q.where(AnnualDeclaration.year == year)
    page = await keyset_page(
        session, q, keys=[AnnualDeclaration.updated_at, AnnualDeclaration.id], cursor=cursor, limit=limit,
    )
    return DeclarationPage(items=[declaration_out(d) for d in page.rows], next_cursor=page.next_cursor)


async def declared_lines(
    *, session: AsyncSession, declaration_id: str, limit: int, cursor: str | None
) -> DeclaredLinePage:
    """A declaration's stored lines (masked ids), in line order."""
    await get_declaration(session=session, declaration_id=declaration_id)
    q = select(DeclarationLine).where(DeclarationLine.declaration_id == declaration_id)
    page = await keyset_page(session, q, keys=[DeclarationLine.line_no], cursor=cursor, limit=limit)
    return DeclaredLinePage(
        items=[
            DeclaredLineOut(line=x.line_no, id_number_masked=x.id_masked, name=x.name,
                            avg_monthly_wage_fen=x.avg_monthly_wage_fen, new_base_fen=x.new_base_fen)
            for x in page.rows
        ],
        next_cursor=page.next_cursor,
    )
