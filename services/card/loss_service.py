"""挂失: loss reports, temporary (lifting by itself on its day) and formal (void and replacement)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.card.errors import CardNotFound, IdentityMismatch
from services.card.events import CARD_LOST, OUTBOX, CardLost
from services.card.models import Card, LossReport
from services.card.rules import rule_for
from services.card.schemas import CardStatus, LossKind, LossReportIn, LossReportOut
from services.card.service import (
    card_out,
    lift,
    live_card,
    my_card,
    open_loss_report,
    refresh_loss,
    same_text,
    state_conflict,
)
from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.errors import ValidationFailed
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind


async def report_loss(*, session: AsyncSession, actor: Principal, data: LossReportIn, clock: Clock) -> LossReportOut:
    """挂失: temporary (lifts by itself after the region's days) or formal (void, replacement opened)."""
    if actor.kind == PrincipalKind.citizen:
        holder_hash = id_hash(actor.id_number or "")
    else:
        missing = [f for f in ("id_number", "name") if getattr(data, f) is None]
        if missing:
            raise ValidationFailed(
                detail_zh="电话挂失需提供持卡人身份证号码和姓名", detail_en="The hotline must name the holder",
                errors=[{"field": f, "code": "missing", "message_zh": "必填字段缺失", "message_en": "Field required"} for f in missing],
            )
        holder_hash = id_hash(data.id_number or "")
    card = await live_card(session=session, holder_hash=holder_hash, lock=True)
    if card is None:
        raise CardNotFound()
    if actor.kind != PrincipalKind.citizen and not same_text(card.holder_name, data.name or ""):
        raise IdentityMismatch()
    await refresh_loss(session=session, card=card, clock=clock)
    now, today = clock.now(), clock.today()
    reported_by = "citizen" if actor.kind == PrincipalKind.citizen else str(actor.channel_kind)
    report = LossReport(id=str(uuid.uuid4()), card_id=card.id, kind=data.kind, reported_at=now, reported_by=reported_by)
    if data.kind == LossKind.temporary:
        if card.status != CardStatus.active:
            raise state_conflict(card, allowed={CardStatus.active})
        rule = await rule_for(session=session, region_code=card.region_code, on=today)
        report.lifts_on = today + timedelta(days=rule.temporary_loss_days)
        card.status = CardStatus.temporarily_lost
        card.loss_lifts_on = report.lifts_on
        session.add(report)
    else:
        allowed = {CardStatus.issued, CardStatus.active, CardStatus.temporarily_lost}
        if card.status not in allowed:
            raise state_conflict(card, allowed=allowed)
        previous = await open_loss_report(session=session, card=card)
        if previous is not None:
            previous.lifted_at = now
            previous.lifted_how = "formal"
        card.status = CardStatus.formally_lost
        card.live_key = None
        card.loss_lifts_on = None
        card.ended_at = now
        await session.flush()
        replacement = Card(
            id=str(uuid.uuid4()), id_hash=card.id_hash, live_key=card.id_hash, id_number=card.id_number,
            holder_name=card.holder_name, region_code=card.region_code, status=CardStatus.applied, applied_at=now,
            replaces_card_id=card.id, activation_mismatches=0, activation_locked=False, initial_pin_unchanged=True,
            pin_failed_tries=0, pin_locked=False,
        )
        session.add(replacement)
        report.replacement_card_id = replacement.id
        session.add(report)
    await session.flush()
    OUTBOX.emit(
        session, type=CARD_LOST, subject=card.id, time=now,
        data=CardLost(
            card_id=card.id, id_hash=card.id_hash, region_code=card.region_code, kind=data.kind, reported_at=now,
            reported_by=reported_by, lifts_on=report.lifts_on, replacement_card_id=report.replacement_card_id,
        ),
    )
    if actor.kind != PrincipalKind.citizen:
        record_audit(
            session, actor=actor, action="card.loss_reported", target_type="card", target_id=card.id, at=now,
            details={"kind": str(data.kind), "replacement_card_id": report.replacement_card_id},
        )
    return LossReportOut(
        id=report.id, kind=LossKind(report.kind), card_id=card.id, reported_at=now, reported_by=reported_by,
        lifts_on=report.lifts_on, replacement_card_id=report.replacement_card_id,
        card=card_out(card, loss=report),
    )


async def lift_loss(*, session: AsyncSession, principal: Principal, clock: Clock) -> None:
    """解挂: the holder lifts a temporary loss report before its day."""
    card = await my_card(session=session, principal=principal, clock=clock, lock=True)
    if card.status != CardStatus.temporarily_lost:
        raise state_conflict(card, allowed={CardStatus.temporarily_lost})
    report = await open_loss_report(session=session, card=card)
    lift(card, report, how="holder", clock=clock)



