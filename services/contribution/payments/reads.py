"""Reading payments: a declaration's payments (shown in its answer), one payment as stored, staff's list."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.pagination import keyset_page
from services.contribution.enums import PaidBy
from services.contribution.payments.models import Payment, PaymentChannel, PaymentStatus
from services.contribution.payments.refund_views import refund_summaries
from services.contribution.payments.schemas import PaymentRecord
from services.contribution.schemas import PaymentSummary


async def payment_summaries(session: AsyncSession, declaration_ids: list[str]) -> dict[str, list[PaymentSummary]]:
    """Each declaration's payments, oldest first (shown in the declaration answer)."""
    out: dict[str, list[PaymentSummary]] = {}
    if not declaration_ids:
        return out
    rows = (
        await session.execute(
            select(Payment).where(Payment.declaration_id.in_(declaration_ids)).order_by(Payment.opened_at, Payment.id)
        )
    ).scalars().all()
    refunds = await refund_summaries(session, [p.id for p in rows])
    for p in rows:
        out.setdefault(p.declaration_id, []).append(
            PaymentSummary(id=p.id, channel=p.channel, status=p.status, certificate_code=p.certificate_code,
                           paid_by=PaidBy(p.paid_by) if p.paid_by else None, refunds=refunds.get(p.id, []))
        )
    return out


async def open_payment_of(session: AsyncSession, declaration_id: str) -> Payment | None:
    stmt = select(Payment).where(Payment.open_declaration_id == declaration_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().first()


async def reload_payment(session: AsyncSession, payment_id: str) -> Payment:
    stmt = select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one()


async def list_payments(
    *, session: AsyncSession, status: PaymentStatus | None, flagged: bool, limit: int, cursor: str | None,
) -> tuple[list[Payment], str | None]:
    """Payments newest first (keyset pages), optionally by status or only those flagged for staff."""
    stmt = select(Payment)
    if status is not None:
        stmt = stmt.where(Payment.status == status)
    if flagged:
        stmt = stmt.where(Payment.flag.is_not(None))
    page = await keyset_page(session, stmt, keys=[Payment.opened_at, Payment.id], cursor=cursor, limit=limit,
                             descending=True)
    return page.rows, page.next_cursor


def staff_view(p: Payment) -> PaymentRecord:
    """A payment as staff see it (no personal data)."""
    return PaymentRecord(
        id=p.id, declaration_id=p.declaration_id, channel=PaymentChannel(p.channel), status=PaymentStatus(p.status),
        flag=p.flag, amount_fen=p.amount_fen, paid_amount_fen=p.paid_amount_fen, out_trade_no=p.out_trade_no,
        platform_trade_no=p.platform_trade_no, opened_at=aware(p.opened_at), closes_at=aware(p.closes_at),
        paid_at=aware(p.paid_at) if p.paid_at else None, closed_at=aware(p.closed_at) if p.closed_at else None,
        certificate_code=p.certificate_code,
    )
