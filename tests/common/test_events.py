"""The outbox feed and the polling consumer."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select, update

from services.common.events import CloudEvent, FeedConsumer, Outbox, read_feed
from services.common.models import ConsumerCursor, InboxEvent
from tests.common.conftest import Widget, kernel_app_factory
from tests.helpers import citizen, make_id_number, principal_headers

OUT = Outbox("kernel-test")


async def _emit(svc, n: int, prefix: str = "e") -> None:
    async with svc.db.sessionmaker() as s, s.begin():
        for i in range(n):
            OUT.emit(s, type="test.thing.v1", subject=f"{prefix}{i}", data={"n": i, "p": prefix})


def _auth(svc) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.app.state.internal_token}"}


class TestFeed:
    async def test_requires_the_internal_credential(self, ksvc):
        assert (await ksvc.client.get("/internal/v1/events")).status_code == 401
        r = await ksvc.client.get("/internal/v1/events", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["code"] == "internal_credential_required"

    async def test_serves_cloudevents_in_order_after_a_cursor(self, ksvc):
        await _emit(ksvc, 5)
        r = await ksvc.client.get("/internal/v1/events", params={"limit": 3}, headers=_auth(ksvc))
        assert r.status_code == 200
        page = r.json()
        assert [e["subject"] for e in page["items"]] == ["e0", "e1", "e2"]
        ev = page["items"][0]
        assert ev["specversion"] == "1.0" and ev["source"] == "/socialsec/kernel-test" and ev["type"] == "test.thing.v1"
        assert ev["id"] and ev["time"] and ev["data"] == {"n": 0, "p": "e"}
        r = await ksvc.client.get("/internal/v1/events", params={"after": page["next_cursor"]}, headers=_auth(ksvc))
        assert [e["subject"] for e in r.json()["items"]] == ["e3", "e4"]
        r2 = await ksvc.client.get("/internal/v1/events", params={"after": r.json()["next_cursor"]}, headers=_auth(ksvc))
        assert r2.json()["items"] == [] and r2.json()["next_cursor"] == r.json()["next_cursor"]

    async def test_bad_cursor_is_422(self, ksvc):
        r = await ksvc.client.get("/internal/v1/events", params={"after": "x.y"}, headers=_auth(ksvc))
        assert r.status_code == 422 and r.json()["code"] == "cursor_invalid"

    async def test_event_written_with_the_change_and_only_then(self, ksvc):
        idn = make_id_number()
        h = principal_headers("registration", citizen(idn))
        assert (await ksvc.client.post("/t/widgets", json={"id_number": idn, "name": "a"}, headers=h)).status_code == 201
        assert (await ksvc.client.post("/t/widgets", json={"id_number": idn, "name": "a"}, headers=h)).status_code == 409
        r = await ksvc.client.get("/internal/v1/events", headers=_auth(ksvc))
        assert [e["type"] for e in r.json()["items"]] == ["test.widget.created.v1"]

    async def test_never_skips_an_event_committed_after_a_newer_one(self, ksvc, backend):
        if backend != "postgresql":
            pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): seq order is commit order")
        db = ksvc.db
        t1 = db.sessionmaker()
        t2 = db.sessionmaker()
        reader = db.sessionmaker()
        try:
            await t1.begin()
            OUT.emit(t1, type="test.thing.v1", subject="first-started", data={})
            await t1.flush()  # takes the lower seq, stays open
            await t2.begin()
            OUT.emit(t2, type="test.thing.v1", subject="second-started", data={})
            await t2.flush()
            await t2.commit()  # the newer row commits first
            async with reader.begin():
                page = await read_feed(reader, after=None, limit=100)
            # A naive feed would serve "second-started" and move its cursor past "first-started".
            assert [e.subject for e in page.items] == []
            await t1.commit()
            async with reader.begin():
                page = await read_feed(reader, after=page.next_cursor, limit=100)
            assert [e.subject for e in page.items] == ["first-started", "second-started"]
        finally:
            await t1.close()
            await t2.close()
            await reader.close()


class TestConsumer:
    @pytest.fixture
    async def pair(self, ksvc, make_service):
        consumer_svc = await make_service("registration", app_factory=kernel_app_factory)
        async with consumer_svc.db.engine.begin() as conn:
            await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
        return ksvc, consumer_svc

    def _consumer(self, producer, consumer_svc, handler, batch=100):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=producer.app), base_url="http://producer")
        return FeedConsumer(
            producer="producer", base_url="http://producer", db=consumer_svc.db,
            handlers={"test.thing.v1": handler}, token=producer.app.state.internal_token,
            batch_size=batch, client=client,
        )

    @staticmethod
    async def _applied(svc) -> list[str]:
        async with svc.db.sessionmaker() as s:
            return list((await s.execute(select(Widget.name).order_by(Widget.id))).scalars())

    async def test_crash_mid_batch_applies_each_event_exactly_once_after_restart(self, pair):
        producer, consumer_svc = pair
        await _emit(producer, 6)
        crash = {"armed": True}

        async def handler(session, ev: CloudEvent) -> None:
            if ev.subject == "e3" and crash["armed"]:
                crash["armed"] = False
                raise RuntimeError("process killed")
            session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject))

        c = self._consumer(producer, consumer_svc, handler)
        with pytest.raises(RuntimeError):
            await c.poll_once()
        assert await self._applied(consumer_svc) == []  # nothing half-applied
        assert await c.current_cursor() == "0.0"
        # restart: a new consumer on the same database
        c2 = self._consumer(producer, consumer_svc, handler)
        assert await c2.drain() == 6
        assert await self._applied(consumer_svc) == ["e0", "e1", "e2", "e3", "e4", "e5"]

    async def test_replayed_events_are_harmless(self, pair):
        producer, consumer_svc = pair
        await _emit(producer, 3)

        async def handler(session, ev: CloudEvent) -> None:
            session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject))

        c = self._consumer(producer, consumer_svc, handler, batch=2)
        assert await c.drain() == 3
        async with consumer_svc.db.sessionmaker() as s, s.begin():
            await s.execute(update(ConsumerCursor).values(cursor="0.0"))
        assert await c.drain() == 0
        assert await self._applied(consumer_svc) == ["e0", "e1", "e2"]
        async with consumer_svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one() == 3
        await _emit(producer, 1, prefix="late")
        assert await c.drain() == 1
        assert (await self._applied(consumer_svc))[-1] == "late0"
