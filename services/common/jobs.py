"""Background jobs that run one pass on a schedule inside a service process.

Every worker and every replica of a service runs the same jobs against the same
database. A pass is taken in turns: before a pass a worker tries to take the
job's lock (a PostgreSQL session advisory lock keyed by the job's name, or on
SQLite an exclusive `flock` on a file beside the database); a worker that does
not get it skips that round, since another is doing the work. A pass itself stays
safe if two ever run at once (each one's statements only move rows that still
need it), the lock only keeps N workers from sweeping the same rows N times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every worker runs every pass
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("socialsec.jobs")

BackgroundJob = Callable[[FastAPI, asyncio.Event], Coroutine[Any, Any, None]]


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for the job's PostgreSQL advisory lock (advisory locks are per database)."""
    return int.from_bytes(hashlib.sha256(f"socialsec.job:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def job_turn(app: Any, name: str) -> AsyncIterator[bool]:
    """Whether this worker runs the job's pass now (True) or another worker is running it (False)."""
    db = getattr(getattr(app, "state", None), "db", None)
    if db is None:
        yield True
        return
    if db.dialect == "postgresql":
        key = _advisory_key(name)
        async with db.engine.connect() as conn:
            try:
                got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar_one())
                # A session lock outlives the transaction: end it, so no snapshot stays open during the pass.
                await conn.commit()
            except BaseException:
                await conn.invalidate()
                raise
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()
                    except BaseException:
                        # Never hand a connection that may still hold the lock back to the pool.
                        await conn.invalidate()
                        raise
        return
    path = db.engine.url.database if db.dialect == "sqlite" else None
    if fcntl is None or not path or path == ":memory:":
        yield True
        return
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    fd = os.open(Path(path).with_name(f"{Path(path).name}.job-{slug}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            got = False
        else:
            got = True
        yield got
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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
    One worker at a time runs a pass (`job_turn`); the others skip the round.
    The clock a pass reads is the application's (`app.state.clock`), so tests
    drive a pass directly, without sleeping.
    """

    async def job(app: FastAPI, stop: asyncio.Event) -> None:
        while not stop.is_set():
            handled = 0
            try:
                async with job_turn(app, name) as mine:
                    if mine:
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
