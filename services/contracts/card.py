"""Events the card service publishes (its public contract to consumers).

`id_hash` is the keyed hash of the holder's id number, the same in every service.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

CARD_ACTIVATED = "card.card.activated.v1"
CARD_LOST = "card.card.lost.v1"
CARD_REPLACED = "card.card.replaced.v1"


class CardActivated(BaseModel):
    """A card was activated (social-security function) at a channel or online."""

    card_id: str
    id_hash: str
    region_code: str
    card_no_masked: str
    channel: str  # bank, hospital, window, hotline, online
    branch_id: str | None = None
    activated_at: datetime
    replaces_card_id: str | None = None


class CardLost(BaseModel):
    """A loss report: temporary (lifts by itself on `lifts_on`) or formal (void, replacement opened)."""

    card_id: str
    id_hash: str
    region_code: str
    kind: str  # temporary, formal
    reported_at: datetime
    reported_by: str  # citizen, hotline
    lifts_on: date | None = None
    replacement_card_id: str | None = None


class CardReplaced(BaseModel):
    """A formally lost card was replaced: its replacement is now active."""

    card_id: str
    id_hash: str
    replacement_card_id: str
    replaced_at: datetime
