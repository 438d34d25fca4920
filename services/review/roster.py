"""The employer's roster of a wage year (from registration's events): JSON pages and a CSV export."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.pagination import decode_cursor, encode_cursor
from services.common.pii import cipher
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
    after = decode_cursor(cursor)
    q = _roster_query(credit_code, year).order_by(RosterEntry.id).limit(limit + 1)
    if after:
        q = q.where(RosterEntry.id > int(after[0]))
    rows = (await session.execute(q)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return RosterPage(
        credit_code=credit_code, year=year,
        items=[
            RosterItem(
                person_id=r.person_id, id_number_masked=r.id_masked, name=r.name, hire_date=r.hire_date,
                start_month=r.start_month, last_month=r.last_month, monthly_wage_fen=r.monthly_wage_fen,
            )
            for r in rows
        ],
        next_cursor=encode_cursor([rows[-1].id]) if more and rows else None,
    )


def _cell(value: object) -> str:
    # A cell starting like a formula is neutralized so a spreadsheet never evaluates it.
    s = "" if value is None else str(value)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


async def roster_csv(*, session: AsyncSession, credit_code: str, year: int) -> bytes:
    """The roster as CSV (UTF-8 with BOM), full id numbers: the employer fills the wage column and uploads it."""
    roster = await roster_for_year(session=session, credit_code=credit_code, year=year)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["身份证号码 id_number", "姓名 name", "入职日期 hire_date", "参保起始月 start_month",
                "离职月份 last_month", "登记月工资(分) monthly_wage_fen", "上年月平均工资(分) avg_monthly_wage_fen"])
    c = cipher()
    for r in sorted(roster.values(), key=lambda r: r.id):
        w.writerow([
            _cell(c.decrypt(r.id_number_enc)), _cell(r.name), _cell(r.hire_date), _cell(r.start_month),
            _cell(r.last_month), _cell(r.monthly_wage_fen), "",
        ])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
