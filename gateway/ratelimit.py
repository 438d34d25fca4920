"""Rate limits per principal and per client address: sliding-window counters.

Memory storage by default (one gateway process): counted here, in a dict, with the
same sliding-window-counter rule as the `limits` library (its asyncio memory storage
cost the gateway about a sixth of its own per-request work). `redis://...` shares the
counters between gateway replicas through `limits`. A storage failure lets traffic
through (logged): the limiter protects the services, it must not become the outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger("socialsec.gateway.ratelimit")


def async_storage_uri(uri: str) -> str:
    """The `limits` asyncio storage URI for a configured one (`memory://` -> `async+memory://`)."""
    return uri if uri.startswith("async+") else f"async+{uri}"


class MemoryWindows:
    """Sliding-window counters in this process: a window's count is the previous window's, weighted by
    the part of it still inside the sliding period, plus the current window's."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, previous, current]
        self.next_sweep = 0.0

    def hit(self, scope: str, key: str, amount: int, period: float) -> int | None:
        """Count one request; None when allowed, else the whole seconds until one would be."""
        now = self.now()
        start = now - now % period
        w = self.windows.get((scope, key))
        if w is None:
            w = self.windows[(scope, key)] = [start, 0.0, 0.0]
        elif w[0] != start:
            w[1] = w[2] if start - w[0] == period else 0.0
            w[2] = 0.0
            w[0] = start
        elapsed = now - start
        if w[1] * (period - elapsed) / period + w[2] + 1 <= amount:
            w[2] += 1
            if now >= self.next_sweep:
                self._sweep(now, period)
            return None
        # Advice, capped at one period (a client asking again then is told again).
        return max(1, math.ceil(min(self._wait(w[1], w[2], amount, period, elapsed), period) - 1e-9))

    @staticmethod
    def _wait(previous: float, current: float, amount: int, period: float, elapsed: float) -> float:
        room = amount - 1
        if current <= room and previous > 0:  # the previous window's share fades within this one
            return max(0.0, period * (1 - (room - current) / previous) - elapsed)
        # only once the current window has become the previous one and faded enough
        fade = period * (1 - room / current) if current > 0 else 0.0
        return period - elapsed + max(0.0, fade)

    def _sweep(self, now: float, period: float) -> None:
        """Forget keys idle for two periods (checked at most once a period)."""
        self.next_sweep = now + period
        stale = [k for k, w in self.windows.items() if now - w[0] >= 2 * period]
        for k in stale:
            del self.windows[k]


class RateLimits:
    """Two sliding-window limits; `check` answers the seconds to wait, or None when allowed."""

    def __init__(self, storage_uri: str, per_principal: str, per_address: str,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.items: dict[str, RateLimitItem] = {"principal": parse(per_principal), "address": parse(per_address)}
        self.memory: MemoryWindows | None = None
        if storage_uri.removeprefix("async+").startswith("memory://"):
            self.memory = MemoryWindows(now)
            self.periods = {scope: (item.amount, float(item.get_expiry())) for scope, item in self.items.items()}
            return
        uri = async_storage_uri(storage_uri)
        options: dict[str, str] = {}
        if uri.startswith(("async+redis://", "async+rediss://", "async+redis+")):
            options["implementation"] = "redispy"  # the `redis` package we install (limits defaults to coredis)
        storage = storage_from_string(uri, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"not an asyncio rate-limit storage: {storage_uri}")
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)

    async def check(self, scope: str, key: str) -> int | None:
        """Count one request for key; the Retry-After seconds when over the limit."""
        if self.memory is not None:
            amount, period = self.periods[scope]
            return self.memory.hit(scope, key, amount, period)
        item = self.items[scope]
        try:
            if await self.limiter.hit(item, "gw", scope, key):
                return None
            stats = await self.limiter.get_window_stats(item, "gw", scope, key)
        except Exception as exc:  # storage down: let the request through
            log.warning("rate limit storage failed: %s", exc)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))
