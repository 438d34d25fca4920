"""Registration tables (private to this service).

A person is keyed by the keyed hash of the id number; the number itself is stored
only encrypted. Each enrolment carries nullable "open keys" that are set while it
is open and cleared when it ends: unique indexes on them let the database, not a
prior SELECT, refuse a second open pension (or medical) enrolment for a person and
a second open employment of a person by the same employer, on SQLite and
PostgreSQL alike (both allow many NULLs in a unique index).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.pii import EncryptedString
from services.common.types import UTCDateTime


class Base(DeclarativeBase):
    """Metadata of the registration service's own tables."""


class EnrolmentStatus(StrEnum):
    active = "active"
    ended = "ended"


class EndReason(StrEnum):
    """Why an enrolment ended (the `reason` of `registration.person.enrolment_ended.v1`)."""

    self = "self"  # the citizen stopped a flexible or resident enrolment
    employment = "employment"  # an employer took over: the self-enrolment ends before the hire month
    separation = "separation"  # the employment ended
    pension_award = "pension_award"


class ChangeKind(StrEnum):
    """Entries of a person's history."""

    enrolled = "enrolled"
    separated = "separated"
    enrolment_ended = "enrolment_ended"
    pension_awarded = "pension_awarded"


class Person(Base):
    """An insured person (参保人): the id number is the social security number (art. 58)."""

    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    id_number: Mapped[str] = mapped_column(EncryptedString(), nullable=False)
    id_masked: Mapped[str] = mapped_column(String(18), nullable=False)
    name: Mapped[str] = mapped_column(String(50), nullable=False)
    birth_date: Mapped[date] = mapped_column(Date, nullable=False)
    sex: Mapped[str] = mapped_column(String(6), nullable=False)
    pensioner_from: Mapped[date | None] = mapped_column(Date)
    pension_region_code: Mapped[str | None] = mapped_column(String(6))
    pension_scheme: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Employer(Base):
    """A registered unit (用人单位), keyed by its unified social credit code."""

    __tablename__ = "employers"

    credit_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    address: Mapped[str] = mapped_column(String(200), nullable=False)
    contact: Mapped[str] = mapped_column(String(100), nullable=False)
    work_injury_class: Mapped[int] = mapped_column(Integer, nullable=False)
    registered_on: Mapped[date] = mapped_column(Date, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)


class Enrolment(Base):
    """One enrolment: an employee by an employer, or a citizen's own (flexible, resident)."""

    __tablename__ = "enrolments"
    __table_args__ = (
        Index("ix_enrolments_employer_seq", "employer_credit_code", "seq"),
        Index("ix_enrolments_employer_status_seq", "employer_credit_code", "status", "seq"),
        Index("ix_enrolments_person", "person_id", "seq"),
    )

    # Internal order for keyset pagination; `id` is the public handle.
    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), nullable=False)
    category: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    region_code: Mapped[str] = mapped_column(String(6), nullable=False)
    household_region_code: Mapped[str | None] = mapped_column(String(6))
    insurance_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    start_month: Mapped[str] = mapped_column(String(7), nullable=False)
    end_month: Mapped[str | None] = mapped_column(String(7))
    end_reason: Mapped[str | None] = mapped_column(String(20))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    employer_credit_code: Mapped[str | None] = mapped_column(ForeignKey("employers.credit_code"))
    hire_date: Mapped[date | None] = mapped_column(Date)
    separation_date: Mapped[date | None] = mapped_column(Date)
    separation_reason: Mapped[str | None] = mapped_column(String(200))
    monthly_wage_fen: Mapped[int | None] = mapped_column(BigInteger)
    late: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    late_days: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    registered_on: Mapped[date] = mapped_column(Date, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    # Set while open, NULL once ended; unique, so the database refuses a second one.
    open_pension_key: Mapped[str | None] = mapped_column(String(36), unique=True)
    open_medical_key: Mapped[str | None] = mapped_column(String(36), unique=True)
    open_employment_key: Mapped[str | None] = mapped_column(String(60), unique=True)


class PersonChange(Base):
    """One entry of a person's history (enrolled, separated, ended, pension awarded)."""

    __tablename__ = "person_changes"
    __table_args__ = (Index("ix_person_changes_person_seq", "person_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    change: Mapped[str] = mapped_column(String(30), nullable=False)
    enrolment_id: Mapped[str | None] = mapped_column(String(36))
    category: Mapped[str | None] = mapped_column(String(16))
    region_code: Mapped[str | None] = mapped_column(String(6))
    employer_credit_code: Mapped[str | None] = mapped_column(String(18))
    month: Mapped[str | None] = mapped_column(String(7))
    on_date: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(200))


class RegionalRule(Base):
    """A dated regional enrolment rule: whether flexible enrolment needs local household registration."""

    __tablename__ = "regional_rules"

    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    flexible_non_local_allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(200), nullable=False)


class EmployeeImport(Base):
    """One spreadsheet import of employees (批量增员): counts and the errors of each refused row."""

    __tablename__ = "employee_imports"
    __table_args__ = (Index("ix_employee_imports_employer", "credit_code", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    credit_code: Mapped[str] = mapped_column(ForeignKey("employers.credit_code"), nullable=False)
    file_name: Mapped[str | None] = mapped_column(String(200))
    file_format: Mapped[str] = mapped_column(String(8), nullable=False)
    file_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    registered: Mapped[int] = mapped_column(Integer, nullable=False)
    failed: Mapped[int] = mapped_column(Integer, nullable=False)
    # [{row, column, field, code, message_zh, message_en}]: no id number, only where and why.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
