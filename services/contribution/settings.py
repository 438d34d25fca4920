"""Contribution service settings (`CONTRIBUTION_*`)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTRIBUTION_", extra="ignore")
    service_name = "contribution"

    # Producers this service consumes (feeds at <url>/internal/v1/events).
    registration_url: str | None = None
    review_url: str | None = None
    # An unpaid declaration (draft or awaiting payment) expires after this many minutes.
    declaration_ttl_minutes: int = Field(default=1440, gt=0, le=60 * 24 * 90)
    # How often the expiry job looks for unpaid declarations past their time.
    expiry_interval_seconds: float = Field(default=60.0, gt=0)

    # Webhooks (Standard Webhooks) of agencies and employers.
    # true: http and loopback/private addresses allowed (local receivers; `make run` sets it). Never in production.
    webhook_allow_insecure: bool = False
    # A receiver must answer within this many seconds (the whole attempt: resolving, connecting, answering).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # How often the fan-out pass reads the outbox and the sender pass looks for due deliveries.
    webhook_interval_seconds: float = Field(default=1.0, gt=0)
    # Outbox events read, or deliveries claimed, per pass; deliveries sent at once by one pass.
    webhook_batch_size: int = Field(default=100, ge=1, le=1000)
    webhook_concurrency: int = Field(default=10, ge=1, le=100)
