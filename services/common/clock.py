"""The one place services read the time from, so tests can move it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    """Wall clock; business dates are taken in Asia/Shanghai."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        return datetime.now(UTC)

    def today(self) -> date:
        """Today's business date in Asia/Shanghai."""
        return self.now().astimezone(SHANGHAI).date()

    def current_month(self) -> str:
        """This business month as YYYY-MM."""
        return self.today().strftime("%Y-%m")


class FrozenClock(Clock):
    """A clock that stands still until moved (tests, sweeps replayed by staff)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        """Jump to an instant."""
        self._at = at

    def advance(self, **delta: float) -> None:
        """Move forward by a timedelta's keyword arguments (days=, seconds=...)."""
        self._at = self._at + timedelta(**delta)


def aware(value: datetime) -> datetime:
    """A datetime read back from SQLite comes naive; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


_WALL = Clock()


def request_clock(request: Request) -> Clock:
    """The application's clock (`app.state.clock`: a `FrozenClock` in tests); the wall clock
    for an application that has none."""
    clock: Clock = getattr(request.app.state, "clock", None) or _WALL
    return clock


# A route's clock: `clock: ClockDep`.
ClockDep = Annotated[Clock, Depends(request_clock)]
