"""Two replicas of each of the four services behind the gateway (`GATEWAY_<SERVICE>_URL` a list of both),
the README walk-through for many citizens at once: flexible enrolment, declaration, confirmation,
Alipay payment, the sandbox pays, the declaration is paid. At the end the databases are counted:
every payment credited once, every declaration paid once, every enrolment known once to each
consumer, and the scheduled expiry (run by both contribution replicas) expired each abandoned
declaration once.

On SQLite both processes of a service share its database file. `E2E_CITIZENS` changes the number
of citizens (50 by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.run import SERVICES, Ports, Stack, _drain, commands, free_ports, prepare, stack_env
from services.contracts.contribution import DECLARATION_EXPIRED
from tests.conftest import BACKENDS, _pg_admin, _pg_url
from tests.e2e.conftest import E2E, NATS_URL, TRANSPORTS, RunningStack, _delete_streams
from tests.helpers import make_id_number

pytestmark = pytest.mark.e2e

CITIZENS = int(os.environ.get("E2E_CITIZENS", "50"))
ABANDONED = 5  # citizens who declare and never confirm: the expiry job's work


class ReplicatedStack(RunningStack):
    databases: dict[str, str]
    extra: dict[str, subprocess.Popen[bytes]]


@pytest.fixture(scope="module", params=[(b, t) for b in BACKENDS for t in TRANSPORTS], ids=lambda p: f"{p[0]}-{p[1]}")
def replicated_stack(request: pytest.FixtureRequest) -> Iterator[ReplicatedStack]:
    backend, transport = request.param
    var_dir = Path(tempfile.mkdtemp(prefix="socialsec-replicas-"))
    p = free_ports(10)
    ports = Ports(gateway=p[0], registration=p[1], contribution=p[2], card=p[3], review=p[4], sandbox=p[5])
    second = Ports(gateway=p[0], registration=p[6], contribution=p[7], card=p[8], review=p[9], sandbox=p[5])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_", "TEST_"))}
    databases: dict[str, str] = {}
    created: list[str] = []
    if backend == "postgresql":
        run = uuid.uuid4().hex[:8]
        for s in SERVICES:
            created.append(f"socialsec_replicas_{run}_{s}")
            _pg_admin(f'CREATE DATABASE "{created[-1]}"')
            databases[s] = _pg_url(created[-1])
    else:
        databases = {s: f"sqlite+aiosqlite:///{var_dir}/{s}.db" for s in SERVICES}
    for s in SERVICES:
        base[f"{s.upper()}_DATABASE_URL"] = databases[s]
        base[f"{s.upper()}_POLL_INTERVAL_SECONDS"] = "1"
        # Eight processes on one PostgreSQL server beside the package's other stacks: at most 8 connections each.
        base[f"{s.upper()}_DB_POOL_SIZE"] = "4"
        # Both replicas behind the gateway.
        base[f"GATEWAY_{s.upper()}_URL"] = f"http://127.0.0.1:{ports.of(s)},http://127.0.0.1:{second.of(s)}"
    base["GATEWAY_UPSTREAM_PROBE_SECONDS"] = "0.5"
    # Ten processes on a shared machine, 55 citizens at once, one SQLite writer at a time per service: a
    # request may wait on the database lock for longer than the default 10 s.
    base["GATEWAY_UPSTREAM_TIMEOUT_SECONDS"] = "30"
    base["SANDBOX_NOTIFY_RETRY_SECONDS"] = "0.5"
    # Unpaid declarations expire after a minute; both contribution replicas look every second.
    base["CONTRIBUTION_DECLARATION_TTL_MINUTES"] = "1"
    base["CONTRIBUTION_EXPIRY_INTERVAL_SECONDS"] = "1"
    nats_prefix = f"e2er{uuid.uuid4().hex[:10]}"
    if transport == "nats":
        base.update(SOCIALSEC_EVENT_TRANSPORT="nats", SOCIALSEC_NATS_URL=NATS_URL, SOCIALSEC_NATS_PREFIX=nats_prefix)
    env = stack_env(var_dir, ports, base=base)
    prepare(var_dir, ports, env)
    stack = Stack(env, ports, quiet=not os.environ.get("E2E_VERBOSE"))
    extra: dict[str, subprocess.Popen[bytes]] = {}
    stack.start()
    try:
        for name, cmd in commands(second).items():
            if name in SERVICES:
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                extra[name] = proc
                threading.Thread(target=_drain, args=(name, proc.stdout), daemon=True).start()
        stack.wait_healthy(120)
        _wait_healthy_extra(extra, second)
        rs = ReplicatedStack(ports=ports, var_dir=var_dir, stack=stack, transport=transport)
        rs.databases = databases
        rs.extra = extra
        yield rs
    finally:
        for proc in extra.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in extra.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stack.stop()
        if transport == "nats":
            _delete_streams(nats_prefix)
        shutil.rmtree(var_dir, ignore_errors=True)
        for name in created:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_healthy_extra(procs: dict[str, subprocess.Popen[bytes]], ports: Ports) -> None:
    deadline = time.monotonic() + 120
    pending = set(procs)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if procs[name].poll() is not None:
                raise RuntimeError(f"second {name} exited with {procs[name].returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{ports.of(name)}/healthz", timeout=1).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"second replicas not healthy: {sorted(pending)}")


def _months() -> list[str]:
    today = datetime.now(ZoneInfo("Asia/Shanghai"))
    first = today.year * 12 + today.month - 1 - (1 if today.month > 1 else 0)
    return [f"{(first + i) // 12:04d}-{(first + i) % 12 + 1:02d}" for i in range(3)]


async def _until(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


async def _citizen(e2e: E2E, i: int, *, pay: bool) -> dict[str, Any]:
    """One citizen's walk-through; the declaration (paid, or left to expire)."""
    c = e2e.client
    idn = make_id_number("110105", f"19{80 + i % 20}0{1 + i % 9}1{i % 10}", f"{i:03d}")
    person = await e2e.auth("sandbox-alipay", kind="citizen", id_number=idn, name=f"市民{i}", realname_level=3,
                            auth_method="face")
    months = _months()
    r = await c.post("/registration/v1/me/enrolments", headers={**person, "Idempotency-Key": f"e-{idn}"}, json={
        "category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": months[0]})
    assert r.status_code == 201, r.text
    r = await c.get("/contribution/v1/policies/110105", params={"on": months[-1]})
    assert r.status_code == 200, r.text
    body = {"category": "flexible", "region_code": "110105", "base_fen": r.json()["base_lower_fen"], "months": months}

    async def declared() -> dict[str, Any] | None:
        resp = await c.post("/contribution/v1/me/declarations", headers={**person, "Idempotency-Key": f"d-{idn}"},
                            json=body)
        if resp.status_code == 201:
            return dict(resp.json())
        assert resp.json()["code"] == "not_enrolled", resp.text
        return None

    decl = await _until("enrolment known to contribution", declared)
    if not pay:
        return decl
    r = await c.post(f"/contribution/v1/me/declarations/{decl['id']}/confirm", headers=person)
    assert r.status_code == 200 and r.json()["status"] == "awaiting_payment", r.text
    r = await c.post(f"/contribution/v1/me/declarations/{decl['id']}/payments",
                     headers={**person, "Idempotency-Key": f"p-{idn}"}, json={"channel": "alipay"})
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["amount_fen"] == decl["total_fen"]
    r = await e2e.sandbox.post(f"/sandbox/alipay/trades/{payment['trade_no']}/pay")
    assert r.status_code == 200, r.text

    async def paid() -> bool:
        resp = await c.get(f"/contribution/v1/me/declarations/{decl['id']}", headers=person)
        assert resp.status_code == 200, resp.text
        return resp.json()["status"] == "paid"

    await _until("declaration paid", paid)
    return decl


