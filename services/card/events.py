"""Events the card service publishes: their schemas are its contract in
`services.contracts.card`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.card import (
    CARD_ACTIVATED,
    CARD_LOST,
    CARD_REPLACED,
    FAMILY_BOUND,
    FAMILY_UNBOUND,
    CardActivated,
    CardLost,
    CardReplaced,
    FamilyBound,
    FamilyUnbound,
)

OUTBOX = Outbox("card")

__all__ = [
    "OUTBOX",
    "CARD_ACTIVATED",
    "CARD_LOST",
    "CARD_REPLACED",
    "CardActivated",
    "CardLost",
    "CardReplaced",
    "FAMILY_BOUND",
    "FAMILY_UNBOUND",
    "FamilyBound",
    "FamilyUnbound",
]
