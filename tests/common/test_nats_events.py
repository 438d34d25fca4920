"""Events on NATS JetStream: the outbox relay, durable pull consumers shared by replicas,
inbox + ack after commit. Against the real nats-server at SOCIALSEC_NATS_URL
(default 127.0.0.1:4222); every test uses its own stream and consumer names."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from urllib.parse import urlparse

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, update

from services.common.events import CloudEvent
from services.common.models import DeadLetter, InboxEvent, OutboxEvent
from services.common.nats_events import NatsEvents
from services.common.settings import CommonSettings
from services.common.transport import EventConsumer
from tests.common.conftest import Widget, kernel_app_factory
from tests.helpers import citizen, make_id_number, principal_headers

NATS_URL = os.environ.get("SOCIALSEC_NATS_URL", "nats://127.0.0.1:4222")


def _nats_answers() -> bool:
    u = urlparse(NATS_URL)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=1):
            return True
    except OSError:
        return False


# CI sets TEST_REQUIRE_NATS=1: there, no server is a failure, not a skip.
_REQUIRED = bool(os.environ.get("TEST_REQUIRE_NATS"))
pytestmark = pytest.mark.skipif(not _REQUIRED and not _nats_answers(),
                                reason=f"no nats-server with JetStream answers at {NATS_URL}")


@pytest.fixture
async def nats_common(common_settings: CommonSettings):
    prefix = f"t{uuid.uuid4().hex[:10]}"
    common = common_settings.model_copy(update={
        "event_transport": "nats", "nats_url": NATS_URL, "nats_prefix": prefix, "nats_ack_wait_seconds": 5,
    })
    yield common
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    for name in await js.streams_info():
        if name.config.name and name.config.name.startswith(prefix):
            await js.delete_stream(name.config.name)
    await nc.close()


async def _emit(svc, n: int, prefix: str = "e") -> list[str]:
    from tests.common.conftest import OUTBOX

    ids = []
    async with svc.db.sessionmaker() as s, s.begin():
        for i in range(n):
            ids.append(OUTBOX.emit(s, type="test.thing.v1", subject=f"{prefix}{i}", data={"n": i}).event_id)
    return ids


async def _names(svc) -> list[str]:
    async with svc.db.sessionmaker() as s:
        return list((await s.execute(select(Widget.name).order_by(Widget.id))).scalars())


@pytest.fixture
async def pair(ksvc, make_service):
    consumer_svc = await make_service("contribution", app_factory=kernel_app_factory)
    async with consumer_svc.db.engine.begin() as conn:
        await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
    return ksvc, consumer_svc


async def _handler(session, ev: CloudEvent) -> None:
    session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject or ""))


async def _stream_count(events: NatsEvents, producer: str) -> int:
    assert events.js is not None
    info = await events.js.stream_info(events.names.stream(producer))
    return int(info.state.messages)


async def _drain(consumer, rounds: int = 200) -> int:
    total = 0
    for _ in range(rounds):
        n = await consumer.poll_once(wait=0.3)
        total += n
        if n == 0 and await consumer.lag() == 0:
            break
    return total


async def test_relay_publishes_in_order_once_and_a_republish_is_dropped(pair, nats_common):
    producer, _ = pair
    relay_side = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    await relay_side.connect()
    try:
        await _emit(producer, 5)
        assert relay_side.relay is not None
        assert await relay_side.relay.backlog() == 5
        assert await relay_side.relay.publish_once() == 5
        assert await relay_side.relay.backlog() == 0
        assert await _stream_count(relay_side, "registration") == 5
        # A relay that died between JetStream's ack and its mark publishes again: dropped as a duplicate.
        async with producer.db.sessionmaker() as s, s.begin():
            await s.execute(update(OutboxEvent).values(published_at=None))
        assert await relay_side.relay.publish_once() == 5
        assert await _stream_count(relay_side, "registration") == 5
        # In outbox order, on the producer's subjects
        assert relay_side.js is not None
        sub = await relay_side.js.pull_subscribe(f"{nats_common.nats_prefix}.socialsec.registration.>", stream=relay_side.names.stream("registration"))
        msgs = await sub.fetch(5, timeout=2)
        assert [CloudEvent.model_validate_json(m.data).subject for m in msgs] == ["e0", "e1", "e2", "e3", "e4"]
        assert msgs[0].subject == f"{nats_common.nats_prefix}.socialsec.registration.test.thing.v1"
        assert msgs[0].headers and msgs[0].headers.get("Nats-Msg-Id") == CloudEvent.model_validate_json(msgs[0].data).id
    finally:
        await relay_side.aclose()


async def test_consumer_applies_each_event_once_with_its_inbox_row(pair, nats_common):
    producer, consumer_svc = pair
    prod = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=nats_common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": _handler}}, relay=False)
    await prod.connect()
    await cons.connect()
    try:
        ids = await _emit(producer, 4)
        assert prod.relay is not None
        await prod.relay.publish_once()
        consumer = cons.consumers[0]
        assert isinstance(consumer, EventConsumer)
        assert await _drain(consumer) == 4
        assert await _names(consumer_svc) == ["e0", "e1", "e2", "e3"]
        assert await consumer.lag() == 0
        # The same event delivered again (published under another message id) finds its inbox row.
        assert prod.js is not None
        again = CloudEvent(id=ids[1], source="/socialsec/kernel-test", type="test.thing.v1",
                           time="2026-01-01T00:00:00Z", subject="e1", data={"n": 1})
        await prod.js.publish(prod.names.subject("registration", "test.thing.v1"), again.model_dump_json().encode(),
                              headers={"Nats-Msg-Id": "another"})
        assert await _drain(consumer) == 0
        assert await consumer.lag() == 0
        assert await _names(consumer_svc) == ["e0", "e1", "e2", "e3"]
        async with consumer_svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one() == 4
    finally:
        await cons.aclose()
        await prod.aclose()


async def test_a_failed_apply_is_redelivered_and_applied_once_in_order(pair, nats_common):
    producer, consumer_svc = pair
    crash = {"armed": True}

    async def flaky(session, ev: CloudEvent) -> None:
        if ev.subject == "e1" and crash["armed"]:
            crash["armed"] = False
            session.add(Widget(id_hash="half-" + ev.id, id_number="x", name="half"))
            raise RuntimeError("database went away mid-apply")
        await _handler(session, ev)

    prod = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=nats_common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": flaky}}, relay=False)
    await prod.connect()
    await cons.connect()
    try:
        await _emit(producer, 3)
        assert prod.relay is not None
        await prod.relay.publish_once()
        await _drain(cons.consumers[0])
        # e2 waited for e1 (one unacked event at a time): the producer's order is kept.
        assert await _names(consumer_svc) == ["e0", "e1", "e2"]
    finally:
        await cons.aclose()
        await prod.aclose()


async def test_replicas_share_one_durable_consumer_and_divide_the_work(pair, nats_common):
    producer, consumer_svc = pair
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def handler_for(replica: str):
        async def h(session, ev: CloudEvent) -> None:
            seen[replica].append(ev.subject or "")
            await _handler(session, ev)
        return h

    prod = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    replicas = [
        NatsEvents(common=nats_common, service="contribution", db=consumer_svc.db,
                   consumers={"registration": {"test.thing.v1": handler_for(r)}}, relay=False)
        for r in ("a", "b")
    ]
    await prod.connect()
    for r in replicas:
        await r.connect()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.consumers[0].run(stop)) for r in replicas]
    try:
        await _emit(producer, 40)
        assert prod.relay is not None
        await prod.relay.publish_once()
        async with asyncio.timeout(60):
            while len(await _names(consumer_svc)) < 40:  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.1)
        names = await _names(consumer_svc)
        assert names == [f"e{i}" for i in range(40)]  # each once, in the producer's order
        assert sorted(seen["a"] + seen["b"], key=lambda s: int(s[1:])) == names  # not repeated by the second replica
        assert await replicas[0].consumers[0].lag() == 0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in replicas:
            await r.aclose()
        await prod.aclose()


async def test_catch_up_waits_for_the_consumer_loop_to_apply_what_is_pending(pair, nats_common):
    producer, consumer_svc = pair
    prod = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=nats_common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": _handler}}, relay=False)
    await prod.connect()
    stop = asyncio.Event()
    task = asyncio.create_task(cons.run(stop))
    try:
        await asyncio.wait_for(cons.ready.wait(), 10)
        await _emit(producer, 3)
        assert prod.relay is not None
        await prod.relay.publish_once()
        assert await cons.consumers[0].catch_up(10) is True
        assert await _names(consumer_svc) == ["e0", "e1", "e2"]
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await cons.aclose()
        await prod.aclose()


async def test_requests_giving_up_on_catch_up_never_leave_an_event_half_applied(pair, nats_common):
    """Many requests wait with short deadlines while events flow: none of them holds an event
    unacked, so everything is applied long before the ack wait (5 s here) could redeliver it."""
    producer, consumer_svc = pair
    prod = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=nats_common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": _handler}}, relay=False)
    await prod.connect()
    stop = asyncio.Event()
    task = asyncio.create_task(cons.run(stop))
    try:
        await asyncio.wait_for(cons.ready.wait(), 10)
        consumer = cons.consumers[0]
        assert prod.relay is not None
        for batch in range(5):
            await _emit(producer, 4, prefix=f"b{batch}-")
            await prod.relay.publish_once()
            await asyncio.gather(*(consumer.catch_up(0.01) for _ in range(30)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await consumer.catch_up(4) is True
        assert loop.time() - started < 4
        assert len(await _names(consumer_svc)) == 20
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await cons.aclose()
        await prod.aclose()


async def test_a_service_on_nats_relays_its_outbox_by_itself(make_db_url, nats_common):
    import httpx

    from services.registration.settings import Settings

    settings = Settings(database_url=make_db_url("registration"), migrate_on_start=False, consumers_enabled=True)
    app = kernel_app_factory(settings=settings, common=nats_common, clock=None)
    async with LifespanManager(app) as mgr:
        async with app.state.db.engine.begin() as conn:
            await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://registration")
        idn = make_id_number()
        r = await client.post("/t/widgets", json={"id_number": idn, "name": "a"},
                              headers=principal_headers("registration", citizen(idn)))
        assert r.status_code == 201
        events: NatsEvents = app.state.nats_events
        async with asyncio.timeout(20):
            await events.ready.wait()
            assert events.relay is not None
            while await events.relay.backlog():  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.05)
        assert await _stream_count(events, "registration") == 1
        r = await client.get("/readyz")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ready" and body["events"]["transport"] == "nats"
        assert body["events"]["connection"] == "ok" and body["events"]["relay_backlog"] == 0
        await client.aclose()


async def test_readiness_says_degraded_when_nats_cannot_be_reached(make_db_url, nats_common):
    import httpx

    from services.registration.settings import Settings

    settings = Settings(database_url=make_db_url("registration"), migrate_on_start=False, consumers_enabled=True)
    common = nats_common.model_copy(update={"nats_url": "nats://127.0.0.1:9"})  # nothing listens there
    app = kernel_app_factory(settings=settings, common=common, clock=None)
    async with LifespanManager(app) as mgr:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://registration")
        r = await client.get("/readyz")
        assert r.status_code == 200  # the database answers: requests are still served, events wait
        assert r.json()["status"] == "degraded" and r.json()["events"]["connection"] == "down"
        await client.aclose()


async def test_a_poison_event_is_parked_and_the_stream_moves_on(pair, nats_common):
    producer, consumer_svc = pair
    common = nats_common.model_copy(update={"event_max_attempts": 3, "event_retry_backoff_seconds": 0.05})

    async def poisoned(session, ev: CloudEvent) -> None:
        if ev.subject == "e1":
            raise ValueError("no such person")
        await _handler(session, ev)

    prod = NatsEvents(common=common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": poisoned}}, relay=False)
    await prod.connect()
    await cons.connect()
    try:
        await _emit(producer, 3)
        assert prod.relay is not None
        await prod.relay.publish_once()
        await _drain(cons.consumers[0])
        assert await _names(consumer_svc) == ["e0", "e2"]
        async with consumer_svc.db.sessionmaker() as s:
            [row] = (await s.execute(select(DeadLetter))).scalars().all()
        assert row.attempts == 3 and row.event["subject"] == "e1" and row.producer == "registration"
        assert "ValueError" in row.error
        assert await cons.consumers[0].lag() == 0
    finally:
        await cons.aclose()
        await prod.aclose()


async def test_with_several_producer_replicas_one_relays_at_a_time(pair, nats_common, backend):
    if backend != "postgresql":
        pytest.skip("SQLite is one process: its relay is one")
    from sqlalchemy import text

    from services.common.nats_events import RELAY_LOCK_KEY

    producer, _ = pair
    relay_side = NatsEvents(common=nats_common, service="registration", db=producer.db, consumers={})
    await relay_side.connect()
    other_replica = producer.db.sessionmaker()
    try:
        await _emit(producer, 3)
        await other_replica.begin()
        await other_replica.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY})
        assert relay_side.relay is not None
        assert await relay_side.relay.publish_once() == 0  # the other replica is relaying
        await other_replica.rollback()
        assert await relay_side.relay.publish_once() == 3
        assert await _stream_count(relay_side, "registration") == 3
    finally:
        await other_replica.close()
        await relay_side.aclose()
