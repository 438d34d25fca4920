"""Events the contribution service publishes (its public contract to consumers)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.contracts.enums import Category, PaidBy

POLICY_PUBLISHED = "contribution.policy.published.v1"
DECLARATION_PAID = "contribution.declaration.paid.v1"
EMPLOYER_ASSESSED = "contribution.employer.assessed.v1"
DECLARATION_EXPIRED = "contribution.declaration.expired.v1"
PAYMENT_REFUND_PENDING = "contribution.payment.refund_pending.v1"
PAYMENT_REFUNDED = "contribution.payment.refunded.v1"


class PolicyPublished(BaseModel):
    """A dated regional policy was added or replaced (the review service needs the band)."""

    region_code: str
    effective_from: str  # YYYY-MM
    effective_to: str | None  # YYYY-MM, inclusive; None = open-ended
    avg_wage_fen: int
    base_lower_fen: int
    base_upper_fen: int


class DeclarationPaid(BaseModel):
    """A declaration's payment was credited."""

    declaration_id: str
    payment_id: str
    category: Category
    region_code: str
    months: list[str]
    total_fen: int
    paid_by: PaidBy
    paid_at: datetime
    channel: str
    person_id_hash: str | None = None  # citizen declarations
    credit_code: str | None = None  # employer declarations


class EmployerAssessed(BaseModel):
    """An undeclared month was assessed at 110% of the previous one (art. 62)."""

    credit_code: str
    month: str
    assessed_total_fen: int
    previous_total_fen: int


class DeclarationExpired(BaseModel):
    """An unpaid declaration passed its time: it can no longer be paid and its months are free again."""

    declaration_id: str
    source: str  # citizen, agency, employer, assessment
    category: Category
    region_code: str
    months: list[str]
    year: int | None = None  # residents' yearly grade
    total_fen: int
    expired_at: datetime
    person_id_hash: str | None = None  # citizen and agency declarations
    credit_code: str | None = None  # employer declarations and assessments
    agency_credit_code: str | None = None  # declarations an agency made for a person


class PaymentRefundPending(BaseModel):
    """Money was taken for a payment that cannot be credited (declaration paid otherwise, cancelled,
    or its months taken meanwhile): staff must refund it."""

    payment_id: str
    declaration_id: str
    channel: str
    amount_fen: int
    reason: str  # why it could not be credited: paid_after_close, declaration_already_paid, ...
    flagged_at: datetime


class PaymentRefunded(BaseModel):
    """Money of a payment went back to the payer (a refund succeeded at the platform). With `uncredited`,
    the payment had been credited: its declaration is cancelled and its months are no longer paid."""

    payment_id: str
    declaration_id: str
    refund_id: str
    channel: str
    amount_fen: int  # this refund
    refunded_total_fen: int  # every refund of the payment that succeeded so far
    payment_amount_fen: int
    reason: str
    uncredited: bool
    months: list[str]  # the declaration's months (uncredited when `uncredited`)
    refunded_at: datetime
