"""The event transport interface: what a service's lifespan, its routes and its
readiness check need from a consumer, whichever way events travel.

Two implementations: `events.FeedConsumer` (polls a producer's HTTP feed; the
embedded default, `SOCIALSEC_EVENT_TRANSPORT=feed`) and
`nats_events.NatsConsumer` (a durable JetStream pull consumer shared by every
replica of the service, `SOCIALSEC_EVENT_TRANSPORT=nats`). Both apply an event
with its inbox row in one transaction, so a redelivered event is never applied
twice, and handlers and producers are the same for both.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable


@runtime_checkable
class EventConsumer(Protocol):
    """One consuming service's subscription to one producer's events."""

    producer: str

    async def run(self, stop: asyncio.Event) -> None:
        """Apply events until stopped; never die on a transient error."""

    async def catch_up(self, within_seconds: float) -> bool:
        """Apply what the producer has published up to now; False when it could not in time."""

    async def lag(self) -> int:
        """Events published by the producer and not yet applied here (for /readyz)."""

    async def aclose(self) -> None:
        """Give back connections."""
