"""The contribution service's public contract (request and answer bodies)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic_core import PydanticCustomError

from services.common.enums import Category, Insurance
from services.common.errors import register_validation_code
from services.common.identifiers import CreditCode, IdNumber, Month, RegionCode
from services.common.pagination import Page
from services.common.regions import RegionNamed, region_full_name
from services.contribution.enums import LinePayer, PaidBy
from services.contribution.policies.pricing import Rounding

register_validation_code("duplicate_months", "同一申报中月份重复")
register_validation_code("window_invalid", "补缴窗口应为 current_year、none 或 months:N")

# Money in fen: integers only (a JSON number with a fraction, or a string, is refused).
Fen = Annotated[int, Field(strict=True, ge=1, le=10_000_000_000)]
FenOrZero = Annotated[int, Field(strict=True, ge=0, le=10_000_000_000)]
RateBp = Annotated[int, Field(strict=True, ge=0, le=10000)]
Year = Annotated[int, Field(strict=True, ge=1990, le=2100)]


def _distinct_months(months: list[str] | None) -> list[str] | None:
    if months is not None and len(set(months)) != len(months):
        raise PydanticCustomError("duplicate_months", "a month appears more than once")
    return sorted(months) if months is not None else None


def _window(value: str) -> str:
    from services.contribution.policies.pricing import parse_window

    try:
        parse_window(value)
    except ValueError:
        raise PydanticCustomError("window_invalid", "current_year, none or months:N") from None
    return value


TierPct = Annotated[int, Field(strict=True, ge=1, le=300)]
YearKey = Annotated[str, Field(pattern=r"^(19[5-9][0-9]|20[0-9][0-9]|2100)$")]


class LevyPayer(StrEnum):
    """Who pays a fixed medical levy: an employee (withheld by the unit) or a flexible worker."""

    employee = "employee"
    individual = "individual"


Months = Annotated[list[Month], Field(min_length=1, max_length=36), AfterValidator(_distinct_months)]


class Frequency(StrEnum):
    monthly = "monthly"
    quarterly = "quarterly"
    half_yearly = "half_yearly"
    yearly = "yearly"


# ---- policies -----------------------------------------------------------------------


class PayerRates(BaseModel):
    """Basis points (1600 = 16%) paid by each payer for one insurance."""

    model_config = ConfigDict(extra="forbid")

    employer: RateBp = 0
    employee: RateBp = 0
    individual: RateBp = 0  # flexible employees


class Grade(BaseModel):
    """A residents' yearly grade and the government subsidy that comes with it."""

    model_config = ConfigDict(extra="forbid")

    grade_fen: Fen
    subsidy_fen: FenOrZero


class PolicyIn(BaseModel):
    """A dated regional policy (the path names region and first month)."""

    model_config = ConfigDict(extra="forbid")

    effective_to: Month | None = Field(None, description="last month in force (inclusive); null = open-ended")
    avg_wage_fen: Fen
    base_lower_fen: Fen
    base_upper_fen: Fen
    rates: dict[Insurance, PayerRates]
    work_injury_rates: dict[Annotated[int, Field(ge=1, le=8)], RateBp] = Field(
        description="basis points by industry risk class 1-8", min_length=8, max_length=8
    )
    grades: list[Grade] = Field(default_factory=list, max_length=50)
    frequencies: list[Frequency] = Field(default_factory=lambda: [Frequency.monthly], min_length=1, max_length=4)
    back_pay_window: Annotated[str, Field(max_length=20), AfterValidator(_window)] = "current_year"
    rounding: Rounding = Rounding.fen_half_up
    deadline_day: int = Field(15, strict=True, ge=1, le=31)
    late_fee_per_10000_per_day: int = Field(5, strict=True, ge=0, le=100)
    flexible_base_tiers_pct: list[TierPct] = Field(
        default_factory=list, max_length=10,
        description="fixed flexible-worker bases, percent of avg_wage_fen (e.g. 60, 70, 80, 90, 100); "
                    "empty: any base inside the band",
    )
    medical_levies_fen: dict[LevyPayer, FenOrZero] = Field(
        default_factory=dict, description="fixed monthly medical levy in fen by payer (employee, individual)",
    )
    account_interest_rates: dict[YearKey, RateBp] = Field(
        default_factory=dict, max_length=200,
        description="individual-account interest (记账利率) by year, basis points: {\"2024\": 262}",
    )
    resident_basic_pension_fen: FenOrZero | None = Field(
        None, description="residents' basic pension (城乡居民基础养老金), fen a month",
    )
    reason: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.base_lower_fen > self.base_upper_fen:
            raise ValueError("base_lower_fen must not exceed base_upper_fen")
        grades = [g.grade_fen for g in self.grades]
        if len(set(grades)) != len(grades):
            raise ValueError("a grade appears more than once")
        if len(set(self.flexible_base_tiers_pct)) != len(self.flexible_base_tiers_pct):
            raise ValueError("a tier appears more than once")
        return self


