"""Reading declarations: the public shape, the citizen's and the unit's lists (keyset pages).

A declaration's payments are kept by the payment channels (`payments/`): the caller passes
the function that loads them (`PaymentLoader`, e.g. `payments.reads.payment_summaries`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.enums import Category
from services.common.pagination import keyset_page
from services.common.pii import id_hash
from services.common.principal import Principal
from services.contribution.enums import PaidBy
from services.contribution.errors import DeclarationNotFound
from services.contribution.models import Declaration, DeclarationLine, DeclarationSource, DeclarationStatus
from services.contribution.policies.pricing import Line, round_fen
from services.contribution.policies.quotes import line_out
from services.contribution.schemas import DeclarationListItem, DeclarationOut, LateFeeOut, PaymentSummary

LIVE = (DeclarationStatus.draft, DeclarationStatus.awaiting_payment)
PERSON_SOURCES = (DeclarationSource.citizen, DeclarationSource.agency)
EMPLOYER_SOURCES = (DeclarationSource.employer, DeclarationSource.assessment)


# Each declaration's payments, by declaration id (a declaration without any may be absent).
PaymentLoader = Callable[[AsyncSession, list[str]], Awaitable[dict[str, list[PaymentSummary]]]]


async def lines_of(*, session: AsyncSession, declaration_id: str) -> list[DeclarationLine]:
    """A declaration's lines in order."""
    stmt = select(DeclarationLine).where(DeclarationLine.declaration_id == declaration_id).order_by(DeclarationLine.line_no)
    return list((await session.execute(stmt)).scalars().all())


async def declaration_view(
    *, session: AsyncSession, declaration: Declaration, payments_of: PaymentLoader
) -> DeclarationOut:
    """The public shape of a declaration, with its lines and the payments `payments_of` loads."""
    lines = await lines_of(session=session, declaration_id=declaration.id)
    payments = (await payments_of(session, [declaration.id])).get(declaration.id, [])
    late = None
    if declaration.deadline is not None and declaration.source == DeclarationSource.employer:
        late = LateFeeOut(
            deadline=declaration.deadline, days_late=declaration.late_fee_days,
            arrears_fen=declaration.late_fee_arrears_fen, rate_per_10000_per_day=_late_rate(declaration),
            amount_fen=declaration.late_fee_fen,
        )
    return DeclarationOut(
        id=declaration.id, status=declaration.status, source=declaration.source, category=Category(declaration.category),
        region_code=declaration.region_code, months=list(declaration.months), year=declaration.year,
        base_fen=declaration.base_fen, grade_fen=declaration.grade_fen, credit_code=declaration.credit_code,
        agency_credit_code=declaration.agency_credit_code,
        lines=[
            line_out(Line(month=x.month, insurance=x.insurance, payer=x.payer, base_fen=x.base_fen, rate_bp=x.rate_bp,  # type: ignore[arg-type]
                          amount_fen=x.amount_fen, person_id=x.person_id))
            for x in lines
        ],
        total_fen=declaration.total_fen, subsidy_fen=declaration.subsidy_fen, late_fee=late,
        created_at=aware(declaration.created_at),
        confirmed_at=aware(declaration.confirmed_at) if declaration.confirmed_at else None,
        expires_at=aware(declaration.expires_at) if declaration.expires_at else None,
        paid_at=aware(declaration.paid_at) if declaration.paid_at else None,
        paid_by=PaidBy(declaration.paid_by) if declaration.paid_by else None,
        payments=payments,
    )


def _late_rate(declaration: Declaration) -> int:
    """The late-fee rate (per 10,000 a day), recovered from the stored amounts in integers."""
    arrears, days = declaration.late_fee_arrears_fen, declaration.late_fee_days
    if not arrears or not days or not declaration.late_fee_fen:
        return 0
    return round_fen(declaration.late_fee_fen * 10000, arrears * days, "fen_half_up")


def list_item(declaration: Declaration) -> DeclarationListItem:
    return DeclarationListItem(
        id=declaration.id, status=declaration.status, source=declaration.source,
        category=Category(declaration.category), region_code=declaration.region_code,
        months=list(declaration.months), year=declaration.year, total_fen=declaration.total_fen,
        created_at=aware(declaration.created_at),
    )


async def get_person_declaration(*, session: AsyncSession, declaration_id: str, principal: Principal) -> Declaration:
    """The citizen's own declaration (made by them or by an agency for them); 404 for anyone else's."""
    decl = await session.get(Declaration, declaration_id) if len(declaration_id) <= 36 else None
    if (
        decl is None
        or decl.source not in PERSON_SOURCES
        or principal.id_number is None
        or decl.person_key != id_hash(principal.id_number)
    ):
        raise DeclarationNotFound()
    return decl


async def list_person_declarations(
    *, session: AsyncSession, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """The citizen's declarations, newest first (keyset pages)."""
    assert principal.id_number
    stmt = select(Declaration).where(
        Declaration.person_key == id_hash(principal.id_number), Declaration.source.in_(PERSON_SOURCES)
    )
    return await page_of_declarations(session=session, stmt=stmt, limit=limit, cursor=cursor)


async def list_employer_declarations(
    *, session: AsyncSession, credit_code: str, limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """A unit's declarations and assessments, newest first (keyset pages)."""
    stmt = select(Declaration).where(Declaration.credit_code == credit_code, Declaration.source.in_(EMPLOYER_SOURCES))
    return await page_of_declarations(session=session, stmt=stmt, limit=limit, cursor=cursor)


async def page_of_declarations(
    *, session: AsyncSession, stmt: Select[Any], limit: int, cursor: str | None
) -> tuple[list[Declaration], str | None]:
    """One page of declarations by (created_at, id) descending, after an opaque cursor."""
    page = await keyset_page(session, stmt, keys=[Declaration.created_at, Declaration.id], cursor=cursor, limit=limit,
                             descending=True)
    return page.rows, page.next_cursor
