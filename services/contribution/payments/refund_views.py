"""The refunds of payments as the payer sees them (on the declaration's payments)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.contribution.payments.models import Refund
from services.contribution.schemas import RefundSummary


async def refund_summaries(session: AsyncSession, payment_ids: list[str]) -> dict[str, list[RefundSummary]]:
    """Each payment's refunds, oldest first."""
    out: dict[str, list[RefundSummary]] = {}
    if not payment_ids:
        return out
    rows = (await session.execute(
        select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.requested_at, Refund.id)
    )).scalars().all()
    for r in rows:
        out.setdefault(r.payment_id, []).append(RefundSummary(
            id=r.id, status=r.status, amount_fen=r.amount_fen, requested_at=aware(r.requested_at),
            finished_at=aware(r.finished_at) if r.finished_at else None,
        ))
    return out
