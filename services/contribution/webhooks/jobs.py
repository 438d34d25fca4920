"""Background jobs of the webhooks: the fan-out pass and the sender pass (`periodic`, like every pass)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.common.jobs import periodic
from services.contribution.webhooks.delivery import fan_out, runtime_of, send_due


async def fan_out_once(app: FastAPI) -> int:
    """One pass: the next events of the outbox into deliveries."""
    return await fan_out(db=app.state.db, now=app.state.clock.now(), batch_size=app.state.settings.webhook_batch_size)


async def send_once(app: FastAPI) -> int:
    """One pass: send the due deliveries."""
    return await send_due(db=app.state.db, rt=runtime_of(app), clock=app.state.clock)


webhook_fan_out = periodic(
    "webhook fan-out", fan_out_once, lambda app: app.state.settings.webhook_interval_seconds,
    again_at_once_when_busy=True,
)


async def webhook_sender(app: FastAPI, stop: asyncio.Event) -> None:
    """Sends due deliveries until stopped, then closes the HTTP client."""
    try:
        await periodic("webhook sending", send_once, lambda a: a.state.settings.webhook_interval_seconds,
                       again_at_once_when_busy=True)(app, stop)
    finally:
        await runtime_of(app).aclose()
