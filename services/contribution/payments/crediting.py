"""Crediting a paid payment: the declaration is paid and the certificate issued, exactly once.

Money moves only on a verified platform notification (`notifications.py`): the conditional
update `... WHERE status = 'open'` is the single point where a payment becomes paid, so
concurrent copies of one notification credit once. Money that cannot be credited is flagged
for a refund, audited and published (`payment.refund_pending`).
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.context import request_id_var
from services.common.models import AuditEntry
from services.contribution.declarations.crediting import mark_declaration_paid
from services.contribution.errors import (
    DeclarationAlreadyPaid,
    DeclarationNotFound,
    DeclarationStateConflict,
    MonthAlreadyDeclared,
)
from services.contribution.events import OUTBOX, PAYMENT_REFUND_PENDING, PaymentRefundPending
from services.contribution.models import Declaration, DeclarationStatus
from services.contribution.payments.closing import close_payment, rowcount
from services.contribution.payments.models import Certificate, Payment, PaymentStatus
from services.contribution.payments.reads import open_payment_of, reload_payment

log = logging.getLogger("socialsec.contribution.payments")


def new_certificate_code() -> str:
    """An unguessable verification code (144 random bits)."""
    return secrets.token_urlsafe(18)


def alert(session: AsyncSession, *, channel: str, payment: Payment, now: datetime, reason: str, details: dict[str, Any]) -> None:
    """Money staff must look at (a genuinely signed notification refused, or money not creditable): logged, audited."""
    log.error("payment alert %s on %s payment %s: %s", reason, channel, payment.id, json.dumps(details, ensure_ascii=False))
    session.add(AuditEntry(
        at=now, actor=f"platform:{channel}", actor_kind="platform", action=f"payment.{reason}", target_type="payment",
        target_id=payment.id, reason=reason, details=details, request_id=request_id_var.get(),
    ))


async def _apply(session: AsyncSession, payment: Payment, *, paid_at: datetime, now: datetime) -> str:
    """Credit the declaration and issue the certificate; a declaration that cannot take it flags a refund."""
    try:
        async with session.begin_nested():
            decl = await mark_declaration_paid(
                session=session, declaration_id=payment.declaration_id, payment_id=payment.id, channel=payment.channel,
                paid_at=paid_at, paid_by=payment.paid_by,
            )
    except (DeclarationAlreadyPaid, DeclarationStateConflict, DeclarationNotFound, MonthAlreadyDeclared) as exc:
        await session.execute(
            update(Payment).where(Payment.id == payment.id)
            .values(status=PaymentStatus.refund_pending, flag=f"declaration:{exc.code}"[:40])
            .execution_options(synchronize_session=False)
        )
        alert(session, channel=payment.channel, payment=payment, now=now, reason="refund_pending",
               details={"declaration_id": payment.declaration_id, "why": exc.code, "amount_fen": payment.amount_fen})
        OUTBOX.emit(session, type=PAYMENT_REFUND_PENDING, subject=payment.id, time=now, data=PaymentRefundPending(
            payment_id=payment.id, declaration_id=payment.declaration_id, channel=payment.channel,
            amount_fen=payment.amount_fen, reason=exc.code, flagged_at=now,
        ))
        return "refund_pending"
    code = new_certificate_code()
    session.add(Certificate(
        code=code, payment_id=payment.id, declaration_id=decl.id, holder_name=payment.holder_name,
        holder_id_masked=payment.holder_id_masked, category=decl.category, region_code=decl.region_code,
        months=list(decl.months or ([str(decl.year)] if decl.year else [])), amount_fen=payment.amount_fen,
        channel=payment.channel, platform_trade_no=payment.platform_trade_no, paid_at=paid_at, issued_at=now,
    ))
    await session.flush()
    await session.execute(
        update(Payment).where(Payment.id == payment.id).values(certificate_code=code)
        .execution_options(synchronize_session=False)
    )
    return "credited"


async def credit_payment(
    *, session: AsyncSession, payment_id: str, platform_trade_no: str | None, paid_amount_fen: int, paid_at: datetime,
    now: datetime,
) -> str:
    """Apply a verified paid notification once; the outcome (credited, duplicate, paid_after_close, refund_pending)."""
    paid: dict[str, Any] = {"status": PaymentStatus.paid, "open_declaration_id": None, "paid_at": paid_at,
                            "paid_amount_fen": paid_amount_fen}
    if platform_trade_no:
        paid["platform_trade_no"] = platform_trade_no
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.open).values(**paid)
        .execution_options(synchronize_session=False)
    )
    if rowcount(res) == 1:
        return await _apply(session, await reload_payment(session, payment_id), paid_at=paid_at, now=now)
    current = await reload_payment(session, payment_id)
    if current.status != PaymentStatus.closed:
        return "duplicate"
    # Paid after we closed it: the money was taken. Credit it while the declaration still waits for it.
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.closed)
        .values(**paid, flag="paid_after_close").execution_options(synchronize_session=False)
    )
    if rowcount(res) != 1:
        return "duplicate"
    payment = await reload_payment(session, payment_id)
    decl = await session.get(Declaration, payment.declaration_id)
    if decl is not None and decl.status == DeclarationStatus.awaiting_payment:
        other = await open_payment_of(session, decl.id)
        if other is not None:
            await close_payment(session, other.id, now)
        outcome = await _apply(session, payment, paid_at=paid_at, now=now)
        return "paid_after_close" if outcome == "credited" else outcome
    await session.execute(
        update(Payment).where(Payment.id == payment_id).values(status=PaymentStatus.refund_pending)
        .execution_options(synchronize_session=False)
    )
    alert(session, channel=payment.channel, payment=payment, now=now, reason="refund_pending",
           details={"declaration_id": payment.declaration_id, "why": "paid_after_close",
                    "declaration_status": decl.status if decl else None, "amount_fen": payment.amount_fen})
    OUTBOX.emit(session, type=PAYMENT_REFUND_PENDING, subject=payment.id, time=now, data=PaymentRefundPending(
        payment_id=payment.id, declaration_id=payment.declaration_id, channel=payment.channel,
        amount_fen=payment.amount_fen, reason="paid_after_close", flagged_at=now,
    ))
    return "refund_pending"
