"""Webhook request and answer bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.pagination import Page
from services.contribution.webhooks.models import DeliveryStatus, EndpointStatus

EVENTS_DOC = "payment.succeeded, declaration.expired, payment.refund_pending, payment.refunded; all of them when left out"


class WebhookIn(BaseModel):
    """The unit's endpoint: an https URL and the events it wants."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"url": "https://hr.example.com/socialsec/webhook", "events": ["payment.succeeded"]}],
    })

    url: str = Field(min_length=1, max_length=8192, description="https only, at most 2048 characters; never a private or loopback address")
    events: list[str] | None = Field(default=None, max_length=10, description=EVENTS_DOC)


class WebhookOut(BaseModel):
    """The unit's endpoint. `secret` is answered only when it is created or rotated."""

    id: str
    url: str
    events: list[str]
    status: EndpointStatus
    disabled_reason: str | None = Field(default=None, description="failing_for_5_days when disabled")
    disabled_message: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = Field(default=None, description="first failure since the last success")
    last_success_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None = None
    previous_secret_expires_at: datetime | None = Field(default=None, description="until then the old secret signs too")
    secret: str | None = Field(default=None, description="whsec_<base64>: shown once, keep it")


class DeliveryOut(BaseModel):
    """One event for the endpoint and its attempts."""

    id: str
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt")
    type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    payload: dict[str, Any] = Field(description="the body sent: type, timestamp, data")


class DeliveryPage(Page[DeliveryOut]):
    pass