class PolicyOut(RegionNamed):
    """The policy in force: band, rates, grades, back-pay window, rounding."""

    region_code: str
    effective_from: str
    effective_to: str | None
    avg_wage_fen: int
    base_lower_fen: int
    base_upper_fen: int
    rates: dict[str, dict[str, int]]
    work_injury_rates: dict[str, int]
    grades: list[Grade]
    frequencies: list[str]
    back_pay_window: str
    rounding: str
    deadline_day: int
    late_fee_per_10000_per_day: int
    flexible_base_tiers_pct: list[int] = Field(default_factory=list)
    flexible_base_tiers_fen: list[int] = Field(
        default_factory=list, description="the tiers in fen: avg_wage_fen x percent, to the fen half up",
    )
    medical_levies_fen: dict[str, int] = Field(default_factory=dict)
    account_interest_rates: dict[str, int] = Field(default_factory=dict)
    resident_basic_pension_fen: int | None = None
    version: int
    created_at: datetime
    superseded_at: datetime | None = None


# ---- quotes and declarations ----------------------------------------------------------


class QuoteIn(BaseModel):
    """Price months at a base (employee, flexible) or a yearly grade (resident)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    region_code: RegionCode
    base_fen: Fen | None = None
    months: Months | None = None
    grade_fen: Fen | None = None
    year: Year | None = None
    work_injury_class: int | None = Field(None, strict=True, ge=1, le=8, description="employee quotes only")

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.category == Category.resident:
            if self.grade_fen is None or self.year is None:
                raise ValueError("a resident declares grade_fen and year")
            if self.base_fen is not None or self.months is not None:
                raise ValueError("a resident declares a grade, not a base and months")
        else:
            if self.base_fen is None or self.months is None:
                raise ValueError("base_fen and months are required")
            if self.grade_fen is not None or self.year is not None:
                raise ValueError("grade_fen and year are for residents")
        return self


class DeclarationIn(QuoteIn):
    """A citizen's own declaration ("add declaration"): flexible or resident."""


class AgencyDeclarationIn(QuoteIn):
    """An agency's declaration for a person who authorized it."""

    id_number: IdNumber


class LineOut(BaseModel):
    month: str
    insurance: Insurance
    payer: LinePayer
    base_fen: int
    rate_bp: int
    amount_fen: int
    person_id: str | None = None


class QuoteOut(RegionNamed):
    category: Category
    region_code: str
    months: list[str]
    back_payment_months: list[str]
    lines: list[LineOut]
    total_fen: int = Field(description="what the payers pay: every line except government subsidies")
    subsidy_fen: int = Field(0, description="government subsidy lines (residents), not part of total_fen")


class RefundSummary(BaseModel):
    """Money of the payment going back to the payer: processing, succeeded, failed or abnormal."""

    id: str
    status: str
    amount_fen: int
    requested_at: datetime
    finished_at: datetime | None = None


class PaymentSummary(BaseModel):
    id: str
    channel: str
    status: str
    certificate_code: str | None = None
    paid_by: PaidBy | None = None  # `family`: opened by a bound relative
    refunds: list[RefundSummary] = Field(default_factory=list)


class LateFeeOut(BaseModel):
    """Art. 86 late fee: arrears x rate x days after the deadline."""

    deadline: date
    days_late: int
    arrears_fen: int
    rate_per_10000_per_day: int
    amount_fen: int


class DeclarationOut(RegionNamed):
    id: str
    status: str
    source: str
    category: Category
    region_code: str
    months: list[str]
    year: int | None = None
    base_fen: int | None = None
    grade_fen: int | None = None
    credit_code: str | None = None
    agency_credit_code: str | None = None
    lines: list[LineOut]
    total_fen: int
    subsidy_fen: int = 0
    late_fee: LateFeeOut | None = None
    created_at: datetime
    confirmed_at: datetime | None = None
    expires_at: datetime | None = None
    paid_at: datetime | None = None
    paid_by: PaidBy | None = None
    payments: list[PaymentSummary] = Field(default_factory=list)