async def _scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def test_walk_through_for_many_citizens_on_two_replicas_of_each_service(
    replicated_stack: ReplicatedStack,
) -> None:
    rs = replicated_stack
    limits = httpx.Limits(max_connections=CITIZENS + ABANDONED)
    async with (
        httpx.AsyncClient(base_url=rs.url("gateway"), timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=rs.url("sandbox"), timeout=60, limits=limits) as sandbox,
    ):
        e2e = E2E(rs, client, sandbox)
        r = await client.get("/readyz")
        assert all(len(urls) == 2 for urls in r.json()["replicas"].values()), r.text
        declarations = await asyncio.gather(
            *(_citizen(e2e, i, pay=True) for i in range(CITIZENS)),
            *(_citizen(e2e, CITIZENS + i, pay=False) for i in range(ABANDONED)),
        )
        paid_ids = {d["id"] for d in declarations[:CITIZENS]}
        assert len(paid_ids) == CITIZENS

    db = rs.databases
    contribution = db["contribution"]

    async def all_expired() -> bool:
        n = await _scalar(contribution, "SELECT count(*) FROM declarations WHERE status = 'expired'")
        return bool(n == ABANDONED)

    await _until("abandoned declarations expired", all_expired, timeout=150)
    await asyncio.sleep(3)  # a few more passes of every replica's jobs

    async def count(url: str, sql: str) -> int:
        return int(await _scalar(url, sql))

    # Every declaration paid once, by one payment, credited once per month and insurance.
    assert await count(contribution, "SELECT count(*) FROM declarations") == CITIZENS + ABANDONED
    assert await count(contribution, "SELECT count(*) FROM declarations WHERE status = 'paid'") == CITIZENS
    assert await count(contribution, "SELECT count(*) FROM payments") == CITIZENS
    assert await count(contribution, "SELECT count(*) FROM payments WHERE status = 'paid'") == CITIZENS
    assert await count(contribution, "SELECT count(DISTINCT declaration_id) FROM payments") == CITIZENS
    assert await count(contribution, "SELECT count(*) FROM payment_certificates") == CITIZENS
    assert await count(contribution, "SELECT count(*) FROM contribution_records") == CITIZENS * 3 * 2
    assert await count(contribution, """SELECT count(*) FROM (SELECT person_key, period, insurance
        FROM contribution_records GROUP BY person_key, period, insurance HAVING count(*) > 1) d""") == 0
    paid_sum = await count(contribution, "SELECT sum(amount_fen) FROM payments WHERE status = 'paid'")
    assert await count(contribution, "SELECT sum(amount_fen) FROM contribution_records") == paid_sum
    # The scheduled expiry, run by both replicas, expired each abandoned declaration once.
    assert await count(contribution, f"SELECT count(*) FROM outbox WHERE type = '{DECLARATION_EXPIRED}'") == ABANDONED
    assert await count(contribution, f"""SELECT count(DISTINCT subject) FROM outbox
        WHERE type = '{DECLARATION_EXPIRED}'""") == ABANDONED
    # Each enrolment once in registration, and known once to each consumer that follows it.
    everyone = CITIZENS + ABANDONED
    assert await count(db["registration"], "SELECT count(*) FROM enrolments") == everyone
    assert await count(db["registration"], "SELECT count(*) FROM persons") == everyone
    assert await count(contribution, "SELECT count(*) FROM known_enrolments") == everyone
    assert await count(contribution, "SELECT count(*) FROM known_persons") == everyone
    assert await count(db["card"], "SELECT count(*) FROM enrolments") == everyone
    assert await count(db["card"], "SELECT count(*) FROM persons") == everyone
    for name in SERVICES:  # no event parked, none produced twice
        assert await count(db[name], "SELECT count(*) FROM dead_letters") == 0, name
        assert await count(db[name], "SELECT count(*) FROM (SELECT event_id FROM outbox GROUP BY event_id "
                                     "HAVING count(*) > 1) d") == 0, name
