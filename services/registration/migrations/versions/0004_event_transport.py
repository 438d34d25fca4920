"""kernel: outbox.published_at (NATS relay) and dead_letters (parked poison events)

Revision ID: 0004_event_transport
Revises: 0003_employee_imports
"""

from services.common.kernel_migration import add_event_transport_tables, drop_event_transport_tables

revision = "0004_event_transport"
down_revision = "0003_employee_imports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_event_transport_tables()


def downgrade() -> None:
    drop_event_transport_tables()
