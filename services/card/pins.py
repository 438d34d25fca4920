"""PINs: argon2id hashes, weak-pattern rules, the region's initial PIN."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from services.card.models import CardRule
from services.card.schemas import InitialPinRule

ASCENDING = "01234567890"
DESCENDING = "98765432109"


class PinHasher:
    """argon2id of a peppered PIN; verification is constant-time.

    Six digits are only a million candidates: a salted hash alone would fall to an
    offline search of a database dump. The PIN is first keyed with a pepper that
    never enters the database, and with the card id, so a hash copied onto another
    card does not verify. Hashing runs in a worker thread (argon2 releases the GIL),
    never on the event loop.
    """

    def __init__(self, *, pepper: bytes, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._pepper = pepper
        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )

    def _keyed(self, card_id: str, pin: str) -> bytes:
        return hmac.new(self._pepper, f"{card_id}:{pin}".encode(), hashlib.sha256).digest()

    async def hash(self, card_id: str, pin: str) -> str:
        """The argon2id hash to store for a card's PIN."""
        return await asyncio.to_thread(self._ph.hash, self._keyed(card_id, pin))

    async def verify(self, pin_hash: str, card_id: str, pin: str) -> bool:
        """True when the PIN is the card's."""
        def check() -> bool:
            try:
                return self._ph.verify(pin_hash, self._keyed(card_id, pin))
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


def weak_reason(pin: str, *, id_number: str, old_pin: str | None = None) -> str | None:
    """Why a new PIN is refused (None when acceptable)."""
    if old_pin is not None and pin == old_pin:
        return "same_as_old"
    if len(set(pin)) == 1:
        return "repeated"
    if pin in ASCENDING or pin in DESCENDING:
        return "consecutive"
    if pin in id_number.upper():
        return "part_of_id_number"
    return None


WEAK_MESSAGES = {
    "same_as_old": ("新密码不能与原密码相同", "The new PIN must differ from the old one"),
    "repeated": ("新密码不能是相同数字（如 111111）", "The new PIN must not repeat one digit (111111)"),
    "consecutive": ("新密码不能是连续数字（如 123456、654321）", "The new PIN must not be consecutive digits (123456, 654321)"),
    "part_of_id_number": ("新密码不能是身份证号码中的连续六位", "The new PIN must not be six consecutive digits of your id number"),
}


def initial_pin(rule: CardRule, *, id_number: str) -> str:
    """The region's initial PIN: the id number's last six digits (X read as 0), or a fixed value."""
    if rule.initial_pin_rule == InitialPinRule.fixed and rule.initial_pin_fixed:
        return rule.initial_pin_fixed
    return id_number.upper()[-6:].replace("X", "0")
