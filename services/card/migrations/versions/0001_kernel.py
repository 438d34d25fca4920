"""kernel tables: outbox, inbox, cursors, idempotency, audit

Revision ID: 0001_kernel
Revises:
"""

from services.common.kernel_migration import create_kernel_tables, drop_kernel_tables

revision = "0001_kernel"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables()


def downgrade() -> None:
    drop_kernel_tables()
