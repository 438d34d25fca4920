"""Events the review service publishes: their schemas are its contract in
`services.contracts.review`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.review import (
    ANNUAL_DECLARATION_APPROVED,
    PENSION_RESUMED,
    PENSION_SUSPENDED,
    AnnualDeclarationApproved,
    ApprovedLine,
    PensionResumed,
    PensionSuspended,
)

OUTBOX = Outbox("review")

__all__ = [
    "OUTBOX",
    "ANNUAL_DECLARATION_APPROVED",
    "PENSION_SUSPENDED",
    "PENSION_RESUMED",
    "ApprovedLine",
    "AnnualDeclarationApproved",
    "PensionSuspended",
    "PensionResumed",
]
