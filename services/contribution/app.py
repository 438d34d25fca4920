"""Contribution service: policies, quotes, declarations, payments, records, certificates."""

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.contribution.api import router
from services.contribution.settings import Settings


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The contribution service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Contribution service",
        description="Policies, quotes, declarations, payments, records and certificates.",
        routers=[router],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.contribution.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
