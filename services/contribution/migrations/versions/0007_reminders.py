"""reminders: one-time platform subscriptions and the messages to send

Revision ID: 0007_reminders
Revises: 0006_event_transport
"""

from services.common.reminders import create_reminder_tables, drop_reminder_tables

revision = "0007_reminders"
down_revision = "0006_event_transport"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_reminder_tables()


def downgrade() -> None:
    drop_reminder_tables()
