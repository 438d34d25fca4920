"""The cost of the gateway hop, measured from outside with wrk (a C load generator).

The same authenticated GET, three ways, in one run on one machine:

- direct:  wrk -> the contribution service (with a valid X-Principal, as the gateway would send);
- nginx:   wrk -> nginx as a plain reverse proxy (keep-alive upstream) -> the service;
- gateway: wrk -> the gateway (platform token verified, limits, principal signed) -> the service;

at 1 and 16 connections, for a kernel route (no database: bench/kernel_app.py) and a database
route (contribution's "my declarations"), on SQLite and, when a PostgreSQL URL is given
(`--postgres-url` or TEST_POSTGRES_URL), on PostgreSQL too (a throw-away database).

    .venv/bin/python -m bench.hop [--seconds 5] [--rounds 3] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

Needs wrk and nginx (`apt-get install -y wrk nginx-light`); run as root it installs them
itself when missing. Every process runs with one worker; the figures are the servers', but
wrk shares the machine's CPUs with them, so compare the figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.gateway import PERSONA, free_port, wait_healthy
from devtools.keys import ensure_dev_keys
from sandbox.issuers import SANDBOX_ISSUERS, issuers_document, jwks_of, mint_token
from services.common.principal import encode_principal

SERVICE = "contribution"
ROUTES = (
    ("kernel", "kernel route (no database)", "bench.kernel_app:app", "/contribution/v1/me/principal"),
    ("db", "my declarations (database)", f"services.{SERVICE}.app:app", "/contribution/v1/me/declarations?limit=20"),
)
WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("HOP %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream service {{ server 127.0.0.1:{service_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://service;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass
class Figures:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    service_cpu_us: float = 0.0  # CPU time the service spent per request (user + system)
    proxy_cpu_us: float = 0.0  # the same for the proxy in between (nginx or the gateway)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (nginx's workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def ensure_tools() -> None:
    """wrk and nginx, installed with apt-get when missing and run as root; otherwise say how."""
    missing = [t for t, exe in (("wrk", "wrk"), ("nginx-light", "nginx")) if not _which(exe)]
    if not missing:
        return
    hint = f"apt-get update && apt-get install -y {' '.join(missing)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"bench/hop.py needs {', '.join(missing)}: install with `{hint}` (as root)")
    print(f"installing {', '.join(missing)}: {hint}", flush=True)
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", *missing], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    # Debian starts the packaged nginx on port 80; the bench runs its own.
    subprocess.run(["service", "nginx", "stop"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _which(exe: str) -> str | None:
    return shutil.which(exe) or shutil.which(exe, path="/usr/sbin:/sbin")


def wrk(url: str, headers: dict[str, str], connections: int, seconds: float, script: Path,
        service_pid: int, proxy_pid: int | None) -> Figures:
    """One closed-loop wrk run; latencies from wrk's own histogram, CPU per request from /proc."""
    cmd = [_which("wrk") or "wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds:.0f}s",
           "--timeout", "10s", "-s", str(script)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    service_cpu, proxy_cpu = cpu_seconds(service_pid), cpu_seconds(proxy_pid) if proxy_pid else 0.0
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    service_cpu, proxy_cpu = cpu_seconds(service_pid) - service_cpu, (cpu_seconds(proxy_pid) - proxy_cpu) if proxy_pid else 0.0
    m = re.search(r"^HOP (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)$", out, re.M)
    if m is None:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    requests, errors, duration_us = int(m[1]), int(m[2]), int(m[3])
    per = 1e6 / max(requests, 1)
    return Figures(requests, errors, requests / (duration_us / 1e6), float(m[4]) / 1000, float(m[5]) / 1000,
                   float(m[6]) / 1000, service_cpu * per, proxy_cpu * per)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def uvicorn(target: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def warm(url: str, headers: dict[str, str]) -> None:
    """A few requests first (connections, caches, JWKS); refuse to measure anything but 200s."""
    import urllib.request

    for _ in range(20):
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback only
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            if r.status != 200:
                raise RuntimeError(f"{url}: {r.status}")


def run_route(var: Path, keys: Path, db_url: str, target: str, path: str, args: argparse.Namespace,
              script: Path) -> dict[tuple[str, int], Figures]:
    service_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "CONTRIBUTION_"))}
    env.update({
        "SOCIALSEC_VAR_DIR": str(var), "SOCIALSEC_LOG_LEVEL": args.log_level,
        "SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE": str(keys / "gateway-signing.pub.pem"),
        "CONTRIBUTION_DATABASE_URL": db_url,
        "CONTRIBUTION_CONSUMERS_ENABLED": "false",
        "GATEWAY_ISSUERS_FILE": str(var / "issuers.json"),
        "GATEWAY_SIGNING_KEY_FILE": str(keys / "gateway-signing.pem"),
        "GATEWAY_CONTRIBUTION_URL": f"http://127.0.0.1:{service_port}",
        # The limits are counted as in production, only set out of the way of the load.
        "GATEWAY_RATE_LIMIT_PER_PRINCIPAL": "100000000/minute",
        "GATEWAY_RATE_LIMIT_PER_ADDRESS": "100000000/minute",
    })
    nginx_dir = var / f"nginx-{nginx_port}"
    nginx_dir.mkdir()
    (nginx_dir / "nginx.conf").write_text(NGINX_CONF.format(prefix=nginx_dir, port=nginx_port, service_port=service_port))
    log = var / "servers.log"
    procs = [start(uvicorn(target, service_port), env, log)]
    try:
        wait_healthy(f"http://127.0.0.1:{service_port}", procs[0], timeout=120)
        procs.append(start(uvicorn("gateway.app:app", gateway_port), env, log))
        procs.append(start([_which("nginx") or "nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")], env, log))
        wait_healthy(f"http://127.0.0.1:{gateway_port}", procs[1])
        wait_healthy(f"http://127.0.0.1:{nginx_port}", procs[2])
        token, _, _ = mint_token(args.issuer, dict(PERSONA), keys_dir=keys, ttl_seconds=7200)
        prn = {"kind": "citizen", "sub": "bench", "issuer": args.issuer,
               **{k: v for k, v in PERSONA.items() if k != "kind"}, "auth_time": int(time.time())}
        principal = encode_principal(prn, audience=SERVICE, private_key_pem=(keys / "gateway-signing.pem").read_text(),
                                     ttl=7200)
        ways = {
            "direct": (f"http://127.0.0.1:{service_port}{path}", {"X-Principal": principal}, None),
            "nginx": (f"http://127.0.0.1:{nginx_port}{path}", {"X-Principal": principal}, procs[2].pid),
            "gateway": (f"http://127.0.0.1:{gateway_port}{path}", {"Authorization": f"Bearer {token}"}, procs[1].pid),
        }
        for url, headers, _ in ways.values():
            warm(url, headers)
        out: dict[tuple[str, int], Figures] = {}
        for connections in args.connections:
            # Rounds interleave the three ways, so a burst of other work on the machine hits them alike;
            # each way keeps its best round (outside load only ever slows a server down).
            for _ in range(args.rounds):
                for way, (url, headers, proxy_pid) in ways.items():
                    f = wrk(url, headers, connections, args.seconds, script, procs[0].pid, proxy_pid)
                    best = out.get((way, connections))
                    if best is None or f.rps > best.rps:
                        out[(way, connections)] = f
                    time.sleep(0.3)
        return out
    finally:
        stop(procs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per way; the best is shown (default 3)")
    parser.add_argument("--connections", default="1,16", help="comma-separated connection counts (default 1,16)")
    parser.add_argument("--routes", default="kernel,db", help="kernel, db or both (default)")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"),
                        help="a PostgreSQL server where the user may create databases (default TEST_POSTGRES_URL)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--issuer", choices=sorted(SANDBOX_ISSUERS), default="sandbox-alipay")
    parser.add_argument("--log-level", default="WARNING", help="SOCIALSEC_LOG_LEVEL of the servers (INFO logs every request)")
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    routes = [r for r in ROUTES if r[0] in args.routes.split(",")]
    ensure_tools()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and drop the database on kill too

    var = Path(tempfile.mkdtemp(prefix="socialsec-hop-"))
    script = var / "report.lua"
    script.write_text(WRK_SCRIPT)
    results: list[tuple[str, str, str, dict[tuple[str, int], Figures]]] = []
    try:
        keys = ensure_dev_keys(var)
        doc = issuers_document("http://127.0.0.1:1")
        for entry in doc["issuers"]:  # keys from files: no sandbox process needed
            (var / f"{entry['name']}.jwks.json").write_text(json.dumps(jwks_of(SANDBOX_ISSUERS[entry["name"]], keys)))
            del entry["jwks_uri"]
            entry["jwks_file"] = f"{entry['name']}.jwks.json"
        (var / "issuers.json").write_text(json.dumps(doc))
        backends: list[tuple[str, str | None]] = [] if args.no_sqlite else [("SQLite", None)]
        if args.postgres_url:
            backends.append(("PostgreSQL", args.postgres_url))
        for backend, pg in backends:
            for key, label, target, path in routes:
                if key == "kernel" and backend != backends[0][0]:
                    continue  # the kernel route touches no database: once is enough
                if pg is None:
                    db_url, cleanup = f"sqlite+aiosqlite:///{var}/contribution-{uuid.uuid4().hex[:6]}.db", None
                else:
                    db_url, cleanup = _pg_create(pg)
                try:
                    figures = run_route(var, keys, db_url, target, path, args, script)
                finally:
                    if cleanup:
                        _pg_drop(pg, cleanup)  # type: ignore[arg-type]
                results.append((label if key == "kernel" else f"{label}, {backend}", key, path, figures))
    finally:
        if os.environ.get("HOP_KEEP"):
            print(f"kept {var}")
        else:
            shutil.rmtree(var, ignore_errors=True)

    report(results, args)
    return 0


