"""Webhook tables: the unit's endpoint, one delivery per event and endpoint, the outbox cursor."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.pii import EncryptedString
from services.common.types import UTCDateTime
from services.contribution.models import Base


class WebhookEventType(StrEnum):
    """What a unit can subscribe to."""

    payment_succeeded = "payment.succeeded"
    declaration_expired = "declaration.expired"
    payment_refund_pending = "payment.refund_pending"
    payment_refunded = "payment.refunded"


class UnitKind(StrEnum):
    agency = "agency"
    employer = "employer"


class EndpointStatus(StrEnum):
    enabled = "enabled"
    disabled = "disabled"  # failing for 5 days; a PUT enables it again


class DeliveryStatus(StrEnum):
    pending = "pending"  # due at next_attempt_at
    sending = "sending"  # claimed by a sender until claimed_until
    succeeded = "succeeded"
    failed = "failed"  # every retry used, or the endpoint disabled or deleted


class WebhookEndpoint(Base):
    """A unit's one endpoint (agency or employer, by credit code). Deleted ones are kept (deleted_at)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index(
            "uq_webhook_endpoints_live_unit", "unit_kind", "credit_code", unique=True,
            sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    unit_kind: Mapped[str] = mapped_column(String(20), nullable=False)
    credit_code: Mapped[str] = mapped_column(String(18), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    events: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    # `whsec_<base64>`, encrypted at rest with the PII cipher.
    secret: Mapped[str] = mapped_column(EncryptedString(), nullable=False)
    previous_secret: Mapped[str | None] = mapped_column(EncryptedString())
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(60))
    disabled_detail: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one endpoint: the exact body to sign and its attempts. Unique per event and endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_unit", "unit_kind", "credit_code", "created_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), nullable=False)
    unit_kind: Mapped[str] = mapped_column(String(20), nullable=False)
    credit_code: Mapped[str] = mapped_column(String(18), nullable=False)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False)  # also the `webhook-id` header
    event_type: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # the body, signed as it is
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookCursor(Base):
    """How far the fan-out pass has read this service's own outbox (a feed cursor `txid.seq`)."""

    __tablename__ = "webhook_cursor"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(60), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
