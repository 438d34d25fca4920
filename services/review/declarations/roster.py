"""The employer's roster of a wage year (from registration's events): JSON pages and a CSV export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.pagination import keyset_page
from services.common.pii import cipher
from services.common.spreadsheets import csv_bytes
from services.review.models import RosterEntry
from services.review.schemas import RosterItem, RosterPage


def _roster_query(credit_code: str, year: int) -> Any:
    return select(RosterEntry).where(
        RosterEntry.credit_code == credit_code,
        RosterEntry.start_month <= f"{year:04d}-12",
        (RosterEntry.last_month.is_(None)) | (RosterEntry.last_month >= f"{year:04d}-01"),
    )


async def roster_for_year(*, session: AsyncSession, credit_code: str, year: int) -> dict[str, RosterEntry]:
    """Employees registered with the employer at any time in the wage year, by id hash (latest employment)."""
    rows = (await session.execute(_roster_query(credit_code, year).order_by(RosterEntry.id))).scalars().all()
    return {r.id_hash: r for r in rows}


async def roster_page(
    *, session: AsyncSession, credit_code: str, year: int, limit: int, cursor: str | None
) -> RosterPage:
    """The roster of a wage year, a page at a time (masked id numbers)."""
    page = await keyset_page(session, _roster_query(credit_code, year), keys=[RosterEntry.id], cursor=cursor, limit=limit)
    return RosterPage(
        credit_code=credit_code, year=year,
        items=[
            RosterItem(
                person_id=r.person_id, id_number_masked=r.id_masked, name=r.name, hire_date=r.hire_date,
                start_month=r.start_month, last_month=r.last_month, monthly_wage_fen=r.monthly_wage_fen,
            )
            for r in page.rows
        ],
        next_cursor=page.next_cursor,
    )


ROSTER_HEADER = ("身份证号码 id_number", "姓名 name", "入职日期 hire_date", "参保起始月 start_month",
                 "离职月份 last_month", "登记月工资(分) monthly_wage_fen", "上年月平均工资(分) avg_monthly_wage_fen")


async def roster_csv(*, session: AsyncSession, credit_code: str, year: int) -> bytes:
    """The roster as CSV (UTF-8 with BOM), full id numbers: the employer fills the wage column and uploads it.
    Every cell starting like a formula (= + - @) is escaped (`spreadsheets.safe_text`)."""
    roster = await roster_for_year(session=session, credit_code=credit_code, year=year)
    c = cipher()
    rows = (
        [c.decrypt(r.id_number_enc), r.name, r.hire_date, r.start_month, r.last_month, r.monthly_wage_fen, ""]
        for r in sorted(roster.values(), key=lambda r: r.id)
    )
    return csv_bytes(ROSTER_HEADER, rows)
