"""Poison events on the feed transport: parked after N failures, the feed moves on,
staff admins list and replay them; a metric counts them. (NATS: test_nats_events.py.)"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.common.events import CloudEvent, FeedConsumer, Outbox
from services.common.models import DeadLetter, InboxEvent
from tests.common.conftest import Widget, kernel_app_factory
from tests.helpers import citizen, make_id_number, principal_headers, staff

OUT = Outbox("kernel-test")
POISON = {"on": True}


async def poisoned(session, ev: CloudEvent) -> None:
    if ev.subject == "e1" and POISON["on"]:
        raise ValueError("no employer 91110105MA0000001 for person 110105199001010010")
    session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject or ""))


@pytest.fixture
async def pair(ksvc, make_service):
    consumer_svc = await make_service("contribution", app_factory=kernel_app_factory)
    async with consumer_svc.db.engine.begin() as conn:
        await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
    consumer_svc.app.state.consumer_handlers = {"producer": {"test.thing.v1": poisoned}}
    POISON["on"] = True
    return ksvc, consumer_svc


def _metric(service: str, producer: str) -> float:
    return REGISTRY.get_sample_value(
        "socialsec_events_dead_lettered_total", {"service": service, "producer": producer}
    ) or 0.0


async def _names(svc) -> list[str]:
    async with svc.db.sessionmaker() as s:
        return list((await s.execute(select(Widget.name).order_by(Widget.id))).scalars())


async def test_a_poison_event_is_parked_and_the_feed_moves_on_then_replayed(pair):
    producer, consumer_svc = pair
    async with producer.db.sessionmaker() as s, s.begin():
        for i in range(3):
            OUT.emit(s, type="test.thing.v1", subject=f"e{i}", data={"n": i})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=producer.app), base_url="http://producer")
    c = FeedConsumer(producer="producer", base_url="http://producer", db=consumer_svc.db,
                     handlers={"test.thing.v1": poisoned}, token=producer.app.state.internal_token,
                     client=client, max_attempts=3, service="contribution")
    before = _metric("contribution", "producer")
    # (On PostgreSQL the feed waits for every writing transaction on the server: poll until served.)
    failures = 0
    async with asyncio.timeout(60):
        while failures < 3:
            try:
                await c.poll_once()
            except ValueError:
                failures += 1
                assert await _names(consumer_svc) == []  # nothing half-applied while it is retried
            else:
                await asyncio.sleep(0.2)
        while await _names(consumer_svc) != ["e0", "e2"]:  # the third failure parked it: e0 and e2 are applied
            await c.poll_once()
            await asyncio.sleep(0.2)
    assert _metric("contribution", "producer") == before + 1

    admin = principal_headers("contribution", staff("admin"))
    r = await consumer_svc.client.get("/contribution/v1/ops/dead-letters", headers=admin)
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["type"] == "test.thing.v1" and item["attempts"] == 3 and item["replayed_at"] is None
    assert item["event"]["subject"] == "e1" and item["producer"] == "producer"
    assert "ValueError" in item["error"] and "110105199001010010" not in item["error"]
    # Only staff admins
    r = await consumer_svc.client.get("/contribution/v1/ops/dead-letters",
                                      headers=principal_headers("contribution", staff("operator")))
    assert r.status_code == 403
    idn = make_id_number()
    r = await consumer_svc.client.get("/contribution/v1/ops/dead-letters",
                                      headers=principal_headers("contribution", citizen(idn)))
    assert r.status_code == 403

    # Replay while the cause remains: refused, still parked, the new error kept
    url = f"/contribution/v1/ops/dead-letters/{item['id']}/replay"
    r = await consumer_svc.client.post(url, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "dead_letter_replay_failed"
    # The cause fixed (the missing read-model row arrives, a handler bug is deployed): replay applies it once
    POISON["on"] = False
    r = await consumer_svc.client.post(url, headers=admin)
    assert r.status_code == 200 and r.json()["replayed_at"] is not None
    assert sorted(await _names(consumer_svc)) == ["e0", "e1", "e2"]
    r = await consumer_svc.client.post(url, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "dead_letter_already_replayed"
    r = await consumer_svc.client.get("/contribution/v1/ops/dead-letters", params={"replayed": "false"}, headers=admin)
    assert r.json()["items"] == []
    async with consumer_svc.db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one() == 3
        assert (await s.execute(select(func.count()).select_from(DeadLetter))).scalar_one() == 1
    r = await consumer_svc.client.post("/contribution/v1/ops/dead-letters/999999/replay", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "dead_letter_not_found"
    await client.aclose()
