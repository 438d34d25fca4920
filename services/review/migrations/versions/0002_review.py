"""review tables: regional rules (seeded), pensioners, certifications, suspensions, roster, bands, annual declarations

Revision ID: 0002_review
Revises: 0001_kernel
"""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_review"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None

BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    rules = op.create_table(
        "review_rules",
        sa.Column("id", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("certification_months", sa.Integer, nullable=False),
        sa.Column("resident_certification_months", sa.Integer, nullable=False),
        sa.Column("grace_days", sa.Integer, nullable=False),
        sa.Column("declaration_deadline", sa.String(5), nullable=False),
        sa.Column("bases_from_month", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(80), nullable=False),
        sa.UniqueConstraint("region_code", "effective_from", name="uq_review_rules_region_from"),
    )
    op.create_table(
        "pensioners",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("id_masked", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("scheme", sa.String(20), nullable=False),
        sa.Column("from_date", sa.Date, nullable=False),
        sa.Column("last_certified_on", sa.Date),
        sa.Column("recorded_state", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "certifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("person_id", sa.String(64), nullable=False, index=True),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("certified_on", sa.Date, nullable=False),
        sa.Column("evidence", sa.Text),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "suspensions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("person_id", sa.String(64), nullable=False, index=True),
        sa.Column("open_key", sa.String(64), unique=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("from_month", sa.String(7), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumed_from_month", sa.String(7)),
        sa.Column("back_pay_months", sa.JSON),
        sa.Column("resumed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "state_transitions",
        sa.Column("id", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.String(64), nullable=False, index=True),
        sa.Column("from_state", sa.String(20), nullable=False),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("due_by", sa.Date, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(40), nullable=False),
    )
    op.create_table(
        "employers",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("registered_on", sa.Date, nullable=False),
    )
    op.create_table(
        "roster",
        sa.Column("id", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("enrolment_id", sa.String(64), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False, index=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("id_masked", sa.String(32), nullable=False),
        sa.Column("id_number_enc", sa.String(255), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("hire_date", sa.Date),
        sa.Column("start_month", sa.String(7), nullable=False),
        sa.Column("last_month", sa.String(7)),
        sa.Column("monthly_wage_fen", sa.Integer),
        sa.UniqueConstraint("enrolment_id", name="uq_roster_enrolment"),
    )
    op.create_table(
        "bands",
        sa.Column("id", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("effective_from", sa.String(7), nullable=False),
        sa.Column("effective_to", sa.String(7)),
        sa.Column("avg_wage_fen", sa.Integer, nullable=False),
        sa.Column("base_lower_fen", sa.Integer, nullable=False),
        sa.Column("base_upper_fen", sa.Integer, nullable=False),
        sa.UniqueConstraint("region_code", "effective_from", name="uq_bands_region_from"),
    )
    op.create_table(
        "annual_declarations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("headcount", sa.Integer, nullable=False),
        sa.Column("total_wages_fen", sa.BigInteger, nullable=False),
        sa.Column("invalid_lines", sa.Integer, nullable=False),
        sa.Column("effective_from", sa.String(7), nullable=False),
        sa.Column("overdue", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON),
        sa.Column("decided_by", sa.String(120)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("history", sa.JSON),
        sa.UniqueConstraint("credit_code", "year", name="uq_annual_declarations_employer_year"),
    )
    op.create_table(
        "declaration_lines",
        sa.Column("id", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("declaration_id", sa.String(36), nullable=False, index=True),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("id_masked", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("avg_monthly_wage_fen", sa.Integer, nullable=False),
        sa.Column("new_base_fen", sa.Integer, nullable=False),
        sa.UniqueConstraint("declaration_id", "id_hash", name="uq_declaration_lines_person"),
    )
    # Sample seed rules (DOMAIN.md sample regions); staff admins change them through the API.
    seeded = datetime(2020, 1, 1, tzinfo=UTC)
    common = {"effective_from": date(2020, 1, 1), "updated_at": seeded, "updated_by": "seed"}
    op.bulk_insert(
        rules,
        [
            {"region_code": "110000", "certification_months": 12, "resident_certification_months": 12,
             "grace_days": 60, "declaration_deadline": "05-31", "bases_from_month": 7, **common},
            {"region_code": "310000", "certification_months": 12, "resident_certification_months": 6,
             "grace_days": 30, "declaration_deadline": "06-15", "bases_from_month": 7, **common},
            {"region_code": "120000", "certification_months": 12, "resident_certification_months": 12,
             "grace_days": 90, "declaration_deadline": "03-31", "bases_from_month": 1, **common},
            {"region_code": "320000", "certification_months": 12, "resident_certification_months": 6,
             "grace_days": 90, "declaration_deadline": "04-30", "bases_from_month": 1, **common},
        ],
    )


def downgrade() -> None:
    for t in (
        "declaration_lines", "annual_declarations", "bands", "roster", "employers",
        "state_transitions", "suspensions", "certifications", "pensioners", "review_rules",
    ):
        op.drop_table(t)
