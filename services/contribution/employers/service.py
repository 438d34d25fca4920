"""Employer monthly declarations with late fees (art. 86), and staff assessments at 110% (art. 62)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import SHANGHAI
from services.common.enums import Category
from services.common.identifiers import month_from_index, month_index
from services.common.principal import Principal, check_own_unit
from services.contribution.declarations.claims import save_declaration
from services.contribution.declarations.reading import EMPLOYER_SOURCES, lines_of
from services.contribution.errors import (
    DeclarationNotFound,
    EmployerNotRegistered,
    MonthNotDeclarable,
    NoActiveEmployees,
    NoPreviousDeclaration,
)
from services.contribution.events import EMPLOYER_ASSESSED, OUTBOX, EmployerAssessed
from services.contribution.models import (
    Declaration,
    DeclarationSource,
    DeclarationStatus,
    EmployeeBase,
    KnownEmployer,
    KnownEnrolment,
)
from services.contribution.policies.pricing import Line, clamp, deadline_of, late_fee, round_fen
from services.contribution.policies.quotes import payer_lines
from services.contribution.policies.service import policy_in_force
from services.contribution.schemas import AssessmentIn, EmployerDeclarationIn


async def registered_employer(*, session: AsyncSession, credit_code: str) -> KnownEmployer:
    """The employer as registration announced it; 404 when unknown."""
    row = await session.get(KnownEmployer, credit_code)
    if row is None:
        raise EmployerNotRegistered(params={"credit_code": credit_code})
    return row


async def active_employees(*, session: AsyncSession, credit_code: str, month: str) -> list[KnownEnrolment]:
    """The employee enrolments of the unit open in the month."""
    i = month_index(month)
    rows = (
        await session.execute(
            select(KnownEnrolment)
            .where(KnownEnrolment.credit_code == credit_code, KnownEnrolment.category == Category.employee)
            .order_by(KnownEnrolment.start_month, KnownEnrolment.enrolment_id)
        )
    ).scalars().all()
    return [
        e for e in rows
        if month_index(e.start_month) <= i and (e.end_month is None or i <= month_index(e.end_month))
    ]


async def _bases(*, session: AsyncSession, credit_code: str, month: str) -> dict[str, int]:
    """Approved bases in force in the month, by person (the newest dated base wins)."""
    rows = (
        await session.execute(
            select(EmployeeBase)
            .where(EmployeeBase.credit_code == credit_code, EmployeeBase.effective_from <= month)
            .order_by(EmployeeBase.effective_from)
        )
    ).scalars().all()
    return {r.id_hash: r.base_fen for r in rows}


async def create_employer_declaration(
    *, session: AsyncSession, credit_code: str, body: EmployerDeclarationIn, principal: Principal, now: datetime,
    today: date, current_month: str, ttl: timedelta,
) -> Declaration:
    """The unit's declaration of a month: every active employee's base clamped to the band, both shares,
    work injury by the unit's class, and the late fee when declared after the deadline."""
    check_own_unit(principal, credit_code)
    unit = await registered_employer(session=session, credit_code=credit_code)
    month = body.month
    if month_index(month) > month_index(current_month):
        raise MonthNotDeclarable(
            detail_zh="不能申报未来月份", detail_en="A future month cannot be declared yet",
            params={"month": month, "current_month": current_month},
        )
    employees = await active_employees(session=session, credit_code=credit_code, month=month)
    if body.person_ids is not None:
        wanted = set(body.person_ids)
        unknown = sorted(wanted - {e.person_id for e in employees})
        if unknown:
            raise NoActiveEmployees(
                detail_zh="部分人员该月不是本单位在职参保职工", detail_en="Some persons are not active employees that month",
                params={"person_ids": unknown},
            )
        employees = [e for e in employees if e.person_id in wanted]
    if not employees:
        raise NoActiveEmployees(params={"month": month})
    policy = await policy_in_force(session=session, region_code=unit.region_code, month=month)
    bases = await _bases(session=session, credit_code=credit_code, month=month)
    lines: list[Line] = []
    claims: list[tuple[str, str, str]] = []
    for e in employees:
        wage = bases.get(e.id_hash, e.monthly_wage_fen or policy.base_lower_fen)
        base = clamp(wage, policy.base_lower_fen, policy.base_upper_fen)
        person_lines = payer_lines(
            policy, month=month, base_fen=base, category=Category.employee, work_injury_class=unit.work_injury_class,
            insurances=[str(i) for i in e.insurance_types], person_key=e.id_hash, person_id=e.person_id,
        )
        lines += person_lines
        claims += list(dict.fromkeys((e.id_hash, month, str(x.insurance)) for x in person_lines))
    arrears = sum(x.amount_fen for x in lines)
    deadline = deadline_of(month, policy.deadline_day)
    days = max((today - deadline).days, 0)
    fee = late_fee(arrears, policy.late_fee_per_10000_per_day, days, policy.rounding)
    decl = Declaration(
        id=str(uuid.uuid4()), source=DeclarationSource.employer, status=DeclarationStatus.awaiting_payment,
        category=Category.employee, region_code=unit.region_code, credit_code=credit_code, months=[month],
        total_fen=arrears + fee, late_fee_fen=fee, late_fee_days=days, late_fee_arrears_fen=arrears if days else 0,
        deadline=deadline, created_by=principal.actor_id, created_at=now, confirmed_at=now,
        expires_at=min(now + ttl, _end_of_day(today if days else deadline)),
    )
    return await save_declaration(session=session, declaration=decl, lines=lines, claims=claims)


