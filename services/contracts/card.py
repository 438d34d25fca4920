"""Events the card service publishes (its public contract to consumers).

`id_hash` is the keyed hash of the holder's id number, the same in every service.
The family events name both persons the same way (`*_id_hash`), never by id number.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

from services.contracts.enums import FamilyRelation

CARD_ACTIVATED = "card.card.activated.v1"
CARD_LOST = "card.card.lost.v1"
CARD_REPLACED = "card.card.replaced.v1"
FAMILY_BOUND = "card.family.bound.v1"
FAMILY_UNBOUND = "card.family.unbound.v1"


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


class FamilyBound(BaseModel):
    """A family binding became active: the holder may now act for the relative.

    An adult relative accepted with their own real-name token; a child under 16 was
    bound directly by a parent. `holder_*` is the citizen who added the relative.
    `*_person_id` is registration's person id when the card service knows the person.
    """

    binding_id: str
    holder_id_hash: str
    holder_person_id: str | None = None
    relative_id_hash: str
    relative_person_id: str | None = None
    relation: FamilyRelation
    relative_minor: bool  # under 16 when bound (bound by a parent without acceptance)
    bound_at: datetime


class FamilyUnbound(BaseModel):
    """An active family binding ended (either side unbound it): effective at `unbound_at`."""

    binding_id: str
    holder_id_hash: str
    holder_person_id: str | None = None
    relative_id_hash: str
    relative_person_id: str | None = None
    unbound_by: str  # holder, relative
    unbound_at: datetime
