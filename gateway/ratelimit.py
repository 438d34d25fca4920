"""Rate limits with the `limits` library: per principal and per client address.

Memory storage by default (one gateway process); `redis://...` shares the counters
between gateway replicas. A storage failure lets traffic through (logged): the
limiter protects the services, it must not become the outage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger("socialsec.gateway.ratelimit")


def async_storage_uri(uri: str) -> str:
    """The `limits` asyncio storage URI for a configured one (`memory://` -> `async+memory://`)."""
    return uri if uri.startswith("async+") else f"async+{uri}"


class RateLimits:
    """Two sliding-window limits; `check` answers the seconds to wait, or None when allowed."""

    def __init__(self, storage_uri: str, per_principal: str, per_address: str) -> None:
        uri = async_storage_uri(storage_uri)
        options: dict[str, str] = {}
        if uri.startswith(("async+redis://", "async+rediss://", "async+redis+")):
            options["implementation"] = "redispy"  # the `redis` package we install (limits defaults to coredis)
        storage = storage_from_string(uri, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"not an asyncio rate-limit storage: {storage_uri}")
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.items: dict[str, RateLimitItem] = {"principal": parse(per_principal), "address": parse(per_address)}

    async def check(self, scope: str, key: str) -> int | None:
        """Count one request for key; the Retry-After seconds when over the limit."""
        item = self.items[scope]
        try:
            if await self.limiter.hit(item, "gw", scope, key):
                return None
            stats = await self.limiter.get_window_stats(item, "gw", scope, key)
        except Exception as exc:  # storage down: let the request through
            log.warning("rate limit storage failed: %s", exc)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))
