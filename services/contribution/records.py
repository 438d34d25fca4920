"""缴费记录: the person's payment record, its gaps, and the months left to a monthly pension."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.enums import Category, Insurance
from services.common.identifiers import month_index
from services.contribution.enums import LinePayer, PaidBy
from services.contribution.models import (
    ContributionRecord,
    Declaration,
    DeclarationLine,
    DeclarationStatus,
    KnownEnrolment,
)
from services.contribution.policies.pricing import required_pension_months
from services.contribution.schemas import RecordItem, RecordPart, RecordsOut

PENSION_SCHEMES = (Category.employee, Category.flexible)


async def records_of(*, session: AsyncSession, person_key: str, year: int, current_month: str) -> RecordsOut:
    """Per month and insurance: amount, who paid, status; the gaps; pension months paid and remaining."""
    year_s = f"{year:04d}"
    periods = [f"{year_s}-{m:02d}" for m in range(1, 13)] + [year_s]
    paid = (
        await session.execute(
            select(ContributionRecord)
            .where(ContributionRecord.person_key == person_key, ContributionRecord.period.in_(periods))
            .order_by(ContributionRecord.period, ContributionRecord.insurance, ContributionRecord.id)
        )
    ).scalars().all()
    groups: dict[tuple[str, str, str], list[ContributionRecord]] = defaultdict(list)
    for r in paid:
        groups[(r.period, r.insurance, r.category)].append(r)
    items = [_item(period, ins, cat, rows, "paid") for (period, ins, cat), rows in groups.items()]

    pending = (
        await session.execute(
            select(Declaration, DeclarationLine)
            .join(DeclarationLine, DeclarationLine.declaration_id == Declaration.id)
            .where(
                DeclarationLine.person_key == person_key,
                Declaration.status == DeclarationStatus.awaiting_payment,
                DeclarationLine.payer != LinePayer.government,
            )
            .order_by(DeclarationLine.month, DeclarationLine.insurance)
        )
    ).all()
    pend: dict[tuple[str, str, str], list[DeclarationLine]] = defaultdict(list)
    for decl, line in pending:
        period = str(decl.year) if decl.category == Category.resident else line.month
        if period in periods:
            pend[(period, line.insurance, decl.category)].append(line)
    for (period, ins, cat), lines in pend.items():
        items.append(RecordItem(
            month=None if len(period) == 4 else period, year=year, category=Category(cat), insurance=Insurance(ins),
            base_fen=lines[0].base_fen, amount_fen=sum(x.amount_fen for x in lines),
            parts=[RecordPart(payer=LinePayer(x.payer), amount_fen=x.amount_fen) for x in lines],
            status="awaiting_payment",
        ))
    items.sort(key=lambda i: (i.month or "", list(Insurance).index(i.insurance), i.status))

    paid_pension_months = {
        r.period for r in paid if r.insurance == Insurance.pension and r.category in PENSION_SCHEMES
    }
    gaps = await _gaps(session=session, person_key=person_key, year=year, current_month=current_month,
                       paid=paid_pension_months)
    total = (
        await session.execute(
            select(func.count(func.distinct(ContributionRecord.period))).where(
                ContributionRecord.person_key == person_key, ContributionRecord.insurance == Insurance.pension,
                ContributionRecord.category.in_(PENSION_SCHEMES),
            )
        )
    ).scalar_one()
    required = required_pension_months(int(current_month[:4]))
    return RecordsOut(
        year=year, items=items, gaps=gaps, pension_months_paid=int(total), pension_months_required=required,
        pension_months_remaining=max(required - int(total), 0),
    )


def _item(period: str, insurance: str, category: str, rows: list[ContributionRecord], status: str) -> RecordItem:
    return RecordItem(
        month=None if len(period) == 4 else period, year=int(period[:4]), category=Category(category),
        insurance=Insurance(insurance), base_fen=rows[0].base_fen, amount_fen=sum(r.amount_fen for r in rows),
        parts=[RecordPart(payer=LinePayer(r.payer), amount_fen=r.amount_fen) for r in rows],
        paid_by=PaidBy(rows[0].paid_by), status=status, credit_code=rows[0].credit_code,
    )


async def _gaps(*, session: AsyncSession, person_key: str, year: int, current_month: str, paid: set[str]) -> list[str]:
    """Months of the year before this one that an employee or flexible enrolment covers, without paid pension."""
    enrolments = (
        await session.execute(
            select(KnownEnrolment).where(
                KnownEnrolment.id_hash == person_key, KnownEnrolment.category.in_(PENSION_SCHEMES)
            )
        )
    ).scalars().all()
    out = []
    for m in range(1, 13):
        month = f"{year:04d}-{m:02d}"
        if month_index(month) >= month_index(current_month):
            break  # the current month can still be paid: not a gap yet
        i = month_index(month)
        covered = any(
            month_index(e.start_month) <= i and (e.end_month is None or i <= month_index(e.end_month))
            for e in enrolments
        )
        if covered and month not in paid:
            out.append(month)
    return out
