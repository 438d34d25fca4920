"""Dated regional rules: the one look-up every service uses for its own rule tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.identifiers import region_candidates

R = TypeVar("R")


async def in_force_for_region(
    session: AsyncSession, model: type[R], *, region_code: str, on: date | str, fallbacks: Sequence[str] = (),
) -> R | None:
    """The row of `model` in force on `on` at the region, else its city, else its province (then `fallbacks`).

    `model` has `region_code` and `effective_from` columns, and may have `effective_to`
    (inclusive; null = open-ended). `on` is a date or a `YYYY-MM` month, as the table keeps them.
    Within one region the row that started last wins.
    """
    candidates = [*region_candidates(region_code), *fallbacks]
    table: Any = model
    stmt = select(model).where(table.region_code.in_(candidates), table.effective_from <= on)
    if hasattr(model, "effective_to"):
        stmt = stmt.where(or_(table.effective_to.is_(None), table.effective_to >= on))
    rows = (await session.execute(stmt.order_by(table.effective_from.desc()))).scalars().all()
    for code in candidates:
        for row in rows:
            if getattr(row, "region_code") == code:  # noqa: B009 - a column on any rule table
                return row
    return None
