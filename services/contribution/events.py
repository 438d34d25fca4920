"""Events the contribution service publishes: their schemas are its contract in
`services.contracts.contribution`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.contribution import (
    DECLARATION_EXPIRED,
    DECLARATION_PAID,
    EMPLOYER_ASSESSED,
    PAYMENT_REFUND_PENDING,
    POLICY_PUBLISHED,
    DeclarationExpired,
    DeclarationPaid,
    EmployerAssessed,
    PaymentRefundPending,
    PolicyPublished,
)

OUTBOX = Outbox("contribution")

__all__ = [
    "OUTBOX",
    "POLICY_PUBLISHED",
    "DECLARATION_PAID",
    "EMPLOYER_ASSESSED",
    "DECLARATION_EXPIRED",
    "PAYMENT_REFUND_PENDING",
    "PolicyPublished",
    "DeclarationPaid",
    "EmployerAssessed",
    "DeclarationExpired",
    "PaymentRefundPending",
]
