"""Background jobs that run one pass on a schedule inside a service process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("socialsec.jobs")

BackgroundJob = Callable[[FastAPI, asyncio.Event], Coroutine[Any, Any, None]]


def periodic(
    name: str,
    one_pass: Callable[[FastAPI], Awaitable[int]],
    interval: Callable[[FastAPI], float],
    *,
    again_at_once_when_busy: bool = False,
) -> BackgroundJob:
    """A job running `one_pass` every `interval(app)` seconds until the service stops.

    A pass answers how many things it handled (logged when any). A failing pass
    (the database away, a bug on one row) is logged and tried again next round:
    the job never dies. With `again_at_once_when_busy`, a pass that handled
    something is followed at once by another (a pass works in bounded batches).
    The clock a pass reads is the application's (`app.state.clock`), so tests
    drive a pass directly, without sleeping.
    """

    async def job(app: FastAPI, stop: asyncio.Event) -> None:
        while not stop.is_set():
            handled = 0
            try:
                handled = await one_pass(app)
                if handled:
                    log.info("%s: %d handled", name, handled)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again next round", name)
            if handled and again_at_once_when_busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval(app))

    job.__name__ = name
    return job
