"""Events the contribution service publishes: their schemas are its contract in
`services.contracts.contribution`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.contribution import (
    DECLARATION_PAID,
    EMPLOYER_ASSESSED,
    POLICY_PUBLISHED,
    DeclarationPaid,
    EmployerAssessed,
    PolicyPublished,
)

OUTBOX = Outbox("contribution")

__all__ = [
    "OUTBOX",
    "POLICY_PUBLISHED",
    "DECLARATION_PAID",
    "EMPLOYER_ASSESSED",
    "PolicyPublished",
    "DeclarationPaid",
    "EmployerAssessed",
]
