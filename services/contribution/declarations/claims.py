"""Months held by declarations: claiming (the database's unique constraint decides), releasing, saving."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contribution.errors import MonthAlreadyDeclared
from services.contribution.models import Declaration, DeclarationLine, DeclaredMonth
from services.contribution.policies.pricing import Line


async def claim_periods(*, session: AsyncSession, declaration_id: str, claims: list[tuple[str, str, str]]) -> None:
    """Hold (person, period, insurance) for a declaration; 409 month_already_declared when one is taken.

    The database's unique constraint decides, so two concurrent declarations cannot both win.
    """
    rows = [DeclaredMonth(declaration_id=declaration_id, person_key=p, period=m, insurance=i) for p, m, i in claims]
    try:
        async with session.begin_nested():
            session.add_all(rows)
            await session.flush()
    except IntegrityError:
        keys = {(p, m) for p, m, _ in claims}
        taken = (
            await session.execute(
                select(DeclaredMonth.person_key, DeclaredMonth.period).where(
                    DeclaredMonth.person_key.in_({p for p, _ in keys}), DeclaredMonth.period.in_({m for _, m in keys})
                )
            )
        ).all()
        months = sorted({m for p, m in taken if (p, m) in keys})
        raise MonthAlreadyDeclared(
            detail_zh=f"以下月份已缴费或已在其他申报中：{'、'.join(months)}",
            detail_en=f"Already paid or held by another declaration: {', '.join(months)}",
            params={"months": months},
        ) from None


async def release_periods(*, session: AsyncSession, declaration_id: str) -> None:
    """Free the months of a cancelled or expired declaration."""
    await session.execute(delete(DeclaredMonth).where(DeclaredMonth.declaration_id == declaration_id))


async def save_declaration(
    *, session: AsyncSession, declaration: Declaration, lines: list[Line], claims: list[tuple[str, str, str]]
) -> Declaration:
    """Insert a declaration, its lines and its claimed months in the current transaction."""
    session.add(declaration)
    await session.flush()
    session.add_all([
        DeclarationLine(
            declaration_id=declaration.id, line_no=n, person_key=x.person_key, person_id=x.person_id, month=x.month,
            insurance=str(x.insurance), payer=str(x.payer), base_fen=x.base_fen, rate_bp=x.rate_bp,
            amount_fen=x.amount_fen,
        )
        for n, x in enumerate(lines, start=1)
    ])
    await session.flush()
    await claim_periods(session=session, declaration_id=declaration.id, claims=claims)
    return declaration
