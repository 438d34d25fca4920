"""Card service settings (`CARD_*`)."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CARD_", extra="ignore")
    service_name = "card"
