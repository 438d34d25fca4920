"""Review service public contract (pydantic models)."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from services.common.identifiers import Month
from services.common.pagination import Page
from services.common.regions import RegionNamed


class CertificationState(StrEnum):
    valid = "valid"
    due = "due"
    overdue = "overdue"
    suspended = "suspended"


class CertificationMethod(StrEnum):
    face = "face"
    community_visit = "community_visit"
    home_visit = "home_visit"
    data_match = "data_match"


class StaffCertificationMethod(StrEnum):
    community_visit = "community_visit"
    home_visit = "home_visit"
    data_match = "data_match"


class SuspensionReason(StrEnum):
    overdue_certification = "overdue_certification"
    imprisonment = "imprisonment"
    whereabouts_unknown = "whereabouts_unknown"
    death_reported = "death_reported"
    other = "other"


class StaffSuspensionReason(StrEnum):
    imprisonment = "imprisonment"
    whereabouts_unknown = "whereabouts_unknown"
    death_reported = "death_reported"
    other = "other"


class DeclarationStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    returned = "returned"
    approved = "approved"
    assessed = "assessed"  # not declared by the deadline: 110% of the previous bases (art. 62)


# ---- rules -----------------------------------------------------------------------

_DEADLINE_RE = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


class ReviewRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certification_months: StrictInt = Field(ge=1, le=24, description="months between two certifications")
    resident_certification_months: StrictInt = Field(ge=1, le=24, description="the same for resident-scheme pensioners")
    grace_days: StrictInt = Field(ge=0, le=365, description="days after the deadline before the pension is suspended")
    declaration_deadline: str = Field(max_length=5, description="MM-DD of the year after the wage year")
    bases_from_month: StrictInt = Field(ge=1, le=12, description="month of the year after the wage year the new bases apply from")
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("declaration_deadline")
    @classmethod
    def _deadline(cls, v: str) -> str:
        if not _DEADLINE_RE.match(v) or v == "02-30" or v == "02-31" or v in ("04-31", "06-31", "09-31", "11-31"):
            raise PydanticCustomError("declaration_deadline_invalid", "the deadline is MM-DD")
        return v


class ReviewRuleOut(RegionNamed):
    region_code: str
    effective_from: date
    certification_months: int
    resident_certification_months: int
    grace_days: int
    declaration_deadline: str
    bases_from_month: int


# ---- certification ---------------------------------------------------------------


class CertificationStatus(RegionNamed):
    person_id: str
    name: str
    id_number_masked: str
    region_code: str
    scheme: str
    pension_from: date
    state: CertificationState
    last_certified_on: date | None
    due_by: date
    due_from: date
    suspend_after: date
    suspension: SuspensionOut | None = None


class SuspensionOut(BaseModel):
    id: str
    reason: str
    from_month: str
    created_at: datetime
    resumed_from_month: str | None = None
    back_pay_months: list[str] | None = None


class CertificationOut(BaseModel):
    id: str
    person_id: str
    method: CertificationMethod
    certified_on: date
    resumed: SuspensionOut | None = None
    status: CertificationStatus


class StaffCertificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: StaffCertificationMethod
    evidence: str | None = Field(default=None, max_length=4000, description="what was seen or matched, by whom")
    certified_on: date | None = Field(default=None, description="date of the visit or match (default today)")

    @model_validator(mode="after")
    def _evidence(self) -> StaffCertificationIn:
        if not self.evidence or not self.evidence.strip():
            raise PydanticCustomError("evidence_required", "evidence is required for a visit or a data match")
        return self


class SuspensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StaffSuspensionReason
    detail: str | None = Field(default=None, max_length=2000)
    from_month: Month | None = None


class SweepOut(BaseModel):
    run_at: datetime
    today: date
    examined: int
    transitions: int
    suspended: int


# ---- annual declaration ----------------------------------------------------------


class RosterItem(BaseModel):
    person_id: str
    id_number_masked: str
    name: str
    hire_date: date | None
    start_month: str
    last_month: str | None
    monthly_wage_fen: int | None


class RosterPage(BaseModel):
    credit_code: str
    year: int
    items: list[RosterItem]
    next_cursor: str | None = None


class DeclarationLinesIn(BaseModel):
    """Lines are checked one by one (errors per line), so each is taken as a loose object here."""

    model_config = ConfigDict(extra="forbid")

    lines: list[Any] = Field(
        max_length=20000,
        description="each line: {id_number, name, avg_monthly_wage_fen}; a bad line is reported by its number",
        examples=[[{"id_number": "11010519491231002X", "name": "张三", "avg_monthly_wage_fen": 1000000}]],
    )


class BandOut(RegionNamed):
    region_code: str
    effective_from: str
    effective_to: str | None
    base_lower_fen: int
    base_upper_fen: int


class LineError(BaseModel):
    line: int = Field(description="1-based position in the submitted lines; a spreadsheet's row number")
    column: str | None = Field(default=None, description="a spreadsheet's column letter")
    field: str
    code: str
    message: str


class DiffPerson(BaseModel):
    line: int | None = None
    person_id: str | None = None
    id_number_masked: str
    name: str


class NameDiff(BaseModel):
    line: int
    person_id: str
    id_number_masked: str
    declared_name: str
    registered_name: str


class BandDiff(BaseModel):
    line: int
    id_number_masked: str
    name: str
    avg_monthly_wage_fen: int
    new_base_fen: int
    below_band: bool


class Differences(BaseModel):
    not_declared: list[DiffPerson]
    not_registered: list[DiffPerson]
    name_differs: list[NameDiff]
    outside_band: list[BandDiff]


class DeclarationOut(RegionNamed):
    id: str
    credit_code: str
    year: int
    region_code: str
    status: DeclarationStatus
    headcount: int
    total_wages_fen: int
    invalid_lines: int
    effective_from: str
    overdue: bool
    reasons: list[str] | None
    submitted_at: datetime | None
    decided_at: datetime | None


class DeclarationCheckOut(DeclarationOut):
    band: BandOut | None
    errors: list[LineError]
    differences: Differences


class DeclarationPage(Page[DeclarationOut]):
    pass


class DeclaredLineOut(BaseModel):
    line: int
    id_number_masked: str
    name: str
    avg_monthly_wage_fen: int
    new_base_fen: int


class DeclaredLinePage(Page[DeclaredLineOut]):
    pass


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "return"]
    reasons: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _reasons(self) -> DecisionIn:
        if self.decision == "return" and not [r for r in self.reasons if r.strip()]:
            raise PydanticCustomError("reasons_required", "a returned declaration needs reasons")
        return self


class OverdueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year: StrictInt | None = Field(default=None, ge=2000, le=2100, description="wage year (default: last year)")


class OverdueItem(BaseModel):
    credit_code: str
    declaration_id: str
    headcount: int
    total_bases_fen: int


class OverdueOut(BaseModel):
    year: int
    assessed: list[OverdueItem]


CertificationStatus.model_rebuild()
