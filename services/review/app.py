"""Review service: pensioner certification and the employer annual declaration."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.jobs import periodic
from services.common.settings import CommonSettings
from services.review.api import router
from services.review.certification.service import sweep
from services.review.readmodel import CONSUMERS
from services.review.reminders import reminder_due, reminder_sending
from services.review.reminders import router as reminders_router
from services.review.settings import Settings

log = logging.getLogger("socialsec.review")


async def sweep_once(app: FastAPI) -> int:
    """One pass of the certification date sweep (each batch committed); the transitions recorded."""
    async with app.state.db.sessionmaker() as session:
        result = await sweep(session=session, clock=app.state.clock, commit_each_batch=True)
        await session.commit()
    if result.suspended:
        log.info("sweep: %d pensions suspended", result.suspended)
    return result.transitions


sweep_job = periodic("certification sweep", sweep_once, lambda app: app.state.settings.sweep_interval_seconds)


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The review service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Review service",
        description="Pensioner certification and the employer annual declaration.",
        routers=[router, reminders_router],
        consumers=CONSUMERS,
        background_jobs=[sweep_job, reminder_due, reminder_sending],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.review.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
