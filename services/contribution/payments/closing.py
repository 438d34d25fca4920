"""Closing payments: one (past its time, refused by the platform, closed by it), or every one due.

A closed payment frees its declaration for another; a pending one (committed, the platform's
answer not recorded yet) left by a crash is closed once the request that opened it cannot come back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.contribution.payments.models import Payment, PaymentStatus
from services.contribution.payments.platforms import PaymentPlatforms

# Time left to a request that created a payment at the platform to record the answer, past the
# platform call's own limit; a payment still unanswered then was left by a crash.
PENDING_GRACE = timedelta(seconds=60)


def is_pending(payment: Payment) -> bool:
    """Open, committed, but the platform's answer (Alipay's trade_no, WeChat Pay's prepay_id) not recorded yet."""
    return payment.status == PaymentStatus.open and payment.platform_trade_no is None and payment.prepay_id is None


def pending_abandoned_before(platforms: PaymentPlatforms, now: datetime) -> datetime:
    """A pending payment opened before this instant was left by a request that never came back."""
    return now - timedelta(seconds=platforms.settings.platform_timeout_seconds) - PENDING_GRACE


def rowcount(result: Any) -> int:
    """Rows an UPDATE changed (the cursor result of a DML statement)."""
    return int(result.rowcount or 0)


async def close_payment(session: AsyncSession, payment_id: str, now: datetime) -> bool:
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.open)
        .values(status=PaymentStatus.closed, open_declaration_id=None, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(res) == 1
