"""No transaction stays open across an outgoing HTTP call: the event feed's polling and catch-up.

(Opening a payment, the other outgoing call of the services, is tested in
tests/contribution/payments/test_platform_call_outside_transactions.py.)
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.common.test_events import _emit
from tests.common.test_read_model_catch_up import pair  # noqa: F401 - the fixture
from tests.helpers import citizen, make_id_number, principal_headers


def watch(feed: Any, producer: Any, consumer: Any) -> list[int]:
    """Forward the consumer's feed requests to the producer; note the consumer's connections in use at each."""
    in_use: list[int] = []
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=producer.app), base_url="http://producer")

    async def handle(request: httpx.Request) -> httpx.Response:
        in_use.append(consumer.db.engine.sync_engine.pool.checkedout())
        answer = await upstream.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())

    feed._client = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://producer")
    return in_use


async def test_polling_holds_no_connection_during_the_fetch(pair: Any) -> None:  # noqa: F811
    producer, consumer, feed = pair
    in_use = watch(feed, producer, consumer)
    await _emit(producer, 3)
    assert await feed.drain() == 3
    assert in_use and set(in_use) == {0}


async def test_a_requests_catch_up_holds_no_connection_during_the_fetch(pair: Any) -> None:  # noqa: F811
    producer, consumer, feed = pair
    in_use = watch(feed, producer, consumer)
    await _emit(producer, 2)
    assert (await consumer.client.get("/t/things/e1")).status_code == 200
    await _emit(producer, 1, prefix="f")
    headers = {**principal_headers("registration", citizen(make_id_number())), "Idempotency-Key": "note-1"}
    r = await consumer.client.post("/t/notes", json={"thing": "f0", "text": "x"}, headers=headers)
    assert r.status_code == 201
    # The refused attempt's transaction (a read for the GET, a write for the POST) ended before the fetch.
    assert in_use and set(in_use) == {0}
