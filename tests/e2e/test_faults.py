"""Faults end to end, as real processes on PostgreSQL (registration producing, card consuming; see
fault_stack.py): a consumer killed with SIGKILL in the middle of 1,000 events, a producer killed
between its commit and its publish, the NATS server restarted while events flow, and a long writing
transaction on the same PostgreSQL server while events flow on NATS.

They need TEST_POSTGRES_URL (skipped otherwise) and, for NATS, a nats-server with JetStream at
SOCIALSEC_NATS_URL (or the nats-server binary, for the restart). `E2E_FAULT_EVENTS` changes the
number of events (1,000 by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import NATS_URL, TRANSPORTS
from tests.e2e.fault_stack import Pair

PG_URL = os.environ.get("TEST_POSTGRES_URL")
EVENTS = int(os.environ.get("E2E_FAULT_EVENTS", "1000"))
NATS_BIN = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not PG_URL, reason="fault tests run on PostgreSQL: TEST_POSTGRES_URL")]

nats_only = pytest.mark.skipif("nats" not in TRANSPORTS, reason=f"no nats-server answers at {NATS_URL}")


@pytest.fixture
async def make_pair() -> AsyncIterator[Callable[..., Pair]]:
    pairs: list[Pair] = []
    roots: list[Path] = []

    async def make(transport: str, nats_url: str = NATS_URL, **env: str) -> Pair:
        root = Path(tempfile.mkdtemp(prefix="socialsec-faults-"))
        roots.append(root)
        assert PG_URL
        pair = Pair(root, pg_admin_url=PG_URL, transport=transport, nats_url=nats_url, env=env)
        pairs.append(pair)
        await pair.setup()
        return pair

    yield make  # type: ignore[misc]
    for pair in pairs:
        await pair.close()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


async def _assert_each_applied_once(pair: Pair, ids: list[str]) -> None:
    """Every event has its inbox row and its handler's effect once; nothing parked."""
    n = len(ids)
    assert await pair.applied() == n
    assert await pair.count("card", "SELECT count(*) FROM fault_applied") == n
    assert await pair.count("card", "SELECT count(DISTINCT event_id) FROM fault_applied") == n
    assert await pair.count("card", "SELECT count(*) FROM enrolments") == n
    assert await pair.count("card", "SELECT count(*) FROM persons") == n
    assert await pair.count("card", "SELECT count(*) FROM dead_letters") == 0
    inbox = {r for r in await _column(pair, "card", "SELECT event_id FROM inbox")}
    assert inbox == set(ids)


