"""A declaration's life before payment: confirming a draft, cancelling, expiring those past their time."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.enums import Category
from services.contribution.declarations.claims import release_periods
from services.contribution.declarations.reading import LIVE, PERSON_SOURCES, PaymentLoader
from services.contribution.errors import DeclarationStateConflict, PaymentInProgress
from services.contribution.events import DECLARATION_EXPIRED, OUTBOX, DeclarationExpired
from services.contribution.models import Declaration, DeclarationSource, DeclarationStatus, DeclaredMonth


async def confirm_declaration(*, session: AsyncSession, declaration: Declaration, now: datetime, ttl: timedelta) -> Declaration:
    """Confirm a draft: it awaits payment (again a no-op once confirmed)."""
    if declaration.status == DeclarationStatus.awaiting_payment:
        return declaration
    if declaration.status != DeclarationStatus.draft or (
        declaration.expires_at is not None and aware(declaration.expires_at) <= now
    ):
        raise DeclarationStateConflict(
            detail_zh="只有草稿状态的申报可以确认", detail_en="Only a draft can be confirmed",
            params={"status": declaration.status},
        )
    declaration.status = DeclarationStatus.awaiting_payment
    declaration.confirmed_at = now
    declaration.expires_at = now + ttl
    await session.flush()
    return declaration


async def cancel_declaration(
    *, session: AsyncSession, declaration: Declaration, now: datetime, payments_of: PaymentLoader
) -> Declaration:
    """Cancel an unpaid declaration and free its months (a no-op once cancelled); refused while one of
    the payments `payments_of` loads is open."""
    if declaration.status == DeclarationStatus.cancelled:
        return declaration
    if declaration.status not in LIVE or declaration.source == DeclarationSource.assessment:
        raise DeclarationStateConflict(
            detail_zh="该申报不能撤销", detail_en="This declaration cannot be cancelled",
            params={"status": declaration.status},
        )
    payments = (await payments_of(session, [declaration.id])).get(declaration.id, [])
    if any(p.status == "open" for p in payments):
        # Cancelling now would let the platform take money for months no longer held.
        raise PaymentInProgress(params={"payment_ids": [p.id for p in payments if p.status == "open"]})
    declaration.status = DeclarationStatus.cancelled
    declaration.closed_at = now
    await release_periods(session=session, declaration_id=declaration.id)
    await session.flush()
    return declaration


async def expire_due_declarations(*, session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Expire unpaid declarations past their time and free their months; how many expired."""
    ids = list(
        (
            await session.execute(
                select(Declaration.id)
                .where(Declaration.status.in_(LIVE), Declaration.expires_at.is_not(None), Declaration.expires_at <= now)
                .order_by(Declaration.expires_at)
                .limit(limit)
            )
        ).scalars().all()
    )
    if not ids:
        return 0
    # Only the rows this statement moved free their months: one paid meanwhile keeps them.
    moved = (
        await session.execute(
            update(Declaration)
            .where(Declaration.id.in_(ids), Declaration.status.in_(LIVE))
            .values(status=DeclarationStatus.expired, closed_at=now)
            .returning(
                Declaration.id, Declaration.source, Declaration.category, Declaration.region_code, Declaration.months,
                Declaration.year, Declaration.total_fen, Declaration.person_key, Declaration.credit_code,
                Declaration.agency_credit_code,
            )
        )
    ).all()
    expired = [row.id for row in moved]
    if expired:
        await session.execute(delete(DeclaredMonth).where(DeclaredMonth.declaration_id.in_(expired)))
    for row in moved:
        OUTBOX.emit(
            session, type=DECLARATION_EXPIRED, subject=row.id, time=now,
            data=DeclarationExpired(
                declaration_id=row.id, source=row.source, category=Category(row.category), region_code=row.region_code,
                months=list(row.months or []), year=row.year, total_fen=row.total_fen, expired_at=now,
                person_id_hash=row.person_key if row.source in PERSON_SOURCES else None,
                credit_code=row.credit_code, agency_credit_code=row.agency_credit_code,
            ),
        )
    return len(expired)
