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
