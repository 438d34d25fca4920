"""Review service: pensioner certification and the employer annual declaration."""

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.review.api import router
from services.review.settings import Settings


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The review service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Review service",
        description="Pensioner certification and the employer annual declaration.",
        routers=[router],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.review.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
