"""Events through each transport: events per second from the producer's commit to the
consumer's applied transaction, and the lag from commit to applied (p50, p99).

    .venv/bin/python -m bench.events [--events 2000] [--lag-events 200] [--transport feed|nats|both]

Throughput: a backlog of committed events drained by the transport (relay + consumer
for nats). Lag: events committed one per transaction at about 20 a second, each
timed from its commit to its handler.

In-process, on fresh migrated SQLite files (or BENCH_PRODUCER_DATABASE_URL and
BENCH_CONSUMER_DATABASE_URL for PostgreSQL): a registration-shaped producer commits
events one transaction each (as requests do) while a contribution-shaped consumer
applies them with its inbox rows. `feed`: the consumer polls the producer's feed
(ASGI, no network) every 0.5 s when idle; `nats`: the outbox relay publishes to the
nats-server at SOCIALSEC_NATS_URL and a durable pull consumer applies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from services.common.events import CloudEvent, FeedConsumer, Outbox
from services.common.migrate import upgrade_async
from services.common.nats_events import NatsEvents
from services.common.settings import CommonSettings

OUT = Outbox("bench")


async def _setup(tmp: Path) -> tuple[Any, Any, CommonSettings]:
    os.environ.setdefault("SOCIALSEC_VAR_DIR", str(tmp))
    from devtools.keys import ensure_dev_keys

    ensure_dev_keys(Path(os.environ["SOCIALSEC_VAR_DIR"]))
    from services.contribution.app import create_app as contribution_app
    from services.contribution.settings import Settings as ContributionSettings
    from services.registration.app import create_app as registration_app
    from services.registration.settings import Settings as RegistrationSettings

    purl = os.environ.get("BENCH_PRODUCER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/p-{uuid.uuid4().hex[:6]}.db")
    curl = os.environ.get("BENCH_CONSUMER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/c-{uuid.uuid4().hex[:6]}.db")
    await upgrade_async("registration", purl)
    await upgrade_async("contribution", curl)
    common = CommonSettings()
    producer = registration_app(settings=RegistrationSettings(database_url=purl, migrate_on_start=False,
                                                              consumers_enabled=False), common=common)
    consumer = contribution_app(settings=ContributionSettings(database_url=curl, migrate_on_start=False,
                                                              consumers_enabled=False), common=common)
    return producer, consumer, common


async def run(transport: str, n: int, lag_events: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="events-bench-"))
    producer, consumer, common = await _setup(tmp)
    lags: list[float] = []
    state = {"target": n, "applied": 0}
    done = asyncio.Event()

    async def handler(session: Any, ev: CloudEvent) -> None:
        state["applied"] += 1
        if "t" in ev.data:
            lags.append(time.time() - float(ev.data["t"]))
        if state["applied"] >= state["target"]:
            done.set()

    # Throughput: a backlog of n committed events (100 per transaction), then the transport drains it.
    for i in range(0, n, 100):
        async with producer.state.db.sessionmaker() as s, s.begin():
            for j in range(i, min(i + 100, n)):
                OUT.emit(s, type="bench.thing.v1", subject=str(j), data={})
    handlers = {"bench.thing.v1": handler}
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    closers: list[Any] = []
    start = time.perf_counter()
    if transport == "feed":
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=producer), base_url="http://registration")
        feed = FeedConsumer(producer="registration", base_url="http://registration", db=consumer.state.db,
                            handlers=handlers, token=producer.state.internal_token)
        feed._client = client
        tasks.append(asyncio.create_task(feed.run(stop)))
        closers.append(client.aclose)
    else:
        c = common.model_copy(update={"event_transport": "nats", "nats_prefix": f"bench{uuid.uuid4().hex[:8]}"})
        prod = NatsEvents(common=c, service="registration", db=producer.state.db, consumers={})
        cons = NatsEvents(common=c, service="contribution", db=consumer.state.db,
                          consumers={"registration": handlers}, relay=False)
        tasks += [asyncio.create_task(prod.run(stop)), asyncio.create_task(cons.run(stop))]

        async def drop_stream() -> None:
            assert prod.js is not None
            await prod.js.delete_stream(prod.names.stream("registration"))
            await cons.aclose()
            await prod.aclose()

        closers.append(drop_stream)
    await asyncio.wait_for(done.wait(), timeout=900)
    rate = n / (time.perf_counter() - start)
    # Lag: events committed one per transaction at a steady pace (about 20 a second), each timed to applied.
    done.clear()
    state["target"] = n + lag_events
    for i in range(lag_events):
        async with producer.state.db.sessionmaker() as s, s.begin():
            OUT.emit(s, type="bench.thing.v1", subject=f"lag{i}", data={"t": time.time()})
        await asyncio.sleep(0.05)
    await asyncio.wait_for(done.wait(), timeout=600)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for close in closers:
        await close()
    await producer.state.db.dispose()
    await consumer.state.db.dispose()
    q = statistics.quantiles(lags, n=100)
    print(f"{transport:5s} backlog of {n}: {rate:7.0f} events/s relayed and applied;"
          f" {lag_events} paced events, commit to applied: p50 {q[49] * 1000:6.1f} ms  p99 {q[98] * 1000:6.1f} ms")


async def main(transport: str, n: int, lag_events: int) -> None:
    for t in (["feed", "nats"] if transport == "both" else [transport]):
        await run(t, n, lag_events)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--lag-events", type=int, default=200)
    ap.add_argument("--transport", choices=["feed", "nats", "both"], default="both")
    args = ap.parse_args()
    asyncio.run(main(args.transport, args.events, args.lag_events))