def _end_of_day(day: date) -> datetime:
    """Midnight after a business day (Asia/Shanghai), in UTC.

    An employer declaration is payable only while its late fee is right: an on-time one until the
    deadline day ends, a late one until the day it was priced ends (then the unit declares again).
    """
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=SHANGHAI).astimezone(UTC)


async def get_employer_declaration(*, session: AsyncSession, credit_code: str, declaration_id: str) -> Declaration:
    """One of the unit's declarations (or assessments); 404 for any other."""
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if decl is None or decl.source not in EMPLOYER_SOURCES or decl.credit_code != credit_code:
        raise DeclarationNotFound()
    return decl


async def assess_employer(
    *, session: AsyncSession, credit_code: str, body: AssessmentIn, principal: Principal, now: datetime, today: date,
) -> Declaration:
    """核定: a month the unit did not declare is due at 110% of its previous month (art. 62); audited."""
    unit = await registered_employer(session=session, credit_code=credit_code)
    month = body.month
    policy = await policy_in_force(session=session, region_code=unit.region_code, month=month)
    deadline = deadline_of(month, policy.deadline_day)
    if today <= deadline:
        raise MonthNotDeclarable(
            detail_zh=f"{month} 的申报期限 {deadline} 尚未届满", detail_en=f"{month} is not due before {deadline}",
            params={"month": month, "deadline": deadline.isoformat()},
        )
    previous_month = month_from_index(month_index(month) - 1)
    candidates = (
        await session.execute(
            select(Declaration)
            .where(
                Declaration.credit_code == credit_code, Declaration.source.in_(EMPLOYER_SOURCES),
                Declaration.status.in_((DeclarationStatus.paid, DeclarationStatus.awaiting_payment)),
            )
            .order_by(Declaration.created_at.desc())
        )
    ).scalars().all()
    previous = next((d for d in candidates if d.months == [previous_month] and d.status == DeclarationStatus.paid), None)
    previous = previous or next((d for d in candidates if d.months == [previous_month]), None)
    if previous is None:
        raise NoPreviousDeclaration(params={"previous_month": previous_month})
    lines: list[Line] = []
    claims: list[tuple[str, str, str]] = []
    for x in await lines_of(session=session, declaration_id=previous.id):
        lines.append(Line(
            month=month, insurance=x.insurance, payer=x.payer,  # type: ignore[arg-type]
            base_fen=round_fen(x.base_fen * 11, 10, "fen_half_up"), rate_bp=x.rate_bp,
            amount_fen=round_fen(x.amount_fen * 11, 10, policy.rounding), person_key=x.person_key,
            person_id=x.person_id,
        ))
        if x.person_key:
            claims.append((x.person_key, month, x.insurance))
    previous_total = previous.total_fen - previous.late_fee_fen
    decl = Declaration(
        id=str(uuid.uuid4()), source=DeclarationSource.assessment, status=DeclarationStatus.awaiting_payment,
        category=Category.employee, region_code=unit.region_code, credit_code=credit_code, months=[month],
        total_fen=sum(x.amount_fen for x in lines), previous_declaration_id=previous.id, deadline=deadline,
        created_by=principal.actor_id, created_at=now, confirmed_at=now, expires_at=None,
    )
    await save_declaration(session=session, declaration=decl, lines=lines, claims=list(dict.fromkeys(claims)))
    OUTBOX.emit(
        session, type=EMPLOYER_ASSESSED, subject=credit_code, time=now,
        data=EmployerAssessed(credit_code=credit_code, month=month, assessed_total_fen=decl.total_fen,
                              previous_total_fen=previous_total),
    )
    record_audit(
        session, actor=principal, action="employer.assessed", target_type="employer", target_id=credit_code, at=now,
        reason=body.reason,
        details={"month": month, "declaration_id": decl.id, "previous_declaration_id": previous.id,
                 "assessed_total_fen": decl.total_fen, "previous_total_fen": previous_total},
    )
    return decl
