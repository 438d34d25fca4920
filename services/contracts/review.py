"""Events the review service publishes (its public contract to consumers)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

ANNUAL_DECLARATION_APPROVED = "review.annual_declaration.approved.v1"
PENSION_SUSPENDED = "review.pension.suspended.v1"
PENSION_RESUMED = "review.pension.resumed.v1"


class ApprovedLine(BaseModel):
    id_hash: str
    avg_monthly_wage_fen: int
    new_base_fen: int  # the wage clamped to the new year's band


class AnnualDeclarationApproved(BaseModel):
    """An employer's annual declaration was approved: the new year's contribution bases."""

    declaration_id: str
    credit_code: str
    year: int  # the wage year declared; bases apply from the next band period
    region_code: str
    effective_from: str  # YYYY-MM the new bases apply from
    lines: list[ApprovedLine]
    # "declared" (approved by a reviewer) or "assessed_overdue" (not declared by the deadline:
    # 110% of the previous bases, art. 62); consumers apply both the same way.
    basis: str = "declared"


class PensionSuspended(BaseModel):
    person_id: str
    id_hash: str
    from_month: str
    reason: str  # overdue_certification, imprisonment, ...


class PensionResumed(BaseModel):
    person_id: str
    id_hash: str
    from_month: str
    back_pay_months: list[str]  # empty after a suspension for imprisonment
    certified_on: date
