"""kernel: outbox.published_at (NATS relay) and dead_letters (parked poison events)

Revision ID: 0003_event_transport
Revises: 0002_cards
"""

from services.common.kernel_migration import add_event_transport_tables, drop_event_transport_tables

revision = "0003_event_transport"
down_revision = "0002_cards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_event_transport_tables()


def downgrade() -> None:
    drop_event_transport_tables()
