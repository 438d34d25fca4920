"""family: bindings read from card's events, who paid a payment (a bound relative's declaration: family)

Revision ID: 0009_family_bindings
Revises: 0008_refunds_reconciliation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_family_bindings"
down_revision = "0008_refunds_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "family_bindings",
        sa.Column("binding_id", sa.String(36), primary_key=True),
        sa.Column("holder_id_hash", sa.String(64), nullable=False),
        sa.Column("relative_id_hash", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True)),
        sa.Column("unbound_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_family_bindings_pair", "family_bindings", ["holder_id_hash", "relative_id_hash", "active"])
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("paid_by", sa.String(20)))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("paid_by")
    op.drop_index("ix_family_bindings_pair", table_name="family_bindings")
    op.drop_table("family_bindings")
