"""Events the contribution service publishes: their schemas are its contract in
`services.contracts.contribution`; OUTBOX writes them.
"""

from services.common.events import Outbox
from services.contracts.contribution import (
    DECLARATION_EXPIRED,
    DECLARATION_PAID,
    EMPLOYER_ASSESSED,
    PAYMENT_REFUND_PENDING,
    PAYMENT_REFUNDED,
    POLICY_PUBLISHED,
    DeclarationExpired,
    DeclarationPaid,
    EmployerAssessed,
    PaymentRefunded,
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
    "PAYMENT_REFUNDED",
    "PolicyPublished",
    "DeclarationPaid",
    "EmployerAssessed",
    "DeclarationExpired",
    "PaymentRefundPending",
    "PaymentRefunded",
]
