"""registration tables: persons, employers, enrolments, person history, regional rules (seeded)

Revision ID: 0002_registration
Revises: 0001_kernel
"""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_registration"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("id_number", sa.String(255), nullable=False),
        sa.Column("id_masked", sa.String(18), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(6), nullable=False),
        sa.Column("pensioner_from", sa.Date()),
        sa.Column("pension_region_code", sa.String(6)),
        sa.Column("pension_scheme", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("id_hash", name="uq_persons_id_hash"),
    )
    op.create_table(
        "employers",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("contact", sa.String(100), nullable=False),
        sa.Column("work_injury_class", sa.Integer(), nullable=False),
        sa.Column("registered_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("seq", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("person_id", sa.String(36), sa.ForeignKey("persons.id", name="fk_enrolments_person"), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("household_region_code", sa.String(6)),
        sa.Column("insurance_types", sa.JSON(), nullable=False),
        sa.Column("start_month", sa.String(7), nullable=False),
        sa.Column("end_month", sa.String(7)),
        sa.Column("end_reason", sa.String(20)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column(
            "employer_credit_code", sa.String(18),
            sa.ForeignKey("employers.credit_code", name="fk_enrolments_employer"),
        ),
        sa.Column("hire_date", sa.Date()),
        sa.Column("separation_date", sa.Date()),
        sa.Column("separation_reason", sa.String(200)),
        sa.Column("monthly_wage_fen", sa.BigInteger()),
        sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("late_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("registered_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("open_pension_key", sa.String(36)),
        sa.Column("open_medical_key", sa.String(36)),
        sa.Column("open_employment_key", sa.String(60)),
        sa.UniqueConstraint("id", name="uq_enrolments_id"),
        sa.UniqueConstraint("open_pension_key", name="uq_enrolments_open_pension"),
        sa.UniqueConstraint("open_medical_key", name="uq_enrolments_open_medical"),
        sa.UniqueConstraint("open_employment_key", name="uq_enrolments_open_employment"),
    )
    op.create_index("ix_enrolments_employer_seq", "enrolments", ["employer_credit_code", "seq"])
    op.create_index("ix_enrolments_employer_status_seq", "enrolments", ["employer_credit_code", "status", "seq"])
    op.create_index("ix_enrolments_person", "enrolments", ["person_id", "seq"])
    op.create_table(
        "person_changes",
        sa.Column("seq", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.String(36), sa.ForeignKey("persons.id", name="fk_person_changes_person"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change", sa.String(30), nullable=False),
        sa.Column("enrolment_id", sa.String(36)),
        sa.Column("category", sa.String(16)),
        sa.Column("region_code", sa.String(6)),
        sa.Column("employer_credit_code", sa.String(18)),
        sa.Column("month", sa.String(7)),
        sa.Column("on_date", sa.Date()),
        sa.Column("reason", sa.String(200)),
    )
    op.create_index("ix_person_changes_person_seq", "person_changes", ["person_id", "seq"])
    rules = op.create_table(
        "regional_rules",
        sa.Column("region_code", sa.String(6), primary_key=True),
        sa.Column("effective_from", sa.Date(), primary_key=True),
        sa.Column("flexible_non_local_allowed", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    seeded = datetime(2026, 1, 1, tzinfo=UTC)
    # Sample rules for the regions of DOMAIN.md (not authoritative; staff admins change them).
    op.bulk_insert(
        rules,
        [
            {"region_code": "110000", "effective_from": date(2020, 1, 1), "flexible_non_local_allowed": False,
             "note": "Beijing (sample): flexible enrolment needs a Beijing household registration",
             "updated_at": seeded, "updated_by": "seed"},
            {"region_code": "310000", "effective_from": date(2020, 1, 1), "flexible_non_local_allowed": False,
             "note": "Shanghai (sample): flexible enrolment needs a Shanghai household registration",
             "updated_at": seeded, "updated_by": "seed"},
            {"region_code": "120000", "effective_from": date(2020, 1, 1), "flexible_non_local_allowed": False,
             "note": "Tianjin (sample): local household registration required",
             "updated_at": seeded, "updated_by": "seed"},
            {"region_code": "120000", "effective_from": date(2024, 1, 1), "flexible_non_local_allowed": True,
             "note": "Tianjin (sample): household restriction lifted for flexible employees working here",
             "updated_at": seeded, "updated_by": "seed"},
            {"region_code": "320000", "effective_from": date(2020, 1, 1), "flexible_non_local_allowed": True,
             "note": "Jiangsu (sample): flexible employees may enrol where they work",
             "updated_at": seeded, "updated_by": "seed"},
        ],
    )


def downgrade() -> None:
    op.drop_table("regional_rules")
    op.drop_index("ix_person_changes_person_seq", table_name="person_changes")
    op.drop_table("person_changes")
    op.drop_index("ix_enrolments_person", table_name="enrolments")
    op.drop_index("ix_enrolments_employer_status_seq", table_name="enrolments")
    op.drop_index("ix_enrolments_employer_seq", table_name="enrolments")
    op.drop_table("enrolments")
    op.drop_table("employers")
    op.drop_table("persons")
