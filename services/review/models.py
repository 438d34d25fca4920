"""Review tables (private to this service)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.types import UTCDateTime


class Base(DeclarativeBase):
    """Metadata of the review service's own tables."""


class ReviewRule(Base):
    """Dated regional review rules: certification interval and grace, declaration deadline."""

    __tablename__ = "review_rules"
    __table_args__ = (UniqueConstraint("region_code", "effective_from", name="uq_review_rules_region_from"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    effective_from: Mapped[date] = mapped_column(Date, nullable=False)
    certification_months: Mapped[int] = mapped_column(Integer, nullable=False)
    resident_certification_months: Mapped[int] = mapped_column(Integer, nullable=False)
    grace_days: Mapped[int] = mapped_column(Integer, nullable=False)
    declaration_deadline: Mapped[str] = mapped_column(String(5), nullable=False)  # MM-DD of the following year
    bases_from_month: Mapped[int] = mapped_column(Integer, nullable=False)  # 1-12
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(80), nullable=False)


class Pensioner(Base):
    """Read model of a pension award (from registration), with certification state."""

    __tablename__ = "pensioners"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    id_masked: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    scheme: Mapped[str] = mapped_column(String(20), nullable=False)
    from_date: Mapped[date] = mapped_column(Date, nullable=False)
    last_certified_on: Mapped[date | None] = mapped_column(Date)
    # The state the last sweep (or action) recorded; the state shown is computed from dates.
    recorded_state: Mapped[str] = mapped_column(String(20), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Certification(Base):
    """One qualification certification (认证): face, a visit or a data match."""

    __tablename__ = "certifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    certified_on: Mapped[date] = mapped_column(Date, nullable=False)
    evidence: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Suspension(Base):
    """A pension suspension; `open_key` (= person_id while open) keeps one open per person."""

    __tablename__ = "suspensions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    from_month: Mapped[str] = mapped_column(String(7), nullable=False)
    created_by: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    resumed_from_month: Mapped[str | None] = mapped_column(String(7))
    back_pay_months: Mapped[list[str] | None] = mapped_column(JSON)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StateTransition(Base):
    """A certification state change the sweep (or an action) recorded."""

    __tablename__ = "state_transitions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    from_state: Mapped[str] = mapped_column(String(20), nullable=False)
    to_state: Mapped[str] = mapped_column(String(20), nullable=False)
    due_by: Mapped[date] = mapped_column(Date, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    cause: Mapped[str] = mapped_column(String(40), nullable=False)


class Employer(Base):
    """Read model of a registered unit."""

    __tablename__ = "employers"

    credit_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    registered_on: Mapped[date] = mapped_column(Date, nullable=False)


class RosterEntry(Base):
    """Read model of one employment (an employee enrolment) at an employer."""

    __tablename__ = "roster"
    __table_args__ = (UniqueConstraint("enrolment_id", name="uq_roster_enrolment"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    enrolment_id: Mapped[str] = mapped_column(String(64), nullable=False)
    credit_code: Mapped[str] = mapped_column(String(18), nullable=False, index=True)
    person_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    id_masked: Mapped[str] = mapped_column(String(32), nullable=False)
    id_number_enc: Mapped[str] = mapped_column(String(255), nullable=False)  # AES-GCM, shared PII key
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    hire_date: Mapped[date | None] = mapped_column(Date)
    start_month: Mapped[str] = mapped_column(String(7), nullable=False)
    last_month: Mapped[str | None] = mapped_column(String(7))  # None while employed
    monthly_wage_fen: Mapped[int | None] = mapped_column(Integer)


class Band(Base):
    """Read model of contribution's dated base bands (contribution.policy.published.v1)."""

    __tablename__ = "bands"
    __table_args__ = (UniqueConstraint("region_code", "effective_from", name="uq_bands_region_from"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    effective_from: Mapped[str] = mapped_column(String(7), nullable=False)
    effective_to: Mapped[str | None] = mapped_column(String(7))
    avg_wage_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    base_lower_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    base_upper_fen: Mapped[int] = mapped_column(Integer, nullable=False)


class AnnualDeclaration(Base):
    """An employer's annual declaration (年度申报) of the previous year's wages."""

    __tablename__ = "annual_declarations"
    __table_args__ = (UniqueConstraint("credit_code", "year", name="uq_annual_declarations_employer_year"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18), nullable=False)
    year: Mapped[int] = mapped_column(Integer, nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    headcount: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_wages_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    invalid_lines: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    effective_from: Mapped[str] = mapped_column(String(7), nullable=False)
    overdue: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    reasons: Mapped[list[str] | None] = mapped_column(JSON)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class DeclarationLine(Base):
    """One declared (or assessed) employee line: hashed and masked id, never the number itself."""

    __tablename__ = "declaration_lines"
    __table_args__ = (UniqueConstraint("declaration_id", "id_hash", name="uq_declaration_lines_person"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    declaration_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    id_masked: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    avg_monthly_wage_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    new_base_fen: Mapped[int] = mapped_column(Integer, nullable=False)
