"""contribution tables: policies (seeded), read model, declarations, declared months, records, agency authorizations

Revision ID: 0002_contribution
Revises: 0001_kernel
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_contribution"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LIVE = sa.text("superseded_at IS NULL")

# ---- seed policies (sample figures, DOMAIN.md) ----------------------------------

_WORK_INJURY = {"1": 20, "2": 40, "3": 70, "4": 90, "5": 110, "6": 130, "7": 160, "8": 190}
_GRADES = [
    {"grade_fen": g, "subsidy_fen": 6000 if g >= 50000 else 3000}
    for g in (10000, 20000, 30000, 40000, 50000, 60000, 70000, 80000, 90000, 100000, 150000, 200000)
]
_FREQUENCIES = ["monthly", "quarterly", "half_yearly", "yearly"]


def _rates(employer_medical: int, flexible_medical: int) -> dict[str, dict[str, int]]:
    return {
        "pension": {"employer": 1600, "employee": 800, "individual": 2000},
        "medical": {"employer": employer_medical, "employee": 200, "individual": flexible_medical},
        "unemployment": {"employer": 50, "employee": 50, "individual": 0},
        "maternity": {"employer": 0, "employee": 0, "individual": 0},
    }


# region, from, to, average wage, lower, upper, employer medical, flexible medical, rounding
_SEEDS = [
    ("110000", "2024-07", "2025-06", 1176100, 682100, 3528300, 980, 1000, "fen_half_up"),
    ("110000", "2025-07", None, 1176100, 695700, 3528300, 980, 1000, "fen_half_up"),
    ("310000", "2024-07", "2025-06", 1230700, 738400, 3692100, 1000, 1000, "jiao_up"),
    ("310000", "2025-07", None, 1243400, 746000, 3730200, 1000, 1000, "jiao_up"),
    ("120000", "2024-01", "2024-12", 835500, 501300, 2506500, 1000, 900, "fen_half_up"),
    ("120000", "2025-01", None, 858200, 514900, 2574600, 1000, 900, "fen_half_up"),
    ("320000", "2024-01", "2024-12", 813200, 487900, 2439600, 800, 800, "fen_half_up"),
    ("320000", "2025-01", None, 832500, 499500, 2497500, 800, 800, "fen_half_up"),
]


def _index(month: str) -> int:
    y, m = month.split("-")
    return int(y) * 12 + int(m) - 1


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("effective_from", sa.String(7), nullable=False),
        sa.Column("effective_to", sa.String(7)),
        sa.Column("from_index", sa.Integer(), nullable=False),
        sa.Column("to_index", sa.Integer()),
        sa.Column("avg_wage_fen", sa.BigInteger(), nullable=False),
        sa.Column("base_lower_fen", sa.BigInteger(), nullable=False),
        sa.Column("base_upper_fen", sa.BigInteger(), nullable=False),
        sa.Column("rates", sa.JSON(), nullable=False),
        sa.Column("work_injury_rates", sa.JSON(), nullable=False),
        sa.Column("grades", sa.JSON(), nullable=False),
        sa.Column("frequencies", sa.JSON(), nullable=False),
        sa.Column("back_pay_window", sa.String(20), nullable=False),
        sa.Column("rounding", sa.String(20), nullable=False),
        sa.Column("deadline_day", sa.Integer(), nullable=False),
        sa.Column("late_fee_per_10000_per_day", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True)),
        sa.Column("superseded_by", sa.BigInteger()),
    )
    op.create_index(
        "uq_policies_live_region_from", "policies", ["region_code", "effective_from"], unique=True,
        sqlite_where=_LIVE, postgresql_where=_LIVE,
    )
    op.create_index("ix_policies_region", "policies", ["region_code", "from_index"])

    op.create_table(
        "known_employers",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("work_injury_class", sa.Integer(), nullable=False),
        sa.Column("registered_on", sa.Date()),
    )
    op.create_table(
        "known_persons",
        sa.Column("person_id", sa.String(36), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("id_masked", sa.String(32)),
        sa.Column("pensioner_from", sa.Date()),
    )
    op.create_table(
        "known_enrolments",
        sa.Column("enrolment_id", sa.String(36), primary_key=True),
        sa.Column("person_id", sa.String(36), nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("insurance_types", sa.JSON(), nullable=False),
        sa.Column("start_month", sa.String(7), nullable=False),
        sa.Column("end_month", sa.String(7)),
        sa.Column("credit_code", sa.String(18)),
        sa.Column("monthly_wage_fen", sa.BigInteger()),
    )
    op.create_index("ix_known_enrolments_person", "known_enrolments", ["id_hash", "category"])
    op.create_index("ix_known_enrolments_employer", "known_enrolments", ["credit_code", "start_month"])
    op.create_table(
        "employee_bases",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.String(7), nullable=False),
        sa.Column("base_fen", sa.BigInteger(), nullable=False),
        sa.Column("avg_monthly_wage_fen", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("credit_code", "id_hash", "effective_from", name="uq_employee_bases"),
    )

    op.create_table(
        "declarations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("person_key", sa.String(64)),
        sa.Column("person_id", sa.String(36)),
        sa.Column("credit_code", sa.String(18)),
        sa.Column("agency_credit_code", sa.String(18)),
        sa.Column("months", sa.JSON(), nullable=False),
        sa.Column("year", sa.Integer()),
        sa.Column("base_fen", sa.BigInteger()),
        sa.Column("grade_fen", sa.BigInteger()),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("subsidy_fen", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("late_fee_fen", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("late_fee_days", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("late_fee_arrears_fen", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("deadline", sa.Date()),
        sa.Column("previous_declaration_id", sa.String(36)),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("paid_at", sa.DateTime(timezone=True)),
        sa.Column("paid_payment_id", sa.String(64)),
        sa.Column("paid_channel", sa.String(20)),
        sa.Column("paid_by", sa.String(20)),
    )
    op.create_index("ix_declarations_person", "declarations", ["person_key", "created_at"])
    op.create_index("ix_declarations_employer", "declarations", ["credit_code", "created_at"])
    op.create_index("ix_declarations_open_expiry", "declarations", ["status", "expires_at"])
    op.create_table(
        "declaration_lines",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("declaration_id", sa.String(36), sa.ForeignKey("declarations.id"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("person_key", sa.String(64)),
        sa.Column("person_id", sa.String(36)),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("insurance", sa.String(20), nullable=False),
        sa.Column("payer", sa.String(20), nullable=False),
        sa.Column("base_fen", sa.BigInteger(), nullable=False),
        sa.Column("rate_bp", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_declaration_lines_declaration", "declaration_lines", ["declaration_id", "line_no"])
    op.create_table(
        "declared_months",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("declaration_id", sa.String(36), sa.ForeignKey("declarations.id"), nullable=False),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("insurance", sa.String(20), nullable=False),
        sa.UniqueConstraint("person_key", "period", "insurance", name="uq_declared_months"),
    )
    op.create_index("ix_declared_months_declaration_id", "declared_months", ["declaration_id"])
    op.create_table(
        "contribution_records",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(36)),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("insurance", sa.String(20), nullable=False),
        sa.Column("payer", sa.String(20), nullable=False),
        sa.Column("base_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_by", sa.String(20), nullable=False),
        sa.Column("credit_code", sa.String(18)),
        sa.Column("declaration_id", sa.String(36), sa.ForeignKey("declarations.id"), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("declaration_id", "person_key", "period", "insurance", "payer", name="uq_contribution_records"),
    )
    op.create_index("ix_contribution_records_person", "contribution_records", ["person_key", "period"])
    op.create_table(
        "agency_authorizations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("agency_credit_code", sa.String(18), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_agency_authorizations_agency", "agency_authorizations", ["agency_credit_code", "person_key"])
    op.create_index("ix_agency_authorizations_person", "agency_authorizations", ["person_key", "created_at"])

    _seed()


def _seed() -> None:
    """Seed policies, and announce each on the outbox so the review service learns the bands."""
    now = datetime.now(UTC)
    policies = sa.table(
        "policies",
        *(sa.column(c) for c in (
            "region_code", "effective_from", "effective_to", "from_index", "to_index", "avg_wage_fen",
            "base_lower_fen", "base_upper_fen", "back_pay_window", "rounding", "deadline_day",
            "late_fee_per_10000_per_day", "created_by",
        )),
        sa.column("rates", sa.JSON()), sa.column("work_injury_rates", sa.JSON()), sa.column("grades", sa.JSON()),
        sa.column("frequencies", sa.JSON()), sa.column("created_at", sa.DateTime(timezone=True)),
    )
    outbox = sa.table(
        "outbox",
        sa.column("event_id"), sa.column("type"), sa.column("source"), sa.column("subject"),
        sa.column("time", sa.DateTime(timezone=True)), sa.column("data", sa.JSON()),
    )
    rows, events = [], []
    for region, start, end, avg, lower, upper, emp_med, flex_med, rounding in _SEEDS:
        rows.append({
            "region_code": region, "effective_from": start, "effective_to": end,
            "from_index": _index(start), "to_index": _index(end) if end else None,
            "avg_wage_fen": avg, "base_lower_fen": lower, "base_upper_fen": upper,
            "rates": _rates(emp_med, flex_med), "work_injury_rates": _WORK_INJURY, "grades": _GRADES,
            "frequencies": _FREQUENCIES, "back_pay_window": "current_year", "rounding": rounding,
            "deadline_day": 15, "late_fee_per_10000_per_day": 5, "created_by": "seed", "created_at": now,
        })
        events.append({
            "event_id": str(uuid.uuid4()), "type": "contribution.policy.published.v1",
            "source": "/socialsec/contribution", "subject": f"{region}/{start}", "time": now,
            "data": {
                "region_code": region, "effective_from": start, "effective_to": end, "avg_wage_fen": avg,
                "base_lower_fen": lower, "base_upper_fen": upper,
            },
        })
    op.bulk_insert(policies, rows)
    op.bulk_insert(outbox, events)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE type = 'contribution.policy.published.v1' AND source = '/socialsec/contribution'")
    for name in (
        "agency_authorizations", "contribution_records", "declared_months", "declaration_lines", "declarations",
        "employee_bases", "known_enrolments", "known_persons", "known_employers", "policies",
    ):
        op.drop_table(name)
