"""Review service: pensioner certification and the employer annual declaration."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.settings import CommonSettings
from services.review.api import router
from services.review.certification import sweep
from services.review.consumers import CONSUMERS
from services.review.settings import Settings

log = logging.getLogger("socialsec.review")


async def sweep_job(app: FastAPI, stop: asyncio.Event) -> None:
    """Run the certification date sweep on a schedule; an error is logged and retried next time."""
    interval = app.state.settings.sweep_interval_seconds
    while not stop.is_set():
        try:
            async with app.state.db.sessionmaker() as session:
                result = await sweep(session=session, clock=app.state.clock, commit_each_batch=True)
                await session.commit()
            if result.transitions:
                log.info("sweep: %d transitions, %d suspended", result.transitions, result.suspended)
        except Exception:
            log.exception("certification sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The review service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Review service",
        description="Pensioner certification and the employer annual declaration.",
        routers=[router],
        consumers=CONSUMERS,
        background_jobs=[sweep_job],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.review.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
