"""A refusal read from a read model is retried once after the consumer catches up.

A citizen enrols in one service and at once acts in another: the second must not
refuse because its consumer has not polled the first one's feed yet.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.common.app import create_service_app
from services.common.db import DbSession
from services.common.errors import DomainError
from services.common.events import CloudEvent, FeedConsumer, ReadModelRoute
from services.common.models import IdempotencyKey
from services.common.principal import Principal, require
from tests.common.conftest import Widget
from tests.common.test_events import _emit
from tests.helpers import citizen, make_id_number, principal_headers


class NotSeenYet(DomainError):
    status = 422
    code = "thing_not_seen"
    title_zh = "尚无此记录"
    title_en = "Not known here"
    read_model = "producer"


class OwnRefusal(DomainError):
    status = 409
    code = "own_refusal"
    read_model = None


class NoteIn(BaseModel):
    thing: str = Field(min_length=1, max_length=20)
    text: str = Field(min_length=1, max_length=50)


calls: dict[str, int] = {}
router = APIRouter(prefix="/t", route_class=ReadModelRoute)


async def _known(session: Any, name: str) -> bool:
    return (await session.execute(select(Widget.id).where(Widget.name == name))).first() is not None


@router.get("/things/{name}")
async def get_thing(name: str, session: DbSession) -> Any:
    calls["get"] = calls.get("get", 0) + 1
    if not await _known(session, name):
        raise NotSeenYet(params={"thing": name})
    return {"name": name}


@router.post("/notes", status_code=201)
async def add_note(body: NoteIn, request: Request, session: DbSession,
                   principal: Annotated[Principal, Depends(require("citizen"))]) -> Any:
    calls["post"] = calls.get("post", 0) + 1

    if not await _known(session, body.thing):
        raise NotSeenYet(params={"thing": body.thing})
    return {"thing": body.thing, "text": body.text}


@router.get("/own")
async def own(session: DbSession) -> Any:
    calls["own"] = calls.get("own", 0) + 1
    raise OwnRefusal()


def consumer_app(settings: Any, common: Any, clock: Any) -> Any:
    return create_service_app(settings=settings, common=common, clock=clock, title="consumer", description="consumer",
                              routers=[router])


async def _apply(session: Any, ev: CloudEvent) -> None:
    session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject))


@pytest.fixture
async def pair(ksvc: Any, make_service: Any) -> Any:
    calls.clear()
    consumer = await make_service("registration", app_factory=consumer_app, catch_up_timeout_seconds=1.0)
    async with consumer.db.engine.begin() as conn:
        await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
    feed = FeedConsumer(
        producer="producer", base_url="http://producer", db=consumer.db, handlers={"test.thing.v1": _apply},
        token=ksvc.app.state.internal_token,
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=ksvc.app), base_url="http://producer"),
    )
    consumer.app.state.feed_consumers = [feed]
    yield ksvc, consumer, feed
    await feed.aclose()


async def _widgets(svc: Any) -> int:
    async with svc.db.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(Widget))).scalar_one()


async def test_published_but_not_yet_polled_is_found_after_catching_up(pair: Any) -> None:
    producer, consumer, _ = pair
    await _emit(producer, 3)  # e0, e1, e2 on the producer's feed; the consumer has not polled
    r = await consumer.client.get("/t/things/e2")
    assert r.status_code == 200 and r.json() == {"name": "e2"}
    assert calls["get"] == 2  # refused once, then answered after the catch-up
    assert await _widgets(consumer) == 3  # the whole feed was applied, once
    r = await consumer.client.get("/t/things/e0")
    assert r.status_code == 200 and calls["get"] == 3  # now known: no second catch-up


async def test_a_refusal_that_stands_after_catching_up_is_the_answer(pair: Any) -> None:
    producer, consumer, feed = pair
    await _emit(producer, 1)
    r = await consumer.client.get("/t/things/unknown")
    assert r.status_code == 422 and r.json()["code"] == "thing_not_seen" and r.json()["thing"] == "unknown"
    assert calls["get"] == 2
    assert await _widgets(consumer) == 1 and await feed.current_cursor() != "0.0"


async def test_the_body_and_idempotency_key_survive_the_retry(pair: Any) -> None:
    producer, consumer, _ = pair
    await _emit(producer, 1)
    headers = {**principal_headers("registration", citizen(make_id_number())), "Idempotency-Key": "note-1"}
    r = await consumer.client.post("/t/notes", json={"thing": "e0", "text": "你好"}, headers=headers)
    assert r.status_code == 201 and r.json() == {"thing": "e0", "text": "你好"}
    assert calls["post"] == 2
    again = await consumer.client.post("/t/notes", json={"thing": "e0", "text": "你好"}, headers=headers)
    # The replay is answered before the route runs again.
    assert again.status_code == 201 and again.json() == r.json() and calls["post"] == 2
    assert again.headers["Idempotent-Replayed"] == "true"
    async with consumer.db.sessionmaker() as s:  # the refused first attempt left no key behind
        assert (await s.execute(select(func.count()).select_from(IdempotencyKey))).scalar_one() == 1


async def test_a_producer_that_cannot_be_reached_leaves_the_refusal(pair: Any) -> None:
    producer, consumer, feed = pair

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("producer down", request=request)

    feed._client = httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="http://producer")
    started = time.monotonic()
    r = await consumer.client.get("/t/things/e0")
    assert r.status_code == 422 and r.json()["code"] == "thing_not_seen"
    assert time.monotonic() - started < 5
    assert calls["get"] == 1


async def test_a_refusal_of_the_service_own_data_is_not_retried(pair: Any) -> None:
    _, consumer, _ = pair
    r = await consumer.client.get("/t/own")
    assert r.status_code == 409 and r.json()["code"] == "own_refusal" and calls["own"] == 1
