"""cards: read model, regional card rules (seeded), cards, loss reports, e-cards, QR verifications

Revision ID: 0002_cards
Revises: 0001_kernel
"""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_cards"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

# Sample regional rules (DOMAIN.md): the initial PIN is the last six digits of the
# id number by default, 123456 in some regions; Shanghai lifts a temporary loss
# after 5 days, Xi'an and Chengdu after 7. 000000 is the national fallback.
SEED_FROM = date(2020, 1, 1)
SEED_RULES = [
    # region, initial PIN rule, fixed PIN, tries before lock, temporary-loss days
    ("000000", "id_last6", None, 3, 7),
    ("110000", "id_last6", None, 3, 7),
    ("310000", "fixed", "123456", 3, 5),
    ("120000", "id_last6", None, 3, 7),
    ("320000", "fixed", "123456", 3, 7),
    ("610100", "id_last6", None, 3, 7),
    ("510100", "id_last6", None, 3, 7),
]


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("region_code", sa.String(6)),
        sa.Column("pensioner", sa.Boolean(), nullable=False),
        sa.Column("pension_from", sa.Date()),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("enrolment_id", sa.String(64), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("start_month", sa.String(7), nullable=False),
        sa.Column("end_month", sa.String(7)),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_enrolments_id_hash_open", "enrolments", ["id_hash", "open"])
    rules = op.create_table(
        "card_rules",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date()),
        sa.Column("initial_pin_rule", sa.String(20), nullable=False),
        sa.Column("initial_pin_fixed", sa.String(6)),
        sa.Column("pin_max_tries", sa.Integer(), nullable=False),
        sa.Column("temporary_loss_days", sa.Integer(), nullable=False),
        sa.Column("activation_max_mismatches", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("region_code", "effective_from", name="uq_card_rules_region_from"),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("live_key", sa.String(64)),
        sa.Column("id_number", sa.String(255), nullable=False),
        sa.Column("holder_name", sa.String(255), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("card_no", sa.String(255)),
        sa.Column("card_no_hash", sa.String(64)),
        sa.Column("bank", sa.String(60)),
        sa.Column("issued_by", sa.String(200)),
        sa.Column("replaces_card_id", sa.String(36), sa.ForeignKey("cards.id", name="fk_cards_replaces")),
        sa.Column("replaced_by_card_id", sa.String(36)),
        sa.Column("applied_at", TS, nullable=False),
        sa.Column("issued_at", TS),
        sa.Column("activated_at", TS),
        sa.Column("activation_channel", sa.String(20)),
        sa.Column("activation_branch", sa.String(100)),
        sa.Column("activation_mismatches", sa.Integer(), nullable=False),
        sa.Column("activation_locked", sa.Boolean(), nullable=False),
        sa.Column("pin_hash", sa.String(200)),
        sa.Column("initial_pin_unchanged", sa.Boolean(), nullable=False),
        sa.Column("pin_failed_tries", sa.Integer(), nullable=False),
        sa.Column("pin_locked", sa.Boolean(), nullable=False),
        sa.Column("loss_lifts_on", sa.Date()),
        sa.Column("ended_at", TS),
        sa.UniqueConstraint("live_key", name="uq_cards_live_key"),
        sa.UniqueConstraint("card_no_hash", name="uq_cards_card_no_hash"),
    )
    op.create_index("ix_cards_id_hash", "cards", ["id_hash"])
    op.create_index("ix_cards_status_applied", "cards", ["status", "applied_at", "id"])
    op.create_table(
        "loss_reports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("card_id", sa.String(36), sa.ForeignKey("cards.id", name="fk_loss_reports_card"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reported_at", TS, nullable=False),
        sa.Column("reported_by", sa.String(20), nullable=False),
        sa.Column("lifts_on", sa.Date()),
        sa.Column("lifted_at", TS),
        sa.Column("lifted_how", sa.String(20)),
        sa.Column("replacement_card_id", sa.String(36)),
    )
    op.create_index("ix_loss_reports_card_id", "loss_reports", ["card_id"])
    op.create_table(
        "ecards",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("card_id", sa.String(36), sa.ForeignKey("cards.id", name="fk_ecards_card"), nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.UniqueConstraint("card_id", "platform", name="uq_ecards_card_platform"),
    )
    op.create_table(
        "qr_verifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(36), sa.ForeignKey("cards.id", name="fk_qr_verifications_card"), nullable=False),
        sa.Column("ecard_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("verified_at", TS, nullable=False),
        sa.UniqueConstraint("nonce", name="uq_qr_verifications_nonce"),
    )
    seeded_at = datetime(2020, 1, 1, tzinfo=UTC)
    op.bulk_insert(
        rules,
        [
            {
                "region_code": region, "effective_from": SEED_FROM, "effective_to": None,
                "initial_pin_rule": rule, "initial_pin_fixed": fixed, "pin_max_tries": tries,
                "temporary_loss_days": days, "activation_max_mismatches": 5,
                "created_at": seeded_at, "created_by": "seed",
            }
            for region, rule, fixed, tries, days in SEED_RULES
        ],
    )


def downgrade() -> None:
    op.drop_table("qr_verifications")
    op.drop_table("ecards")
    op.drop_table("loss_reports")
    op.drop_table("cards")
    op.drop_table("card_rules")
    op.drop_table("enrolments")
    op.drop_table("persons")
