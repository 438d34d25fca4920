"""A producer and a consumer as real processes, each on its own PostgreSQL database, for the fault
tests (tests/e2e/test_faults.py) and bench/long_writer.py.

registration is the producer, card the consumer (it follows registration's enrolments). Both are
started with the commands of `devtools.run` (`services.common.serve`), on the `feed` or the `nats`
transport. The card process runs the card app with its own handlers, each also adding one row to a
table `fault_applied` in the handler's transaction: an event applied twice would leave two rows
(card's own read model is idempotent and would not show it).

Events are made the cheapest real way: registration's outbox rows inserted in its database, committed
and not yet published, exactly as a request's transaction leaves them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from devtools.keys import ensure_dev_keys
from devtools.run import Ports, commands, free_ports, stack_env
from services.common.events import CloudEvent, Handler
from services.common.migrate import upgrade_async
from services.common.models import OutboxEvent
from services.contracts.registration import PERSON_ENROLLED

NAMES = ("registration", "card")
CARD_APP = "tests.e2e.fault_stack:card_app"


def _counted(handler: Handler) -> Handler:
    async def apply(session: AsyncSession, event: CloudEvent) -> None:
        await session.execute(text("INSERT INTO fault_applied (event_id) VALUES (:id)"), {"id": event.id})
        await handler(session, event)

    return apply


def __getattr__(name: str) -> FastAPI:
    # `services.common.serve card --app tests.e2e.fault_stack:card_app`: card, its handlers counted.
    if name == "card_app":
        import services.card.app as card
        from services.card.readmodel import HANDLERS

        card.HANDLERS = {t: _counted(h) for t, h in HANDLERS.items()}  # type: ignore[attr-defined,misc]
        return card.create_app()
    raise AttributeError(name)


def enrolled(run: str, i: int) -> dict[str, Any]:
    """An outbox row of registration: person i enrolled (flexible)."""
    key = hashlib.sha256(f"{run}-{i}".encode()).hexdigest()
    data = {
        "person_id": str(uuid.UUID(key[:32])), "id_hash": key, "id_masked": "110105********002X",
        "id_number_enc": "not-a-real-ciphertext", "name": "测试", "birth_date": "1980-01-01", "sex": "female",
        "enrolment_id": str(uuid.UUID(key[32:])), "category": "flexible", "region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": "2026-09",
    }
    return {"event_id": str(uuid.uuid4()), "type": PERSON_ENROLLED, "source": "/socialsec/registration",
            "subject": data["person_id"], "time": datetime.now(UTC), "data": data}


class Pair:
    """registration and card as processes; their databases; NATS stream names under a prefix of their own."""

    def __init__(self, root: Path, *, pg_admin_url: str, transport: str, nats_url: str,
                 env: dict[str, str] | None = None, keys_from: Path | None = None) -> None:
        self.root = root
        self.transport = transport
        self.nats_url = nats_url
        self.admin = make_url(pg_admin_url)
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"fault{self.run}"
        self.db_names = {n: f"socialsec_fault_{self.run}_{n}" for n in NAMES}
        self.urls = {n: self.admin.set(drivername="postgresql+asyncpg", database=d).render_as_string(hide_password=False)
                     for n, d in self.db_names.items()}
        p = free_ports(6)
        self.ports = Ports(gateway=p[0], registration=p[1], contribution=p[2], card=p[3], review=p[4], sandbox=p[5])
        (root / "keys").mkdir(parents=True, exist_ok=True)
        if keys_from is not None:
            shutil.copytree(keys_from, root / "keys", dirs_exist_ok=True)
        ensure_dev_keys(root)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_", "TEST_",
                                                                         "REGISTRATION_", "CARD_"))}
        base.update({f"{n.upper()}_DATABASE_URL": u for n, u in self.urls.items()})
        base.update(REGISTRATION_MIGRATE_ON_START="false", CARD_MIGRATE_ON_START="false", SOCIALSEC_LOG_JSON="true",
                    CARD_POLL_INTERVAL_SECONDS="0.2", CARD_FEED_BATCH_SIZE="100",
                    SOCIALSEC_EVENT_TRANSPORT=transport, SOCIALSEC_NATS_URL=nats_url, SOCIALSEC_NATS_PREFIX=self.prefix,
                    # A consumer killed holding an event gets it back after this (30 s in production).
                    SOCIALSEC_NATS_ACK_WAIT_SECONDS="5")
        base.update(env or {})
        self.env = stack_env(root, self.ports, base=base)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.engines: dict[str, AsyncEngine] = {}
        self.starts = {n: 0 for n in NAMES}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.of(name)}"

    async def _admin(self, sql: str) -> None:
        import asyncpg

        u = self.admin
        conn = await asyncpg.connect(user=u.username or "postgres", password=u.password, host=u.host or "127.0.0.1",
                                     port=u.port or 5432, database=u.database or "postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def setup(self) -> None:
        """The two databases, migrated; the card database's `fault_applied`."""
        for name in NAMES:
            await self._admin(f'CREATE DATABASE "{self.db_names[name]}"')
            await upgrade_async(name, self.urls[name])
            self.engines[name] = create_async_engine(self.urls[name], poolclass=NullPool)
        async with self.engines["card"].begin() as conn:
            await conn.execute(text("CREATE TABLE fault_applied (event_id varchar(36) NOT NULL)"))

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a process (its output under the root, one file per start)."""
        cmd = commands(self.ports, apps={"card": CARD_APP})[name]
        self.starts[name] += 1
        log = (self.root / f"{name}-{self.starts[name]}.log").open("wb")
        proc = subprocess.Popen(cmd, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no rollback but the database's own."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """The process answers, and on NATS it is connected."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.procs[name].returncode}: see {self.root}")
                try:
                    r = await client.get(f"{self.url(name)}/readyz")
                    if r.status_code == 200 and (self.transport != "nats"
                                                 or r.json()["events"]["connection"] == "ok"):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} not ready within {timeout:.0f}s: see {self.root}")

    async def scalar(self, name: str, sql: str, **params: Any) -> Any:
        async with self.engines[name].connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def count(self, name: str, sql: str, **params: Any) -> int:
        return int(await self.scalar(name, sql, **params) or 0)

    async def insert_events(self, n: int, start: int = 0) -> list[str]:
        """n enrolments in registration's outbox, committed in one transaction; their event ids."""
        rows = [enrolled(self.run, i) for i in range(start, start + n)]
        async with self.engines["registration"].begin() as conn:
            await conn.execute(insert(OutboxEvent), rows)
        return [r["event_id"] for r in rows]

    async def applied(self) -> int:
        """Events card has applied (inbox rows)."""
        return await self.count("card", "SELECT count(*) FROM inbox")

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> float:
        """Wait for a condition; the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if await check():
                return time.monotonic() - start
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout:.0f}s (logs under {self.root})")

    async def stream_messages(self) -> int:
        """Messages in registration's stream."""
        import nats

        nc = await nats.connect(self.nats_url)
        try:
            info = await nc.jetstream().stream_info(f"{self.prefix}SOCIALSEC_REGISTRATION")
            return int(info.state.messages)
        finally:
            await nc.close()

    async def close(self) -> None:
        for name in NAMES:
            self.stop(name)
        for engine in self.engines.values():
            await engine.dispose()
        if self.transport == "nats":
            try:
                import nats

                nc = await nats.connect(self.nats_url, connect_timeout=2, max_reconnect_attempts=1)
                js = nc.jetstream()
                for info in await js.streams_info():
                    if info.config.name and info.config.name.startswith(self.prefix):
                        await js.delete_stream(info.config.name)
                await nc.close()
            except Exception:  # noqa: BLE001  (a server of the test's own may be gone already)
                pass
        for name in NAMES:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.db_names[name]}" WITH (FORCE)')
