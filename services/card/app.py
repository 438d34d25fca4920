"""Card service: social security cards, PINs, activation, electronic cards."""

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.card.api import router
from services.card.settings import Settings


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The card service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Card service",
        description="Social security cards, PINs, activation and electronic cards.",
        routers=[router],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.card.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
