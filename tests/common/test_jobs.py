"""Scheduled background passes: never die on an error, drain a backlog at once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.common.jobs import periodic


async def test_a_failing_pass_is_logged_and_the_next_round_runs(caplog: Any) -> None:
    stop = asyncio.Event()
    passes: list[int] = []

    async def one_pass(app: Any) -> int:
        passes.append(len(passes) + 1)
        if len(passes) == 1:
            raise RuntimeError("database away")
        if len(passes) == 3:
            stop.set()
        return 2

    with caplog.at_level(logging.INFO, logger="socialsec.jobs"):
        await asyncio.wait_for(periodic("lifting", one_pass, lambda app: 0)(None, stop), timeout=30)  # type: ignore[arg-type]
    assert passes == [1, 2, 3]
    assert "lifting failed" in caplog.text and "lifting: 2 handled" in caplog.text


async def test_a_busy_pass_is_followed_at_once_not_after_the_interval() -> None:
    stop = asyncio.Event()
    backlog = [200, 200, 17, 0]

    async def one_pass(app: Any) -> int:
        handled = backlog.pop(0)
        if not backlog:
            stop.set()
        return handled

    # An hour between rounds: only passes that follow at once can empty the backlog.
    job = periodic("expiry", one_pass, lambda app: 3600, again_at_once_when_busy=True)
    await asyncio.wait_for(job(None, stop), timeout=30)  # type: ignore[arg-type]
    assert backlog == []


async def test_workers_on_one_database_take_turns(make_db_url: Any) -> None:
    """Two workers (or replicas) of a service: one pass at a time, and every pass still happens."""
    from types import SimpleNamespace

    from services.common.db import Database

    url = make_db_url("card")
    workers = [SimpleNamespace(state=SimpleNamespace(db=Database(url))) for _ in range(2)]
    stop = asyncio.Event()
    running: list[int] = []
    overlaps: list[int] = []
    passes: list[int] = []

    def one_pass_of(worker: int) -> Any:
        async def one_pass(app: Any) -> int:
            running.append(worker)
            if len(running) > 1:
                overlaps.append(len(running))
            try:
                await asyncio.sleep(0.02)  # a pass takes a while: the other worker's rounds come meanwhile
                passes.append(worker)
                if len(passes) == 1:
                    raise RuntimeError("a failing pass gives its turn back")
                if len(passes) >= 12:
                    stop.set()
                return 1
            finally:
                running.remove(worker)

        return one_pass

    try:
        jobs = [periodic("sweep", one_pass_of(i), lambda app: 0.005)(w, stop) for i, w in enumerate(workers)]  # type: ignore[arg-type]
        await asyncio.wait_for(asyncio.gather(*jobs), timeout=60)
    finally:
        for w in workers:
            await w.state.db.dispose()
    assert overlaps == []
    assert len(passes) >= 12
