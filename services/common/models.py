"""Kernel tables every service has: outbox, inbox, consumer cursors, idempotency keys, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import BigIntPK
from services.common.types import UTCDateTime


class KernelBase(DeclarativeBase):
    """Metadata of the kernel tables (created by each service's first migration)."""


class OutboxEvent(KernelBase):
    """An event written in the same transaction as the change it reports."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # PostgreSQL: the writing transaction's id, so the feed can hold back rows of
    # transactions that may still commit (see events.read_feed). SQLite: 0.
    txid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    event_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(120), nullable=False)
    source: Mapped[str] = mapped_column(String(120), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # When the NATS relay had JetStream's ack for it (unused by the feed transport).
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboxEvent(KernelBase):
    """An event this service has applied (so a replay is harmless)."""

    __tablename__ = "inbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    producer: Mapped[str] = mapped_column(String(60), nullable=False)
    type: Mapped[str] = mapped_column(String(120), nullable=False)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ConsumerCursor(KernelBase):
    """How far this service has read a producer's feed."""

    __tablename__ = "consumer_cursors"

    producer: Mapped[str] = mapped_column(String(60), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(60), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DeadLetter(KernelBase):
    """An event whose handler kept failing: parked with its error, the feed moved on."""

    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("event_id", name="uq_dead_letters_event_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    producer: Mapped[str] = mapped_column(String(60), nullable=False)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False)
    type: Mapped[str] = mapped_column(String(120), nullable=False)
    event: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    parked_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(KernelBase):
    """A POST's Idempotency-Key with the answer it produced, kept 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(200), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AuditEntry(KernelBase):
    """A staff (or security-relevant) action: who, what, when, why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    actor_kind: Mapped[str] = mapped_column(String(20), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    target_type: Mapped[str] = mapped_column(String(60), nullable=False)
    target_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
