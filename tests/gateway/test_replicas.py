"""Several replicas of a service behind the gateway (`GATEWAY_<SERVICE>_URL` a comma-separated list):
round robin, a replica that refuses connections taken out without failing a request, and put
back once it answers again. Real loopback servers and the gateway's own HTTP client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from sandbox.app import create_app as create_sandbox
from sandbox.issuers import issuers_document
from sandbox.settings import SandboxSettings
from tests.conftest import KEYS
from tests.gateway.conftest import SANDBOX_URL, HostDispatch, QuietServer, Upstream, upstream_app


class Replica:
    """One fake replica of registration on a fixed loopback port, that can be stopped and started again."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.up = Upstream("registration")
        self.server: QuietServer | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        import uvicorn

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.sock = sock
        self.server = QuietServer(uvicorn.Config(upstream_app(self.up), lifespan="off", log_level="warning",
                                                 access_log=False, timeout_graceful_shutdown=1))
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.up.release.set()
            self.server.should_exit = True
            await self.task
            self.sock.close()
            self.server = self.task = None


@pytest.fixture
async def replicas_gateway(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[LifespanManager, httpx.AsyncClient]] = []
    started: list[Replica] = []

    async def make(replicas: list[Replica], **overrides: Any) -> tuple[httpx.AsyncClient, Any]:
        started.extend(replicas)
        issuers_file = tmp_path / "issuers.json"
        issuers_file.write_text(json.dumps(issuers_document(SANDBOX_URL)), encoding="utf-8")
        values: dict[str, Any] = {f"{n}_url": "http://127.0.0.1:9" for n in SERVICES}
        values.update(registration_url=", ".join(r.url for r in replicas), issuers_file=issuers_file,
                      signing_key_file=KEYS / "gateway-signing.pem", upstream_probe_seconds=0.05)
        values.update(overrides)
        jwks = HostDispatch({"sandbox": httpx.ASGITransport(app=create_sandbox(SandboxSettings(keys_dir=KEYS)))})
        app = create_app(GatewaySettings(**values), jwks_transport=jwks)
        manager = LifespanManager(app)
        await manager.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 40000)),
                                   base_url="http://gateway")
        opened.append((manager, client))
        return client, app

    yield make
    for manager, client in opened:
        await client.aclose()
        await manager.__aexit__(None, None, None)
    for replica in started:
        await replica.stop()


async def _wait_for(predicate: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time allowed")


async def test_requests_go_round_robin_over_the_replicas(replicas_gateway):
    replicas = [Replica() for _ in range(3)]
    for r in replicas:
        await r.start()
    client, _ = await replicas_gateway(replicas)
    for i in range(9):
        r = await client.post("/registration/v1/things", json={"n": i})
        assert r.status_code == 201
    assert [len(r.up.seen) for r in replicas] == [3, 3, 3]


async def test_a_replica_down_fails_no_request_and_readiness_shows_it(replicas_gateway):
    live, dead = Replica(), Replica()  # `dead` never started: its port refuses connections
    await live.start()
    client, app = await replicas_gateway([dead, live])
    answers = await asyncio.gather(*(client.post("/registration/v1/things", json={"n": i}) for i in range(20)))
    assert [a.status_code for a in answers] == [201] * 20  # POST too: nothing had been sent to the dead one
    assert len(live.up.seen) == 20
    r = await client.get("/readyz")
    assert r.status_code == 503  # the other services are not there at all in this test
    body = r.json()
    assert body["replicas"]["registration"][live.url] == "ok"
    assert body["replicas"]["registration"][dead.url] != "ok"
    assert body["upstreams"]["registration"] == "ok" and "registration" not in body["upstreams_down"]
    assert dead.url in body["replicas_down"]
    metrics = app.public.state.metrics.render().decode()
    assert f'gateway_upstream_replica_up{{replica="{dead.url}",service="registration"}} 0.0' in metrics
    assert f'gateway_upstream_replica_up{{replica="{live.url}",service="registration"}} 1.0' in metrics


async def test_a_replica_that_comes_back_takes_requests_again(replicas_gateway):
    first, second = Replica(), Replica()
    await first.start()
    await second.start()
    client, app = await replicas_gateway([first, second])
    for i in range(4):
        assert (await client.get(f"/registration/v1/things/{i}")).status_code == 200
    assert [len(first.up.seen), len(second.up.seen)] == [2, 2]

    await second.stop()
    for i in range(10):
        assert (await client.post("/registration/v1/things", json={"n": i})).status_code == 201
    assert [len(first.up.seen), len(second.up.seen)] == [12, 2]
    metrics = app.public.state.metrics.render().decode()
    assert f'gateway_upstream_replica_up{{replica="{second.url}",service="registration"}} 0.0' in metrics

    await second.start()  # on the same port: the background probe puts it back
    await _wait_for(lambda: f'replica="{second.url}",service="registration"}} 1.0'
                    in app.public.state.metrics.render().decode())
    for i in range(10):
        assert (await client.post("/registration/v1/things", json={"n": i})).status_code == 201
    assert len(first.up.seen) + len(second.up.seen) == 24 and len(second.up.seen) == 7  # 5 of the last 10


async def test_every_replica_down_is_503_and_the_first_back_is_found_at_once(replicas_gateway):
    a, b = Replica(), Replica()
    client, _ = await replicas_gateway([a, b], upstream_probe_seconds=30)  # no probe in time: requests find it
    r = await client.get("/registration/v1/things")
    assert r.status_code == 503 and r.json()["code"] == "upstream_unavailable"
    await b.start()
    r = await client.get("/registration/v1/things")
    assert r.status_code == 200 and len(b.up.seen) == 1


async def test_the_merged_document_asks_the_first_replica_that_answers_once(replicas_gateway):
    first, second, third = Replica(), Replica(), Replica()
    for r in (first, second, third):
        await r.start()
    # No probe in time: a replica the forwarding took out stays out for this test.
    client, _ = await replicas_gateway([first, second, third], openapi_cache_seconds=0, upstream_probe_seconds=30)
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and "/registration/v1/things" in r.json()["paths"]
    assert [x.up.openapi_fetches for x in (first, second, third)] == [1, 0, 0]

    await first.stop()  # refuses connections: the next replica gives the document, the third is not asked
    doc = (await client.get("/openapi.json")).json()
    assert "/registration/v1/things" in doc["paths"] and "registration" not in doc.get("x-unavailable-services", [])
    assert [x.up.openapi_fetches for x in (first, second, third)] == [1, 1, 0]

    # Once the forwarding has taken the first out, it is asked last even when it answers again.
    for i in range(3):
        assert (await client.get(f"/registration/v1/things/{i}")).status_code == 200
    await first.start()
    doc = (await client.get("/openapi.json")).json()
    assert "/registration/v1/things" in doc["paths"]
    assert [x.up.openapi_fetches for x in (first, second, third)] == [1, 2, 0]
