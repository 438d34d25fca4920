"""Review service settings (`REVIEW_*`)."""

from pathlib import Path

from pydantic import Field, FilePath
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings

DEFAULT_RECEIPT_FONT = Path(__file__).parent / "fonts" / "ReceiptKai-GB2312.ttf"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEW_", extra="ignore")
    service_name = "review"

    registration_url: str | None = None  # REVIEW_REGISTRATION_URL: registration's event feed
    contribution_url: str | None = None  # REVIEW_CONTRIBUTION_URL: contribution's event feed (bands)
    sweep_interval_seconds: float = Field(default=3600.0, gt=0)  # certification date sweep period
    # A TrueType (glyf) font with the CJK glyphs for receipts; must exist at start.
    receipt_font_file: FilePath = DEFAULT_RECEIPT_FONT
