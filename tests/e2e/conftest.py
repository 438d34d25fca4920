"""End to end: the real gateway, four services and sandbox on free loopback ports.

The processes start once per backend for this package (in a fresh data directory, with fresh
keys) and every e2e test talks to them through the gateway, as a mini-app would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.run import SERVICES, Ports, Stack, free_ports, prepare, stack_env
from tests.conftest import BACKENDS, _pg_admin, _pg_url


def _nats_answers(url: str) -> bool:
    from urllib.parse import urlparse

    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=1):
            return True
    except OSError:
        return False


NATS_URL = os.environ.get("SOCIALSEC_NATS_URL", "nats://127.0.0.1:4222")
# Each stack runs with the feed transport, and again with NATS JetStream when a nats-server answers.
# (CI sets TEST_REQUIRE_NATS=1: there the NATS stacks run, and fail without a server.)
TRANSPORTS = ["feed"] + (["nats"] if os.environ.get("TEST_REQUIRE_NATS") or _nats_answers(NATS_URL) else [])


@dataclass
class RunningStack:
    ports: Ports
    var_dir: Path
    stack: Stack
    transport: str = "feed"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.of(name)}"


def _delete_streams(prefix: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix):
                await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(go())


@pytest.fixture(scope="package", params=[(b, t) for b in BACKENDS for t in TRANSPORTS], ids=lambda p: f"{p[0]}-{p[1]}")
def running_stack(request: pytest.FixtureRequest) -> Iterator[RunningStack]:
    """The whole stack on SQLite files, and again on PostgreSQL (a database per service) when it is available;
    each with the feed transport and with NATS JetStream when a nats-server answers."""
    backend, transport = request.param
    var_dir = Path(tempfile.mkdtemp(prefix="socialsec-e2e-"))
    p = free_ports(6)
    ports = Ports(gateway=p[0], registration=p[1], contribution=p[2], card=p[3], review=p[4], sandbox=p[5])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_", "TEST_"))}
    databases: list[str] = []
    if backend == "postgresql":
        run = uuid.uuid4().hex[:8]
        for s in SERVICES:
            databases.append(f"socialsec_e2e_{run}_{s}")
            _pg_admin(f'CREATE DATABASE "{databases[-1]}"')
            base[f"{s.upper()}_DATABASE_URL"] = _pg_url(databases[-1])
    else:
        base.update({f"{s.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir}/{s}.db" for s in SERVICES})
    # Consumers poll slowly here on purpose: a request that needs another
    # service's latest events must get them by catching up, not by luck.
    for s in SERVICES:
        base[f"{s.upper()}_POLL_INTERVAL_SECONDS"] = "3"
        # Stacks of this package share one PostgreSQL server (100 connections by default) with the
        # replicated stack's eight processes: small pools (at most twice this) keep them all under it.
        base[f"{s.upper()}_DB_POOL_SIZE"] = "5"
    base["SANDBOX_NOTIFY_RETRY_SECONDS"] = "0.5"
    nats_prefix = f"e2e{uuid.uuid4().hex[:10]}"
    if transport == "nats":
        base.update(SOCIALSEC_EVENT_TRANSPORT="nats", SOCIALSEC_NATS_URL=NATS_URL, SOCIALSEC_NATS_PREFIX=nats_prefix)
    env = stack_env(var_dir, ports, base=base)
    env["GATEWAY_ISSUERS_FILE"] = str(var_dir / "issuers.json")
    prepare(var_dir, ports, env)
    if not (var_dir / "issuers.json").exists():
        from sandbox.issuers import write_default_issuers_file

        write_default_issuers_file(var_dir, f"http://127.0.0.1:{ports.sandbox}")
    stack = Stack(env, ports, quiet=not os.environ.get("E2E_VERBOSE"))
    stack.start()
    try:
        stack.wait_healthy(90)
        yield RunningStack(ports=ports, var_dir=var_dir, stack=stack, transport=transport)
    finally:
        stack.stop()
        if transport == "nats":
            _delete_streams(nats_prefix)
        shutil.rmtree(var_dir, ignore_errors=True)
        for name in databases:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class E2E:
    """What an e2e test holds: a client on the gateway, the sandbox, tokens."""

    def __init__(self, rs: RunningStack, client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
        self.rs = rs
        self.client = client
        self.sandbox = sandbox

    def service_url(self, name: str) -> str:
        return self.rs.url(name)

    async def token(self, issuer: str = "sandbox-alipay", **persona: Any) -> str:
        """A platform token for a persona, issued by the sandbox."""
        persona.setdefault("auth_time", int(time.time()))
        r = await self.sandbox.post("/sandbox/tokens", json={"issuer": issuer, **persona})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    async def auth(self, issuer: str = "sandbox-alipay", **persona: Any) -> dict[str, str]:
        """Authorization headers for a persona."""
        return {"Authorization": f"Bearer {await self.token(issuer, **persona)}"}

    async def wait_until(self, predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
        """Poll an async predicate (event propagation between services)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await predicate():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
async def stack(running_stack: RunningStack) -> AsyncIterator[E2E]:
    async with (
        httpx.AsyncClient(base_url=running_stack.url("gateway"), timeout=30) as client,
        httpx.AsyncClient(base_url=running_stack.url("sandbox"), timeout=30) as sandbox,
    ):
        yield E2E(running_stack, client, sandbox)
