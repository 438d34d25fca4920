"""The kernel tables as migration operations, called from each service's first revision."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_kernel_tables() -> None:
    """Create outbox, inbox, consumer_cursors, idempotency_keys and audit_log."""
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    txid_default = sa.text("(pg_current_xact_id()::text)::bigint") if pg else sa.text("0")
    op.create_table(
        "outbox",
        sa.Column("seq", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger(), nullable=False, server_default=txid_default),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("source", sa.String(120), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_outbox_txid_seq", "outbox", ["txid", "seq"])
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("producer", sa.String(60), nullable=False),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "consumer_cursors",
        sa.Column("producer", sa.String(60), primary_key=True),
        sa.Column("cursor", sa.String(60), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("response_body", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),
    )
    op.create_index("ix_idempotency_expires", "idempotency_keys", ["expires_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(20), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_type", sa.String(60), nullable=False),
        sa.Column("target_id", sa.String(100)),
        sa.Column("reason", sa.Text()),
        sa.Column("details", sa.JSON()),
        sa.Column("request_id", sa.String(64)),
    )
    op.create_index("ix_audit_target", "audit_log", ["target_type", "target_id"])


def drop_kernel_tables() -> None:
    for name in ("audit_log", "idempotency_keys", "consumer_cursors", "inbox", "outbox"):
        op.drop_table(name)


def add_event_transport_tables() -> None:
    """The outbox's `published_at` (the NATS relay's mark) and `dead_letters` (parked events)."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["seq"],
        postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("producer", sa.String(60), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("event_id", name="uq_dead_letters_event_id"),
    )


def drop_event_transport_tables() -> None:
    op.drop_table("dead_letters")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("published_at")