def _pg_admin(url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _pg_create(url: str) -> tuple[str, str]:
    name = f"socialsec_hop_{uuid.uuid4().hex[:8]}"
    _pg_admin(url, f'CREATE DATABASE "{name}"')
    base = url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}", name


def _pg_drop(url: str, name: str) -> None:
    _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(results: list[tuple[str, str, str, dict[tuple[str, int], Figures]]], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"\nauthenticated GET as a citizen ({args.issuer} token), wrk, best of {args.rounds} interleaved runs of "
          f"{args.seconds:.0f} s, one worker per server, on {os.cpu_count()} CPUs (wrk shares them; "
          f"load average {load:.1f} at the end)")
    for label, _key, path, figures in results:
        print(f"\n{label}: GET {path}")
        print(f"  {'conn':>4} {'way':8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
              f"{'CPU us/req: service':>21}{'proxy':>7}")
        for c in args.connections:
            for way in ("direct", "nginx", "gateway"):
                f = figures[(way, c)]
                print(f"  {c:>4} {way:8}{f.requests:>10}{f.errors:>8}{f.rps:>10.0f}{f.p50_ms:>9.2f}{f.p90_ms:>9.2f}{f.p99_ms:>9.2f}"
                      f"{f.service_cpu_us:>21.0f}{f.proxy_cpu_us:>7.0f}")
        for c in args.connections:
            d, n, g = figures[("direct", c)], figures[("nginx", c)], figures[("gateway", c)]
            print(f"  {c:>2} conn: gateway/direct throughput {g.rps / d.rps:.2f}, nginx/direct {n.rps / d.rps:.2f}; "
                  f"p50 added: gateway {g.p50_ms - d.p50_ms:+.2f} ms, nginx {n.p50_ms - d.p50_ms:+.2f} ms")
    print(f"\ntargets: gateway/direct at 16 connections >= 0.7 (database route), >= 0.5 (kernel route); "
          f"p50 added at 1 connection <= 0.5 ms; CPUs: {os.cpu_count()}")


if __name__ == "__main__":
    sys.exit(main())
