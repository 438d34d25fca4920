"""Employers past the declaration deadline: flagged, assessed at 110% of their previous bases (art. 62)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.principal import Principal
from services.review.declarations.roster import roster_for_year
from services.review.declarations.service import (
    SETTLED,
    add_history,
    check_year,
    deadline_of,
    effective_from_of,
    emit_bases,
    get_or_create_declaration,
)
from services.review.errors import RuleNotFound
from services.review.models import AnnualDeclaration, DeclarationLine, Employer, ReviewRule
from services.review.rules import band_in_force, clamp, rule_in_force
from services.review.schemas import DeclarationStatus, OverdueItem, OverdueOut


async def assess_overdue(*, session: AsyncSession, clock: Clock, actor: Principal, year: int | None) -> OverdueOut:
    """Flag employers past the deadline without a submission and apply 110% of their previous bases (art. 62)."""
    today = clock.today()
    wage_year = year if year is not None else today.year - 1
    check_year(wage_year, today)
    settled = set(
        (
            await session.execute(
                select(AnnualDeclaration.credit_code).where(
                    AnnualDeclaration.year == wage_year, AnnualDeclaration.status.in_([str(s) for s in SETTLED])
                )
            )
        ).scalars()
    )
    employers = (await session.execute(select(Employer).order_by(Employer.credit_code))).scalars().all()
    assessed: list[OverdueItem] = []
    rules: dict[str, ReviewRule | None] = {}
    for emp in employers:
        if emp.credit_code in settled:
            continue
        if emp.region_code not in rules:
            try:
                rules[emp.region_code] = await rule_in_force(session=session, region_code=emp.region_code, on=today)
            except RuleNotFound:  # a region without rules has no deadline
                rules[emp.region_code] = None
        rule = rules[emp.region_code]
        if rule is None or today <= deadline_of(rule, wage_year):
            continue
        item = await _assess(session, clock, emp, rule, wage_year, actor)
        if item is not None:
            assessed.append(item)
    return OverdueOut(year=wage_year, assessed=assessed)


async def _previous_bases(session: AsyncSession, credit_code: str, year: int) -> dict[str, int]:
    prev = (
        await session.execute(
            select(DeclarationLine.id_hash, DeclarationLine.new_base_fen)
            .join(AnnualDeclaration, AnnualDeclaration.id == DeclarationLine.declaration_id)
            .where(
                AnnualDeclaration.credit_code == credit_code, AnnualDeclaration.year == year - 1,
                AnnualDeclaration.status.in_([str(DeclarationStatus.approved), str(DeclarationStatus.assessed)]),
            )
        )
    ).all()
    return dict(prev)


async def _assess(
    session: AsyncSession, clock: Clock, emp: Employer, rule: ReviewRule, year: int, actor: Principal
) -> OverdueItem | None:
    effective_from = effective_from_of(rule, year)
    roster = await roster_for_year(session=session, credit_code=emp.credit_code, year=year)
    if not any(r.last_month is None or r.last_month >= effective_from for r in roster.values()):
        return None  # nobody employed whose base could be assessed: nothing to declare
    decl = await get_or_create_declaration(session, clock, emp, year, effective_from)
    if decl.status in SETTLED:  # settled meanwhile
        return None
    band = await band_in_force(session=session, region_code=emp.region_code, month=effective_from)
    prev = await _previous_bases(session, emp.credit_code, year)
    lines: list[dict[str, Any]] = []
    for n, (h, r) in enumerate(sorted(roster.items(), key=lambda kv: kv[1].id), start=1):
        if r.last_month is not None and r.last_month < effective_from:
            continue  # left before the new bases apply
        previous = prev.get(h, r.monthly_wage_fen or (band.base_lower_fen if band else 0))
        lines.append({
            "declaration_id": decl.id, "line_no": n, "id_hash": h, "id_masked": r.id_masked, "name": r.name,
            "avg_monthly_wage_fen": previous, "new_base_fen": clamp((previous * 110 + 50) // 100, band),
        })
    await session.execute(delete(DeclarationLine).where(DeclarationLine.declaration_id == decl.id))
    if lines:
        await session.execute(insert(DeclarationLine), lines)
    now = clock.now()
    decl.status = str(DeclarationStatus.assessed)
    decl.overdue = True
    decl.headcount = len(lines)
    decl.total_wages_fen = sum(x["avg_monthly_wage_fen"] for x in lines)
    decl.invalid_lines = 0
    decl.effective_from = effective_from
    decl.decided_by = actor.actor_id
    decl.decided_at = now
    decl.updated_at = now
    decl.reasons = [f"未在 {deadline_of(rule, year).isoformat()} 前申报，按上年缴费基数的110%核定"]
    add_history(decl, {"at": now.isoformat(), "action": "assess_overdue", "by": actor.actor_id})
    await session.flush()
    await emit_bases(session, clock, decl, "assessed_overdue")
    record_audit(
        session, actor=actor, action="annual_declaration.assess_overdue", target_type="annual_declaration",
        target_id=decl.id, at=now, reason="not declared by the deadline (art. 62)",
        details={"credit_code": emp.credit_code, "year": year, "headcount": len(lines)},
    )
    return OverdueItem(
        credit_code=emp.credit_code, declaration_id=decl.id, headcount=len(lines),
        total_bases_fen=sum(x["new_base_fen"] for x in lines),
    )
