"""/readyz reports the event transport and its lag, not only the database (feed transport)."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from services.common.events import Outbox
from tests.common.conftest import kernel_app_factory

OUT = Outbox("kernel-test")


async def test_feed_lag_and_an_unreachable_producer_are_reported(make_db_url, common_settings, backend):
    from services.registration.settings import Settings

    settings = Settings(database_url=make_db_url("registration"), migrate_on_start=False, consumers_enabled=False)
    app = kernel_app_factory(settings=settings, common=common_settings, clock=None)
    async with LifespanManager(app) as mgr:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://registration")
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert r.json()["events"] == {"transport": "feed", "connection": None, "relay_backlog": None, "consumers": []}

        # A consumer of a producer that does not answer: degraded, still serving (the database answers)
        from services.common.events import FeedConsumer

        down = FeedConsumer(producer="contribution", base_url="http://127.0.0.1:9", db=app.state.db, handlers={},
                            token="t")
        app.state.feed_consumers = [down]
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "degraded"
        [c] = r.json()["events"]["consumers"]
        assert c["producer"] == "contribution" and c["status"] == "unreachable"
        await down.aclose()

        # A consumer of a producer with 3 events waiting: lag 3
        async with app.state.db.sessionmaker() as s, s.begin():
            for i in range(3):
                OUT.emit(s, type="test.thing.v1", subject=f"e{i}", data={})
        self_feed = FeedConsumer(producer="self", base_url="http://self", db=app.state.db, handlers={},
                                 token=app.state.internal_token,
                                 client=httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://self"))
        app.state.feed_consumers = [self_feed]
        r = await client.get("/readyz")
        [c] = r.json()["events"]["consumers"]
        assert c["producer"] == "self" and c["status"] == "ok"
        if backend == "sqlite":  # (PostgreSQL's feed may hold rows back while other writers run on the server)
            assert c["lag"] == 3
        await self_feed.aclose()
        await client.aclose()
