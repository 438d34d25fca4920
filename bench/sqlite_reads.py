"""Reads on SQLite: p50/p99 of a citizen's declarations list at 16 connections, alone and beside a writer.

    .venv/bin/python -m bench.sqlite_reads [--seconds 10] [--connections 16] [--tree PATH]

Starts the contribution service (one uvicorn process, SQLite in a temporary directory),
puts 30 declarations of one citizen in its database, and drives
`GET /contribution/v1/me/declarations?limit=20` straight at the service (a valid
X-Principal) with wrk, a C load generator (`apt-get install -y wrk`), so the figures are the
server's. Without wrk it falls back to an in-process httpx load, which shares the CPU
with the server (figures then read high). Two runs: readers alone, then readers while a
writer keeps committing short write transactions on the same database file (BEGIN
IMMEDIATE, an UPDATE, 20 ms held, COMMIT, in a loop). `--tree` runs the service from another
checkout (e.g. a worktree of an older commit) to compare before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.gateway import free_port, stop, wait_healthy
from devtools.keys import ensure_dev_keys
from services.common.pii import configure_pii, id_hash
from services.common.principal import encode_principal
from services.common.settings import CommonSettings

PATH = "/contribution/v1/me/declarations?limit=20"
ID_NUMBER = "11010519491231002X"
PERSONA = {"kind": "citizen", "sub": "bench", "issuer": "sandbox-alipay", "id_number": ID_NUMBER, "name": "王芳",
           "realname_level": 3, "auth_method": "face"}
WRK_LUA = """
wrk.headers["X-Principal"] = "{principal}"
"""


def seed(db_file: Path, person_key: str, count: int) -> None:
    """`count` awaiting-payment declarations of one citizen, straight into the tables."""
    con = sqlite3.connect(db_file)
    now = datetime.now(UTC)
    with con:
        for n in range(count):
            decl_id = str(uuid.uuid4())
            at = (now - timedelta(minutes=n)).replace(tzinfo=None).isoformat(sep=" ")
            con.execute(
                "INSERT INTO declarations (id, source, status, category, region_code, person_key, months, base_fen,"
                " total_fen, created_by, created_at, confirmed_at, expires_at)"
                " VALUES (?, 'citizen', 'awaiting_payment', 'flexible', '110105', ?, ?, 700000, 210000, 'bench', ?, ?, ?)",
                (decl_id, person_key, f'["2026-{(n % 12) + 1:02d}"]', at, at, (now + timedelta(days=1)).replace(tzinfo=None).isoformat(sep=" ")),
            )
    con.close()


def writer_loop(db_file: Path, stop_at: threading.Event, hold: float) -> int:
    """Short write transactions on the service's database until told to stop; how many committed."""
    con = sqlite3.connect(db_file, isolation_level=None, timeout=30)
    con.execute("PRAGMA busy_timeout=30000")
    done = 0
    while not stop_at.is_set():
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE declarations SET created_by = ? WHERE id = (SELECT id FROM declarations LIMIT 1)", (f"w{done}",))
        time.sleep(hold)
        con.execute("COMMIT")
        done += 1
        time.sleep(0.005)
    con.close()
    return done


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, principal: str, seconds: float, connections: int, var: Path) -> dict[str, float]:
    script = var / "principal.lua"
    script.write_text(WRK_LUA.format(principal=principal))
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script), url + PATH],
        capture_output=True, text=True, check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    if "50" not in pct or "99" not in pct:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"requests": requests, "errors": int(non2xx.group(1)) if non2xx else 0, "rps": requests / seconds,
            "p50_ms": _ms(pct["50"]), "p99_ms": _ms(pct["99"]), "socket_errors": 1.0 if errors else 0.0}


async def run_httpx(url: str, principal: str, seconds: float, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, headers={"X-Principal": principal}, limits=limits, timeout=30) as client:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await client.get(PATH)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / seconds,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, "socket_errors": 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose service is measured (default: this one)")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None

    var = Path(tempfile.mkdtemp(prefix="socialsec-bench-"))
    proc = None
    results: list[tuple[str, dict[str, float], int]] = []
    try:
        keys = ensure_dev_keys(var)
        common = CommonSettings(var_dir=var)
        configure_pii(common.pii_key_bytes(), common.pii_hash_key_bytes())
        db_file = var / "contribution.db"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "CONTRIBUTION_"))}
        env.update({
            "SOCIALSEC_VAR_DIR": str(var), "SOCIALSEC_LOG_LEVEL": "WARNING",
            "SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE": str(keys / "gateway-signing.pub.pem"),
            "CONTRIBUTION_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}", "CONTRIBUTION_CONSUMERS_ENABLED": "false",
            "PYTHONPATH": str(args.tree),
        })
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "services.contribution.app:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning"],
            env=env, cwd=args.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        seed(db_file, id_hash(ID_NUMBER), 30)
        principal = encode_principal({**PERSONA, "auth_time": int(time.time())}, audience="contribution",
                                     private_key_pem=(keys / "gateway-signing.pem").read_text(),
                                     ttl=int(args.seconds) * 4 + 120)
        check = httpx.get(url + PATH, headers={"X-Principal": principal})
        if check.status_code != 200 or len(check.json()["items"]) != 20:
            raise RuntimeError(f"unexpected answer {check.status_code}: {check.text[:300]}")

        def measure() -> dict[str, float]:
            if use_wrk:
                return run_wrk(url, principal, args.seconds, args.connections, var)
            return asyncio.run(run_httpx(url, principal, args.seconds, args.connections))

        results.append(("readers alone", measure(), 0))
        stop_writer = threading.Event()
        commits: list[int] = []
        writer = threading.Thread(target=lambda: commits.append(writer_loop(db_file, stop_writer, 0.02)))
        writer.start()
        try:
            beside = measure()
        finally:
            stop_writer.set()
            writer.join()
        results.append(("readers beside a writer", beside, commits[0] if commits else 0))
    finally:
        if proc is not None:
            stop([proc])
        shutil.rmtree(var, ignore_errors=True)

    print(f"GET {PATH} straight to contribution on SQLite, {args.connections} connections, {args.seconds:.0f} s per run, "
          f"{'wrk' if use_wrk else 'httpx in this process (install wrk for server-only figures)'}, "
          f"on {os.cpu_count()} CPUs; service from {args.tree}")
    print(f"  {'':26}{'requests':>10}{'non-200':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'writes':>8}")
    for label, r, writes in results:
        print(f"  {label:26}{r['requests']:>10.0f}{r['errors']:>9.0f}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{writes:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
