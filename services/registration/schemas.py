"""The registration service's public contract (request and answer bodies)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, computed_field

from services.common.enums import Category, Insurance
from services.common.identifiers import CreditCode, IdNumber, Month, PersonName, RegionCode, UnitText
from services.common.pagination import Page
from services.common.regions import RegionNamed, region_full_name
from services.registration.models import ChangeKind, EndReason, EnrolmentStatus

Name = PersonName
InsuranceTypes = Annotated[list[Insurance], Field(min_length=1, max_length=5)]


class _In(BaseModel):
    # Unknown fields are refused: a typo (or an id number where none belongs) is a 422, never ignored.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- employers -----------------------------------------------------------------


class EmployerIn(_In):
    credit_code: CreditCode
    name: UnitText = Field(min_length=1, max_length=100)
    region_code: RegionCode
    address: UnitText = Field(min_length=1, max_length=200)
    contact: UnitText = Field(min_length=1, max_length=100, description="contact person and phone")
    work_injury_class: StrictInt = Field(ge=1, le=8, description="industry risk class 1-8")


class EmployerOut(RegionNamed):
    id: str = Field(description="the credit code")
    credit_code: str
    name: str
    region_code: str
    address: str
    contact: str
    work_injury_class: int
    registered_on: date


class EmployerBrief(BaseModel):
    credit_code: str
    name: str


# ---- enrolments --------------------------------------------------------------------


class EnrolmentOut(RegionNamed):
    id: str
    person_id: str
    category: Category
    status: EnrolmentStatus
    region_code: str
    household_region_code: str | None = None
    insurance_types: list[Insurance]
    start_month: str = Field(description="first month covered, YYYY-MM")
    end_month: str | None = Field(default=None, description="last month covered, YYYY-MM")
    end_reason: EndReason | None = None
    employer: EmployerBrief | None = None
    hire_date: date | None = None
    separation_date: date | None = None
    monthly_wage_fen: int | None = None
    late: bool = False
    late_days: int = 0
    registered_on: date

    @computed_field(  # type: ignore[prop-decorator]
        description="the household region's full name (GB/T 2260); null without one or for a code no longer in the table",
        examples=["北京市朝阳区"],
    )
    @property
    def household_region_name(self) -> str | None:
        return region_full_name(self.household_region_code)


class EmployeeIn(_In):
    id_number: IdNumber
    name: Name
    hire_date: date
    monthly_wage_fen: StrictInt = Field(gt=0, le=10_000_000_00, description="monthly wage in fen")
    insurance_types: InsuranceTypes


class EmployeeOut(EnrolmentOut):
    """A roster line: the employee enrolment with the person's name and masked id."""

    name: str
    id_number_masked: str
    ended_enrolments: list[str] = Field(
        default_factory=list, description="self-enrolments this employment ended (ids)"
    )


class RosterPage(Page[EmployeeOut]):
    pass


class RosterStatus(StrEnum):
    active = "active"
    ended = "ended"


class ImportRowError(BaseModel):
    row: int = Field(description="the row number as the spreadsheet shows it (the header row included)")
    column: str | None = Field(default=None, description="the column letter (A, B, ...)")
    field: str = Field(description="id_number, name, hire_date, monthly_wage_fen or insurance_types")
    code: str = Field(description="missing, id_number_invalid, name_invalid, date_invalid, wage_invalid, "
                      "insurance_type_invalid, duplicate_row, or the JSON route's refusal (employee_already_enrolled, "
                      "enrolment_conflict, person_is_pensioner, name_mismatch, ...)")
    message: str


class EmployeeImportOut(BaseModel):
    id: str
    credit_code: str
    file_name: str | None = None
    format: str = Field(description="xlsx or csv")
    rows: int = Field(description="data rows read (empty rows are skipped)")
    registered: int = Field(description="rows enrolled")
    failed: int = Field(description="rows refused (each with its errors)")
    errors: list[ImportRowError]
    created_at: datetime


class SeparationIn(_In):
    separation_date: date
    reason: str | None = Field(default=None, max_length=200)


class SelfCategory(StrEnum):
    flexible = "flexible"
    resident = "resident"


class SelfEnrolmentIn(_In):
    """Enrol oneself; the id number and name come from the real-name token, never from the body."""

    category: SelfCategory
    region_code: RegionCode
    household_region_code: RegionCode | None = None
    insurance_types: InsuranceTypes
    start_month: Month


class EndEnrolmentIn(_In):
    end_month: Month = Field(description="last month covered")


# ---- persons -----------------------------------------------------------------------


class HistoryEntry(RegionNamed):
    at: datetime
    change: ChangeKind
    enrolment_id: str | None = None
    category: Category | None = None
    region_code: str | None = None
    employer_credit_code: str | None = None
    month: str | None = None
    on_date: date | None = None
    reason: str | None = None


class PersonProfile(BaseModel):
    person_id: str | None = Field(description="null until the person has been registered")
    registered: bool
    id_number_masked: str
    name: str
    birth_date: date
    sex: str
    pensioner: bool
    pensioner_from: date | None = None
    enrolments: list[EnrolmentOut]
    history: list[HistoryEntry]


class StaffPersonView(PersonProfile):
    id_number: str | None = Field(default=None, description="only when read unmasked (audited)")


class PersonLookupIn(_In):
    """Find a person by id number (in the body, so the number never lands in a URL or an access log)."""

    id_number: IdNumber


class PensionScheme(StrEnum):
    employee = "employee"
    resident = "resident"


class PensionAwardIn(_In):
    from_date: date
    region_code: RegionCode | None = Field(default=None, description="default: the last pension enrolment's region")
    scheme: PensionScheme | None = Field(default=None, description="default: from the last pension enrolment")
    reason: str | None = Field(default=None, max_length=200)


class PensionAwardOut(RegionNamed):
    id: str = Field(description="the person id")
    person_id: str
    pensioner: bool
    pensioner_from: date
    region_code: str
    scheme: PensionScheme
    ended_enrolments: list[EnrolmentOut]


# ---- regional rules -------------------------------------------------------------


class RegionalRuleIn(_In):
    flexible_non_local_allowed: StrictBool
    note: str | None = Field(default=None, max_length=500)
    reason: str = Field(min_length=1, max_length=200, description="why the rule changes (audited)")


class RegionalRuleOut(RegionNamed):
    region_code: str
    effective_from: date
    flexible_non_local_allowed: bool
    note: str | None = None
    updated_at: datetime


class EnrolmentRef(RegionNamed):
    """The open enrolment a refusal names."""

    id: str
    category: Category
    region_code: str
    start_month: str
    employer_credit_code: str | None = None

