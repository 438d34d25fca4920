"""payments: asking before closing, refunds, daily reconciliation with the platforms' bills

Revision ID: 0008_refunds_reconciliation
Revises: 0007_reminders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_refunds_reconciliation"
down_revision = "0007_reminders"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("query_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_query_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("refunded_fen", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "payment_refunds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("payment_id", sa.String(36), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("out_refund_no", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("uncredit", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("platform_refund_no", sa.String(64)),
        sa.Column("platform_status", sa.String(40)),
        sa.Column("last_error", sa.String(200)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("out_refund_no", name="uq_payment_refunds_out_refund_no"),
        sa.CheckConstraint("amount_fen > 0", name="ck_payment_refunds_amount_positive"),
    )
    op.create_index("ix_payment_refunds_payment", "payment_refunds", ["payment_id", "requested_at"])
    op.create_index("ix_payment_refunds_status", "payment_refunds", ["status", "requested_at"])
    op.create_table(
        "payment_reconciliations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("bill_date", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("bill_rows", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("first_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("bill_date", "channel", name="uq_payment_reconciliations_day"),
    )
    op.create_table(
        "payment_reconciliation_items",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("reconciliation_id", sa.String(36), sa.ForeignKey("payment_reconciliations.id"), nullable=False),
        sa.Column("item_key", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=False),
        sa.Column("out_refund_no", sa.String(64)),
        sa.Column("platform_no", sa.String(64)),
        sa.Column("payment_id", sa.String(36)),
        sa.Column("refund_id", sa.String(36)),
        sa.Column("ours_fen", sa.BigInteger()),
        sa.Column("theirs_fen", sa.BigInteger()),
        sa.Column("ours_status", sa.String(20)),
        sa.Column("theirs_status", sa.String(20)),
        sa.Column("resolution", sa.String(40)),
        sa.UniqueConstraint("reconciliation_id", "item_key", name="uq_payment_reconciliation_items_key"),
    )


def downgrade() -> None:
    op.drop_table("payment_reconciliation_items")
    op.drop_table("payment_reconciliations")
    op.drop_index("ix_payment_refunds_status", table_name="payment_refunds")
    op.drop_index("ix_payment_refunds_payment", table_name="payment_refunds")
    op.drop_table("payment_refunds")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("refunded_fen")
        batch.drop_column("next_query_at")
        batch.drop_column("query_attempts")
