"""Faults on the NATS transport: the NATS server is restarted while events flow (and
events are committed while it is down, so the relay must publish them after it
returns): nothing lost, nothing applied twice, the relay and the consumer reconnect
by themselves. A nats-server of the test's own is started on a free port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from services.common.events import CloudEvent
from services.common.nats_events import NatsEvents
from tests.common.conftest import OUTBOX, Widget, kernel_app_factory

NATS_BIN = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
pytestmark = pytest.mark.skipif(NATS_BIN is None, reason="the nats-server binary is not installed")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


class NatsServer:
    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert NATS_BIN
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (a short-lived server of the test)
            [NATS_BIN, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


async def _names(svc) -> list[str]:
    async with svc.db.sessionmaker() as s:
        return list((await s.execute(select(Widget.name).order_by(Widget.id))).scalars())


async def _emit(svc, names: list[str]) -> None:
    async with svc.db.sessionmaker() as s, s.begin():
        for n in names:
            OUTBOX.emit(s, type="test.thing.v1", subject=n, data={})


async def test_nats_restarted_while_events_flow(ksvc, make_service, common_settings, tmp_path):
    producer = ksvc
    consumer_svc = await make_service("contribution", app_factory=kernel_app_factory)
    async with consumer_svc.db.engine.begin() as conn:
        await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
    server = NatsServer(tmp_path / "js")
    await server.start()
    common = common_settings.model_copy(update={
        "event_transport": "nats", "nats_url": server.url, "nats_prefix": "fault", "nats_ack_wait_seconds": 5,
    })

    async def handler(session, ev: CloudEvent) -> None:
        session.add(Widget(id_hash=ev.id, id_number="x", name=ev.subject or ""))

    prod = NatsEvents(common=common, service="registration", db=producer.db, consumers={})
    cons = NatsEvents(common=common, service="contribution", db=consumer_svc.db,
                      consumers={"registration": {"test.thing.v1": handler}}, relay=False)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(prod.run(stop)), asyncio.create_task(cons.run(stop))]
    expected = [f"e{i}" for i in range(150)]
    try:
        await _emit(producer, expected[:50])
        async with asyncio.timeout(60):
            while len(await _names(consumer_svc)) < 20:  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.05)
        server.stop()  # while events flow
        await _emit(producer, expected[50:100])  # committed while NATS is down
        await asyncio.sleep(1)
        await server.start()
        await _emit(producer, expected[100:])
        async with asyncio.timeout(90):
            while len(await _names(consumer_svc)) < 150:  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # anything applied twice would show up now
        assert await _names(consumer_svc) == expected  # each once, in order
        assert prod.relay is not None and await prod.relay.backlog() == 0
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cons.aclose()
        await prod.aclose()
        server.stop()
