"""Card reminders on the platforms: the card was made (制卡完成), the PIN locked.

Both are events: the step that makes the card or locks the PIN uses the holder's
active subscriptions and writes the messages in its own transaction
(`services.common.reminders`); the sending job delivers them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.card.models import Base, Card
from services.common.reminders import (
    ReminderMixin,
    ReminderSendMixin,
    fire,
    message,
    reminder_router,
    reminder_sender,
    shanghai_time,
)

KINDS = {
    "card_locked": "the card's PIN locked after wrong tries",
    "card_made": "the card was made and waits at the bank",
}


class CardReminder(ReminderMixin, Base):
    """A holder's one-time subscription to a card reminder."""


class CardReminderSend(ReminderSendMixin, Base):
    """A card reminder message to send."""


router = reminder_router(prefix="/card/v1", tag="card", kinds=KINDS, reminder=CardReminder, send=CardReminderSend)
reminder_sending = reminder_sender(CardReminderSend)


def _masked(card: Card) -> str:
    """`J******78`: what the message may show of the card number."""
    value = card.card_no or ""
    return value[:1] + "*" * max(len(value) - 3, 0) + value[-2:] if value else "-"


async def card_made(session: AsyncSession, card: Card, now: datetime) -> int:
    """The card was made: the holder's `card_made` subscriptions are used (same transaction)."""
    msg = message(
        "pages/card/index",
        ("thing1", "社保卡已制卡"),
        ("character_string2", _masked(card)),
        ("thing3", card.bank or "发卡银行"),
        ("thing4", "请到发卡银行网点领取并激活"),
    )
    return await fire(session, reminder=CardReminder, send=CardReminderSend, person_key=card.id_hash,
                      kind="card_made", msg=msg, now=now)


async def card_locked(session: AsyncSession, card: Card, now: datetime) -> int:
    """The PIN locked: the holder's `card_locked` subscriptions are used (same transaction)."""
    msg = message(
        "pages/card/pin",
        ("thing1", "社保卡密码已锁定"),
        ("character_string2", _masked(card)),
        ("time3", shanghai_time(now)),
        ("thing4", "请持身份证到网点或刷脸重置密码"),
    )
    return await fire(session, reminder=CardReminder, send=CardReminderSend, person_key=card.id_hash,
                      kind="card_locked", msg=msg, now=now)
