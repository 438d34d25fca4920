"""PIN change and reset: the rules and transactions (hashing and weak patterns are in pins.py)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.card import reminders
from services.card.errors import CardNotFound, PinIncorrect, PinLocked, PinTooWeak
from services.card.models import Card
from services.card.pins import WEAK_MESSAGES, PinHasher, initial_pin, weak_reason
from services.card.rules import rule_for
from services.card.schemas import CardOut, CardStatus, PinChangeIn, PinResetIn
from services.card.service import card_out, card_view, my_card, refresh_loss, same_text, state_conflict
from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.pii import id_hash
from services.common.principal import Principal, PrincipalKind


def _weak(pin: str, *, card: Card, old_pin: str | None = None) -> None:
    reason = weak_reason(pin, id_number=card.id_number, old_pin=old_pin)
    if reason is None:
        return
    zh, en = WEAK_MESSAGES[reason]
    raise PinTooWeak(
        detail_zh=zh, detail_en=en, params={"reason": reason},
        errors=[{"field": "new_pin", "code": reason, "message_zh": zh, "message_en": en}],
    )


async def change_pin(
    *, session: AsyncSession, principal: Principal, data: PinChangeIn, hasher: PinHasher, clock: Clock
) -> CardOut:
    """改密: the old PIN must match (wrong tries counted, the limit locks); the new one must not be weak."""
    card = await my_card(session=session, principal=principal, clock=clock, lock=True)
    if card.status != CardStatus.active or card.pin_hash is None:
        raise state_conflict(card, allowed={CardStatus.active})
    if card.pin_locked:
        raise PinLocked()
    if not await hasher.verify(card.pin_hash, card.id, data.old_pin):
        rule = await rule_for(session=session, region_code=card.region_code, on=clock.today())
        card.pin_failed_tries += 1
        left = max(rule.pin_max_tries - card.pin_failed_tries, 0)
        if left == 0:
            card.pin_locked = True
            record_audit(
                session, actor=principal, action="card.pin_locked", target_type="card", target_id=card.id,
                at=clock.now(), reason="wrong PIN tries", details={"tries": card.pin_failed_tries},
            )
            await reminders.card_locked(session, card, clock.now())
        await session.flush()
        raise PinIncorrect(params={"tries_left": left, "pin_locked": card.pin_locked})
    _weak(data.new_pin, card=card, old_pin=data.old_pin)
    card.pin_hash = await hasher.hash(card.id, data.new_pin)
    card.initial_pin_unchanged = False
    card.pin_failed_tries = 0
    return await card_view(session=session, card=card, platform=principal.platform)


async def reset_pin(
    *, session: AsyncSession, actor: Principal, card_id: str, data: PinResetIn, hasher: PinHasher, clock: Clock
) -> CardOut:
    """重置密码: unlock the PIN and set a new one, or the region's initial PIN again."""
    card = (await session.execute(select(Card).where(Card.id == card_id).with_for_update())).scalar_one_or_none()
    if card is None:
        raise CardNotFound()
    if actor.kind == PrincipalKind.citizen and not same_text(card.id_hash, id_hash(actor.id_number or "")):
        raise CardNotFound()
    await refresh_loss(session=session, card=card, clock=clock)
    allowed = {CardStatus.issued, CardStatus.active}
    if card.status not in allowed:
        raise state_conflict(card, allowed=allowed)
    if data.new_pin is not None:
        _weak(data.new_pin, card=card)
        card.pin_hash = await hasher.hash(card.id, data.new_pin)
        card.initial_pin_unchanged = False
    else:
        rule = await rule_for(session=session, region_code=card.region_code, on=clock.today())
        card.pin_hash = await hasher.hash(card.id, initial_pin(rule, id_number=card.id_number))
        card.initial_pin_unchanged = True
    card.pin_failed_tries = 0
    card.pin_locked = False
    record_audit(
        session, actor=actor, action="card.pin_reset", target_type="card", target_id=card.id, at=clock.now(),
        reason=data.reason, details={"to_initial": data.new_pin is None},
    )
    return card_out(card)


