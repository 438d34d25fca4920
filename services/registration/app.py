"""Registration service: insured persons, employers, employment, enrolment."""

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.registration.api import router
from services.registration.settings import Settings


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The registration service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Registration service",
        description="Insured persons, employers, employment and enrolment.",
        routers=[router],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.registration.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