async def _column(pair: Pair, name: str, sql: str) -> list[str]:
    from sqlalchemy import text

    async with pair.engines[name].connect() as conn:
        return [r[0] for r in (await conn.execute(text(sql))).all()]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_consumer_killed_in_the_middle_of_a_batch_applies_every_event_once_after_restart(make_pair, transport):
    pair = await make_pair(transport)
    pair.start("registration")
    pair.start("card")
    await pair.wait_ready("registration")
    await pair.wait_ready("card")

    ids = await pair.insert_events(EVENTS)
    # Killed once it has applied some and not all (a quarter or more).
    await pair.until("card applying", lambda: _at_least(pair, EVENTS // 4), timeout=60)
    pair.kill("card")
    done_before = await pair.applied()
    assert 0 < done_before < EVENTS, done_before
    assert await pair.count("card", "SELECT count(*) FROM fault_applied") == done_before  # the open batch rolled back

    pair.start("card")
    await pair.wait_ready("card")
    took = await pair.until("every event applied", lambda: _at_least(pair, EVENTS), timeout=90)
    await asyncio.sleep(6)  # past the ack wait: anything redelivered would be applied by now
    await _assert_each_applied_once(pair, ids)
    if transport == "nats":
        assert await pair.stream_messages() == EVENTS
    print(f"\n{transport}: killed after {done_before}/{EVENTS}, the rest applied {took:.1f}s after restart")


async def _at_least(pair: Pair, n: int) -> bool:
    return await pair.applied() >= n


@nats_only
async def test_a_producer_killed_between_commit_and_publish_publishes_after_restart_once(make_pair):
    # The relay's first pass at start-up finds nothing; the next would come in an hour.
    pair = await make_pair("nats")
    pair.start("registration", SOCIALSEC_NATS_RELAY_INTERVAL_SECONDS="3600")
    pair.start("card")
    await pair.wait_ready("registration")
    await pair.wait_ready("card")
    await asyncio.sleep(0.5)  # the relay's start-up pass is over

    # Two committed events: the first never reached JetStream; the second did (the relay had its ack)
    # but the process died before marking the row published.
    ids = await pair.insert_events(2)
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        from services.common.events import CloudEvent
        from services.common.models import OutboxEvent

        async with pair.engines["registration"].connect() as conn:
            from sqlalchemy import select

            row = (await conn.execute(select(OutboxEvent.__table__).where(OutboxEvent.event_id == ids[1]))).one()
        ev = CloudEvent(id=row.event_id, source=row.source, type=row.type, time=row.time, subject=row.subject,
                        data=row.data)
        await nc.jetstream().publish(f"{pair.prefix}.socialsec.registration.{row.type}", ev.model_dump_json().encode(),
                                     stream=f"{pair.prefix}SOCIALSEC_REGISTRATION", headers={"Nats-Msg-Id": ev.id})
    finally:
        await nc.close()
    pair.kill("registration")
    unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    assert await pair.count("registration", unpublished) == 2
    assert await pair.stream_messages() == 1

    pair.start("registration")
    await pair.wait_ready("registration")
    await pair.until("both events applied", lambda: _at_least(pair, 2), timeout=30)
    await pair.until("outbox marked", lambda: _zero(pair, "registration", unpublished), timeout=10)
    await asyncio.sleep(2)
    assert await pair.stream_messages() == 2  # the republished second one was dropped as a duplicate
    await _assert_each_applied_once(pair, ids)


async def _zero(pair: Pair, name: str, sql: str) -> bool:
    return await pair.count(name, sql) == 0


class NatsServer:
    """A nats-server with JetStream of the test's own, on a free port, that can be stopped and started again."""

    def __init__(self, store: Path) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = int(s.getsockname()[1])
        s.close()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_BIN
        self.proc = subprocess.Popen([NATS_BIN, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.mark.skipif(NATS_BIN is None, reason="the nats-server binary is not installed")
async def test_nats_restarted_while_events_flow_loses_nothing_and_applies_nothing_twice(make_pair, tmp_path):
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        pair = await make_pair("nats", nats_url=server.url)
        pair.start("registration")
        pair.start("card")
        await pair.wait_ready("registration")
        await pair.wait_ready("card")
        ids: list[str] = []
        batches, size = 30, max(EVENTS // 50, 1)
        away = 0.0
        for b in range(batches):
            ids += await pair.insert_events(size, start=b * size)
            if b == 10:
                server.stop()  # events keep being committed while it is away
                stopped = time.monotonic()
                assert await pair.applied() < len(ids)
            if b == 20:
                server.start()
                away = time.monotonic() - stopped
            await asyncio.sleep(0.1)
        took = await pair.until("every event applied", lambda: _at_least(pair, len(ids)), timeout=60)
        await asyncio.sleep(2)
        await _assert_each_applied_once(pair, ids)
        assert await pair.stream_messages() == len(ids)
        assert await pair.count("registration", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        assert all(p.poll() is None for p in pair.procs.values())  # reconnected by themselves, no restart
        print(f"\n{len(ids)} events, NATS away {away:.1f}s while they were committed; all applied {took:.1f}s "
              "after the last commit")
    finally:
        server.stop()


@nats_only
async def test_a_long_writer_on_the_server_does_not_delay_events_on_nats(make_pair):
    import asyncpg
    from sqlalchemy.engine import make_url

    pair = await make_pair("nats")
    pair.start("registration")
    pair.start("card")
    await pair.wait_ready("registration")
    await pair.wait_ready("card")
    assert PG_URL
    u = make_url(PG_URL)
    writer = await asyncpg.connect(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                                   port=u.port or 5432, database=u.database or "postgres")
    hold = 8.0
    try:
        tx = writer.transaction()
        await tx.start()
        await writer.fetchval("SELECT pg_current_xact_id()")  # a writing transaction: it has an id, it stays open
        opened = time.monotonic()
        await asyncio.sleep(1)
        delays = []
        for i in range(3):
            ids = await pair.insert_events(1, start=i)
            committed = time.monotonic()
            await pair.until("event applied", lambda ids=ids: _has(pair, ids[0]), timeout=hold)
            delays.append(time.monotonic() - committed)
        assert time.monotonic() - opened < hold  # the writer was open all along
        await tx.rollback()
    finally:
        await writer.close()
    assert max(delays) < 3.0, delays
    print(f"\nnats, commit to applied with a writer open: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")


async def _has(pair: Pair, event_id: str) -> bool:
    return await pair.count("card", "SELECT count(*) FROM inbox WHERE event_id = :id", id=event_id) == 1
