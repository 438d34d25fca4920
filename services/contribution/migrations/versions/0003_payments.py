"""payments: payments (one open per declaration), notification log, certificates

Revision ID: 0003_payments
Revises: 0002_contribution
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_payments"
down_revision = "0002_contribution"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("declaration_id", sa.String(36), sa.ForeignKey("declarations.id"), nullable=False),
        sa.Column("open_declaration_id", sa.String(36), nullable=True),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("payer_ref", sa.String(128), nullable=False),
        sa.Column("prepay_id", sa.String(64)),
        sa.Column("platform_trade_no", sa.String(64)),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("paid_amount_fen", sa.BigInteger()),
        sa.Column("flag", sa.String(40)),
        sa.Column("certificate_code", sa.String(40)),
        sa.Column("holder_name", sa.String(255)),
        sa.Column("holder_id_masked", sa.String(32)),
        sa.UniqueConstraint("open_declaration_id", name="uq_payments_open_declaration"),
        sa.UniqueConstraint("out_trade_no", name="uq_payments_out_trade_no"),
        sa.UniqueConstraint("certificate_code", name="uq_payments_certificate_code"),
    )
    op.create_index("ix_payments_declaration", "payments", ["declaration_id", "opened_at"])
    op.create_index("ix_payments_status_closes", "payments", ["status", "closes_at"])
    op.create_table(
        "payment_notifications",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("out_trade_no", sa.String(64)),
        sa.Column("platform_trade_no", sa.String(64)),
        sa.Column("notify_id", sa.String(128)),
        sa.Column("trade_status", sa.String(40)),
        sa.Column("amount_fen", sa.BigInteger()),
        sa.Column("payment_id", sa.String(36)),
        sa.Column("headers", sa.JSON()),
        sa.Column("raw", sa.Text(), nullable=False),
    )
    op.create_index("ix_payment_notifications_trade", "payment_notifications", ["out_trade_no", "received_at"])
    op.create_table(
        "payment_certificates",
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("payment_id", sa.String(36), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("declaration_id", sa.String(36), nullable=False),
        sa.Column("holder_name", sa.String(255)),
        sa.Column("holder_id_masked", sa.String(32)),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("months", sa.JSON(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("platform_trade_no", sa.String(64)),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("payment_id", name="uq_payment_certificates_payment"),
    )


def downgrade() -> None:
    op.drop_table("payment_certificates")
    op.drop_index("ix_payment_notifications_trade", table_name="payment_notifications")
    op.drop_table("payment_notifications")
    op.drop_index("ix_payments_status_closes", table_name="payments")
    op.drop_index("ix_payments_declaration", table_name="payments")
    op.drop_table("payments")
