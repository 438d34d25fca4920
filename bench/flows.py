"""Whole citizen flows on PostgreSQL, next to pgbench on the same server in the same run.

    .venv/bin/python -m bench.flows [--flows 200] [--concurrency 8] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Starts the gateway, the four services and the sandbox (a PostgreSQL database per
service), then runs `--flows` citizens, `--concurrency` at a time, each through the
gateway as a mini-program would: enrol as a flexible employee → add a declaration →
confirm → open an Alipay payment → the sandbox pays and sends its signed notification →
the declaration reads `paid`. Prints flows per second and p50/p99 of each step, then
`pgbench -S` (read-only) and `pgbench -N` (simple writes) transactions per second on the
same server, and the ratio the issue asks for (flows/s against pgbench -N TPS).

The load generator is Python in this process: on a small machine it takes CPU from the
servers, so the flows per second are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from bench._stack import DEFAULT_PG, free_port, pg_url, psql, recreate_database
from devtools.run import SERVICES, Ports, Stack, prepare, stack_env
from services.common.identifiers import id_number_check_char

STEPS = ("enrol", "declare", "confirm", "open_payment", "pay", "paid")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def one_flow(i: int, gw: httpx.AsyncClient, sandbox: httpx.AsyncClient, month: str, run: str,
                   times: dict[str, list[float]]) -> None:
    rnd = random.Random(f"{run}-{i}")
    first = f"110105{rnd.randint(1960, 2000)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(0, 999):03d}"
    idn = first + id_number_check_char(first)
    r = await sandbox.post("/sandbox/tokens", json={
        "issuer": "sandbox-alipay", "kind": "citizen", "id_number": idn, "name": "王芳", "realname_level": 3,
        "auth_method": "face", "auth_time": int(time.time())})
    r.raise_for_status()
    auth = {"Authorization": f"Bearer {r.json()['token']}"}

    async def step(name: str, coro: object) -> httpx.Response:
        t = time.perf_counter()
        resp: httpx.Response = await coro  # type: ignore[misc]
        times[name].append((time.perf_counter() - t) * 1000)
        return resp

    r = await step("enrol", gw.post("/registration/v1/me/enrolments", headers=auth, json={
        "category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": month}))
    if r.status_code == 409:  # the random id number met an earlier run's person
        return
    assert r.status_code == 201, r.text
    body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": [month]}

    async def declare() -> httpx.Response:
        # The enrolment reaches contribution through registration's events; a route that
        # finds it missing catches up once, and on a busy server the event may still lag.
        deadline = time.perf_counter() + 30
        while True:
            resp = await gw.post("/contribution/v1/me/declarations", headers={**auth, "Idempotency-Key": f"d-{idn}"},
                                 json=body)
            if resp.status_code != 422 or resp.json().get("code") != "not_enrolled" or time.perf_counter() > deadline:
                return resp
            await asyncio.sleep(0.1)

    r = await step("declare", declare())
    assert r.status_code == 201, r.text
    decl = r.json()["id"]
    r = await step("confirm", gw.post(f"/contribution/v1/me/declarations/{decl}/confirm", headers=auth))
    assert r.status_code == 200, r.text
    r = await step("open_payment", gw.post(f"/contribution/v1/declarations/{decl}/payments",
                                           headers={**auth, "Idempotency-Key": f"p-{idn}"}, json={"channel": "alipay"}))
    assert r.status_code == 201, r.text
    trade = r.json()["trade_no"]
    r = await step("pay", sandbox.post(f"/sandbox/alipay/trades/{trade}/pay"))
    assert r.status_code in (200, 201, 204), r.text
    t = time.perf_counter()
    deadline = t + 30
    while True:
        r = await gw.get(f"/contribution/v1/me/declarations/{decl}", headers=auth)
        if r.status_code == 200 and r.json()["status"] == "paid":
            break
        if time.perf_counter() > deadline:
            raise AssertionError(f"declaration {decl} not paid within 30 s: {r.text[:200]}")
        await asyncio.sleep(0.05)
    times["paid"].append((time.perf_counter() - t) * 1000)


async def run_flows(args: argparse.Namespace, ports: Ports) -> tuple[float, dict[str, list[float]], int]:
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.gateway}", timeout=60, limits=limits) as gw,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.sandbox}", timeout=60, limits=limits) as sb,
    ):
        async def guarded(i: int) -> None:
            async with sem:
                await one_flow(i, gw, sb, month, run, times)

        await asyncio.gather(*(guarded(i) for i in range(min(args.concurrency, 4))))  # warm-up
        for s in STEPS:
            times[s].clear()
        started = time.perf_counter()
        await asyncio.gather(*(guarded(i) for i in range(100, 100 + args.flows)))
        took = time.perf_counter() - started
    return took, times, len(times["paid"])


def pgbench(admin_url: str, seconds: int, clients: int) -> dict[str, float]:
    """pgbench -S and -N on a scratch database of the same server."""
    if not shutil.which("pgbench"):
        return {}
    db = "socialsec_bench_pgbench"
    recreate_database(admin_url, db)
    url = pg_url(admin_url, db, driver="postgresql")
    subprocess.run(["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True)
    out: dict[str, float] = {}
    for flag in ("-S", "-N"):
        res = subprocess.run(["pgbench", flag, "-c", str(clients), "-j", "2", "-T", str(seconds), url],
                             check=True, capture_output=True, text=True).stdout
        m = re.search(r"tps = ([\d.]+)", res)
        out[flag] = float(m.group(1)) if m else float("nan")
    psql(admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--pg", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="socialsec-flows-"))
    p = [free_port() for _ in range(6)]
    ports = Ports(gateway=p[0], registration=p[1], contribution=p[2], card=p[3], review=p[4], sandbox=p[5])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_"))}
    dbs = [f"socialsec_flows_{s}" for s in SERVICES]
    for s, db in zip(SERVICES, dbs, strict=True):
        recreate_database(args.pg, db)
        base[f"{s.upper()}_DATABASE_URL"] = pg_url(args.pg, db)
    base["GATEWAY_RATE_LIMIT_PER_PRINCIPAL"] = "100000/minute"
    base["GATEWAY_RATE_LIMIT_PER_ADDRESS"] = "100000/minute"
    env = stack_env(var_dir, ports, base=base)
    env["GATEWAY_ISSUERS_FILE"] = str(var_dir / "issuers.json")
    prepare(var_dir, ports, env)
    if not (var_dir / "issuers.json").exists():
        from sandbox.issuers import write_default_issuers_file

        write_default_issuers_file(var_dir, f"http://127.0.0.1:{ports.sandbox}")
    stack = Stack(env, ports, quiet=True)
    stack.start()
    try:
        stack.wait_healthy(90)
        took, times, done = asyncio.run(run_flows(args, ports))
    finally:
        stack.stop()
        for db in dbs:
            psql(args.pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(var_dir, ignore_errors=True)
    bench = pgbench(args.pg, args.pgbench_seconds, args.concurrency)

    fps = done / took
    print(f"\nbench.flows on PostgreSQL, {os.cpu_count()} CPUs: {done} flows, {args.concurrency} at a time, "
          f"in {took:.1f} s: {fps:.1f} flows/s")
    for s in STEPS:
        v = times[s]
        print(f"  {s:<13} p50 {statistics.median(v) if v else float('nan'):8.1f} ms   p99 {pct(v, 0.99):8.1f} ms")
    if bench:
        print(f"  pgbench -S   {bench['-S']:10,.0f} TPS ({args.concurrency} clients, same server, same run)")
        print(f"  pgbench -N   {bench['-N']:10,.0f} TPS")
        print(f"  flows/s as a share of pgbench -N TPS: {fps / bench['-N'] * 100:.2f}% (target at least 20%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
