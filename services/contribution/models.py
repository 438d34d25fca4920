"""Contribution tables (private to this service)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.types import UTCDateTime


class Base(DeclarativeBase):
    """Metadata of the contribution service's own tables."""


class DeclarationStatus(StrEnum):
    draft = "draft"
    awaiting_payment = "awaiting_payment"
    paid = "paid"
    cancelled = "cancelled"
    expired = "expired"


class DeclarationSource(StrEnum):
    """Who made the declaration: the person, an agency for the person, the employer, or staff (art. 62)."""

    citizen = "citizen"
    agency = "agency"
    employer = "employer"
    assessment = "assessment"


# ---- policies -----------------------------------------------------------------


class Policy(Base):
    """A dated regional policy. Replaced versions are kept (superseded_at set), never deleted."""

    __tablename__ = "policies"
    __table_args__ = (
        # One live policy per region and start month; history rows are superseded.
        Index(
            "uq_policies_live_region_from", "region_code", "effective_from", unique=True,
            sqlite_where=text("superseded_at IS NULL"), postgresql_where=text("superseded_at IS NULL"),
        ),
        Index("ix_policies_region", "region_code", "from_index"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    effective_from: Mapped[str] = mapped_column(String(7), nullable=False)
    effective_to: Mapped[str | None] = mapped_column(String(7))
    from_index: Mapped[int] = mapped_column(Integer, nullable=False)
    to_index: Mapped[int | None] = mapped_column(Integer)
    avg_wage_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    base_lower_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    base_upper_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # {"pension": {"employer": 1600, "employee": 800, "individual": 2000}, ...} in basis points
    rates: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # {"1": 20, ..., "8": 190} basis points by industry risk class
    work_injury_rates: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # [{"grade_fen": 10000, "subsidy_fen": 3000}, ...]
    grades: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    frequencies: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    # Fixed flexible-worker tiers, percent of avg_wage_fen ([60, 70, 80, 90, 100]); empty: any base in the band.
    flexible_base_tiers_pct: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    # Fixed monthly medical levies in fen by payer ({"employee": 300}): a line of their own.
    medical_levies_fen: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Individual-account interest (记账利率) by year, basis points ({"2024": 262}).
    account_interest_rates: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Residents' basic pension (城乡居民基础养老金), fen a month; null when the policy does not say.
    resident_basic_pension_fen: Mapped[int | None] = mapped_column(BigInteger)
    back_pay_window: Mapped[str] = mapped_column(String(20), nullable=False)
    rounding: Mapped[str] = mapped_column(String(20), nullable=False)
    deadline_day: Mapped[int] = mapped_column(Integer, nullable=False)
    late_fee_per_10000_per_day: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    superseded_by: Mapped[int | None] = mapped_column(BigInteger)


# ---- read model of registration's events ------------------------------------------


class KnownEmployer(Base):
    """An employer registered with registration (from its events)."""

    __tablename__ = "known_employers"

    credit_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    work_injury_class: Mapped[int] = mapped_column(Integer, nullable=False)
    registered_on: Mapped[date | None] = mapped_column(Date)


class KnownPerson(Base):
    """An insured person as registration describes them (no id number: the keyed hash only)."""

    __tablename__ = "known_persons"

    person_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    id_masked: Mapped[str | None] = mapped_column(String(32))
    pensioner_from: Mapped[date | None] = mapped_column(Date)


class KnownEnrolment(Base):
    """An enrolment (employee, flexible or resident) and the months it covers."""

    __tablename__ = "known_enrolments"
    __table_args__ = (
        Index("ix_known_enrolments_person", "id_hash", "category"),
        Index("ix_known_enrolments_employer", "credit_code", "start_month"),
    )

    enrolment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(36), nullable=False)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    insurance_types: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    start_month: Mapped[str] = mapped_column(String(7), nullable=False)
    end_month: Mapped[str | None] = mapped_column(String(7))
    credit_code: Mapped[str | None] = mapped_column(String(18))
    monthly_wage_fen: Mapped[int | None] = mapped_column(BigInteger)


class EmployeeBase(Base):
    """An employee's contribution base from a month on (the approved annual declaration)."""

    __tablename__ = "employee_bases"
    __table_args__ = (UniqueConstraint("credit_code", "id_hash", "effective_from", name="uq_employee_bases"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    credit_code: Mapped[str] = mapped_column(String(18), nullable=False)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    effective_from: Mapped[str] = mapped_column(String(7), nullable=False)
    base_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    avg_monthly_wage_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    source_id: Mapped[str] = mapped_column(String(64), nullable=False)


# ---- declarations -------------------------------------------------------------------


class Declaration(Base):
    """A declaration of contributions due: the person's own, an agency's for them, an employer's month."""

    __tablename__ = "declarations"
    __table_args__ = (
        Index("ix_declarations_person", "person_key", "created_at"),
        Index("ix_declarations_employer", "credit_code", "created_at"),
        Index("ix_declarations_open_expiry", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # DeclarationSource
    status: Mapped[str] = mapped_column(String(20), nullable=False)  # DeclarationStatus
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    # Owner: a person (keyed id hash) for citizen and agency declarations, a unit for employer ones.
    person_key: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(36))
    credit_code: Mapped[str | None] = mapped_column(String(18))
    agency_credit_code: Mapped[str | None] = mapped_column(String(18))
    months: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    year: Mapped[int | None] = mapped_column(Integer)
    base_fen: Mapped[int | None] = mapped_column(BigInteger)
    grade_fen: Mapped[int | None] = mapped_column(BigInteger)
    total_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    subsidy_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    late_fee_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    late_fee_days: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    late_fee_arrears_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    deadline: Mapped[date | None] = mapped_column(Date)
    previous_declaration_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # cancelled or expired
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_payment_id: Mapped[str | None] = mapped_column(String(64))
    paid_channel: Mapped[str | None] = mapped_column(String(20))
    paid_by: Mapped[str | None] = mapped_column(String(20))  # PaidBy


class DeclarationLine(Base):
    """One month, insurance and payer of a declaration, in fen."""

    __tablename__ = "declaration_lines"
    __table_args__ = (Index("ix_declaration_lines_declaration", "declaration_id", "line_no"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    declaration_id: Mapped[str] = mapped_column(ForeignKey("declarations.id"), nullable=False)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    person_key: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(36))
    month: Mapped[str] = mapped_column(String(7), nullable=False)
    insurance: Mapped[str] = mapped_column(String(20), nullable=False)
    payer: Mapped[str] = mapped_column(String(20), nullable=False)
    base_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rate_bp: Mapped[int] = mapped_column(Integer, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)


class DeclaredMonth(Base):
    """A person's period and insurance held by a live or paid declaration.

    The unique constraint is the rule "a month is declared once": a second
    declaration of the same month fails in the database, whatever races.
    Rows are deleted when their declaration is cancelled or expires.
    `period` is `YYYY-MM` for monthly schemes and `YYYY` for the residents' yearly grade.
    """

    __tablename__ = "declared_months"
    __table_args__ = (UniqueConstraint("person_key", "period", "insurance", name="uq_declared_months"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    declaration_id: Mapped[str] = mapped_column(ForeignKey("declarations.id"), nullable=False, index=True)
    person_key: Mapped[str] = mapped_column(String(64), nullable=False)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    insurance: Mapped[str] = mapped_column(String(20), nullable=False)


class ContributionRecord(Base):
    """A paid month (or resident year) per insurance and payer: the person's payment record."""

    __tablename__ = "contribution_records"
    __table_args__ = (
        Index("ix_contribution_records_person", "person_key", "period"),
        UniqueConstraint("declaration_id", "person_key", "period", "insurance", "payer", name="uq_contribution_records"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), nullable=False)
    person_id: Mapped[str | None] = mapped_column(String(36))
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    insurance: Mapped[str] = mapped_column(String(20), nullable=False)
    payer: Mapped[str] = mapped_column(String(20), nullable=False)
    base_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    paid_by: Mapped[str] = mapped_column(String(20), nullable=False)
    credit_code: Mapped[str | None] = mapped_column(String(18))
    declaration_id: Mapped[str] = mapped_column(ForeignKey("declarations.id"), nullable=False)
    payment_id: Mapped[str] = mapped_column(String(64), nullable=False)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AgencyAuthorization(Base):
    """A person lets an agency declare and pay for them until a date (revocable)."""

    __tablename__ = "agency_authorizations"
    __table_args__ = (
        Index("ix_agency_authorizations_agency", "agency_credit_code", "person_key"),
        Index("ix_agency_authorizations_person", "person_key", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), nullable=False)
    agency_credit_code: Mapped[str] = mapped_column(String(18), nullable=False)
    valid_until: Mapped[date] = mapped_column(Date, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FamilyBinding(Base):
    """A family binding as card publishes it: while active, the holder may pay the relative's declarations.

    A binding that ended stays ended: an unbound event seen before its bound event is recorded too.
    """

    __tablename__ = "family_bindings"
    __table_args__ = (Index("ix_family_bindings_pair", "holder_id_hash", "relative_id_hash", "active"),)

    binding_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    relative_id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