class DeclarationListItem(RegionNamed):
    id: str
    status: str
    source: str
    category: Category
    region_code: str
    months: list[str]
    year: int | None = None
    total_fen: int
    created_at: datetime


class DeclarationPage(Page[DeclarationListItem]):
    pass


class EmployerDeclarationIn(BaseModel):
    """The employer's monthly declaration: all active employees, or the listed ones."""

    model_config = ConfigDict(extra="forbid")

    month: Month
    person_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] | None = Field(None, min_length=1, max_length=10000)


class AssessmentIn(BaseModel):
    """Assess an undeclared month at 110% of the previous one (art. 62)."""

    model_config = ConfigDict(extra="forbid")

    month: Month
    reason: str = Field(min_length=1, max_length=500)


# ---- agency authorizations ---------------------------------------------------------


class AgencyAuthorizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credit_code: CreditCode
    valid_until: date
    note: str | None = Field(None, max_length=200)


class AuthorizationStatus(StrEnum):
    active = "active"
    revoked = "revoked"
    lapsed = "lapsed"


class AgencyAuthorizationOut(BaseModel):
    id: str
    credit_code: str
    valid_until: date
    status: AuthorizationStatus
    created_at: datetime
    revoked_at: datetime | None = None


class AgencyAuthorizationPage(Page[AgencyAuthorizationOut]):
    pass


# ---- records -------------------------------------------------------------------------


class RecordPart(BaseModel):
    payer: LinePayer
    amount_fen: int


class RecordItem(BaseModel):
    """One month (or a resident's year) and insurance."""

    month: str | None = Field(None, description="YYYY-MM; null for a resident's yearly grade")
    year: int
    category: Category
    insurance: Insurance
    base_fen: int
    amount_fen: int
    parts: list[RecordPart]
    paid_by: PaidBy | None = None
    status: str = Field(description="paid, or awaiting_payment for a confirmed declaration not yet paid")
    credit_code: str | None = None


class RecordsOut(BaseModel):
    year: int
    items: list[RecordItem]
    gaps: list[str] = Field(description="months of the year before the current one, covered by an enrolment but without paid pension")
    pension_months_paid: int = Field(description="all paid months of employee or flexible pension, every year")
    pension_months_required: int = Field(description="minimum for a monthly pension, for someone retiring this year")
    pension_months_remaining: int



# ---- pension estimate -----------------------------------------------------------------


class RetirementOut(BaseModel):
    """The statutory retirement month under the 2024 gradual-increase decision."""

    basis: str = Field(description="male, female_worker (original age 50), female_cadre (55) or resident (60)")
    original_age_years: int
    original_month: str = Field(description="YYYY-MM the person would have retired in before the decision")
    delay_months: int
    age_years: int
    age_extra_months: int = Field(description="months beyond age_years (60 years and 3 months: 60 and 3)")
    month: str = Field(description="YYYY-MM: the statutory retirement month")


class AssumptionOut(BaseModel):
    code: str = Field(description="stable key: retirement_age_rule, minimum_years, average_wage, account_interest, ...")
    value: Any = None
    text: str = Field(description="what was assumed, in the request's language")


class PensionFiguresOut(BaseModel):
    """The estimated monthly pension at the retirement month, in fen."""

    average_wage_fen: int | None = Field(None, description="employee and flexible: the local average wage used")
    average_index: str | None = Field(None, description="average contribution index, 4 decimals (a string, no float)")
    contribution_months: int = Field(description="months counted: paid so far plus those assumed until retirement")
    basic_pension_fen: int
    account_balance_fen: int = Field(description="individual account at retirement, interest included")
    divisor: int = Field(description="计发月数 (139 at 60, 170 at 55, 195 at 50 ...)")
    account_pension_fen: int
    monthly_pension_fen: int


class PensionEstimateOut(RegionNamed):
    category: Category
    region_code: str
    policy_region_code: str
    birth_month: str
    sex: str
    retirement: RetirementOut
    minimum_months_required: int = Field(description="minimum months in force in the retirement year")
    months_paid: int = Field(description="pension months paid so far (resident years count 12)")
    months_needed: int = Field(description="months still needed to reach the minimum")
    months_projected: int = Field(description="months assumed paid from now until retirement")
    eligible_at_retirement: bool = Field(description="paid plus projected months reach the minimum")
    estimate: PensionFiguresOut
    assumptions: list[AssumptionOut]

    @computed_field(  # type: ignore[prop-decorator]
        description="the full name of the region whose policy was used (GB/T 2260)", examples=["北京市"],
    )
    @property
    def policy_region_name(self) -> str | None:
        return region_full_name(self.policy_region_code)
