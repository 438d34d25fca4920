"""The stack's services say which event transport carries their events, and that it is connected."""

from __future__ import annotations

import httpx

from devtools.run import SERVICES


async def test_every_service_is_ready_on_its_event_transport(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        for name in SERVICES:
            async def ready(name: str = name) -> bool:
                r = await client.get(f"{stack.service_url(name)}/readyz")
                return r.status_code == 200 and r.json()["status"] == "ready"

            await stack.wait_until(ready, timeout=30)
            body = (await client.get(f"{stack.service_url(name)}/readyz")).json()
            assert body["events"]["transport"] == stack.rs.transport
            if stack.rs.transport == "nats":
                assert body["events"]["connection"] == "ok"
