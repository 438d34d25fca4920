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
