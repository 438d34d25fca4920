"""family service: family_bindings (a citizen's relatives, pending until an adult accepts)

Revision ID: 0005_family_bindings
Revises: 0004_reminders
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_family_bindings"
down_revision = "0004_reminders"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "family_bindings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("holder_hash", sa.String(64), nullable=False),
        sa.Column("holder_id_number", sa.String(255), nullable=False),
        sa.Column("holder_name", sa.String(255), nullable=False),
        sa.Column("relative_hash", sa.String(64), nullable=False),
        sa.Column("relative_id_number", sa.String(255), nullable=False),
        sa.Column("relative_name", sa.String(255), nullable=False),
        sa.Column("relation", sa.String(20), nullable=False),
        sa.Column("relative_minor", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("slot_key", sa.String(80), unique=True),
        sa.Column("pair_key", sa.String(140), unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("accepted_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("ended_by", sa.String(20)),
    )
    op.create_index("ix_family_bindings_holder", "family_bindings", ["holder_hash", "created_at"])
    op.create_index("ix_family_bindings_relative", "family_bindings", ["relative_hash", "status"])


def downgrade() -> None:
    op.drop_index("ix_family_bindings_relative", table_name="family_bindings")
    op.drop_index("ix_family_bindings_holder", table_name="family_bindings")
    op.drop_table("family_bindings")
