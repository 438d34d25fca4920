"""Contribution service: policies, quotes, declarations, payments, records, certificates."""

import asyncio
import logging

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.contribution.api import router
from services.contribution.payments.api import router as payments_router
from services.contribution.payments.jobs import payment_closer
from services.contribution.readmodel import REGISTRATION_HANDLERS, REVIEW_HANDLERS
from services.contribution.service import expire_due_declarations
from services.contribution.settings import Settings

log = logging.getLogger("socialsec.contribution")


async def expire_declarations_job(app: FastAPI, stop: asyncio.Event) -> None:
    """Expire unpaid declarations past their time, on a schedule; never dies on an error."""
    interval = app.state.settings.expiry_interval_seconds
    while not stop.is_set():
        try:
            async with app.state.db.sessionmaker() as session, session.begin():
                count = await expire_due_declarations(session=session, now=app.state.clock.now())
            if count:
                log.info("expired %d unpaid declarations", count)
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("declaration expiry failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The contribution service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Contribution service",
        description="Policies, quotes, declarations, payments, records and certificates.",
        routers=[router, payments_router],
        consumers={"registration": REGISTRATION_HANDLERS, "review": REVIEW_HANDLERS},
        background_jobs=[expire_declarations_job, payment_closer],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.contribution.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
