"""Gateway overhead: requests/s and p50/p99 latency of one authenticated GET, straight to a
service (with a valid X-Principal) and through the gateway (platform token verified, principal
signed, request streamed), same run, same machine.

    .venv/bin/python -m bench.gateway [--seconds 5] [--concurrency 16]

Starts the contribution service and the gateway as real uvicorn processes on free loopback
ports, in a temporary data directory, and stops them at the end. The load generator runs in
this process (httpx), so on a small machine it competes with the servers for the CPU: compare
the two figures of one run, not runs on different machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from devtools.keys import ensure_dev_keys
from sandbox.issuers import SANDBOX_ISSUERS, issuers_document, jwks_of, mint_token
from services.common.principal import encode_principal

SERVICE = "contribution"
# (label, uvicorn target of the service, authenticated GET path)
SCENARIOS = (
    ("kernel route (no database)", "bench.kernel_app:app", "/contribution/v1/me/principal"),
    ("contribution: my declarations (SQLite)", f"services.{SERVICE}.app:app", "/contribution/v1/me/declarations?limit=20"),
)
PERSONA = {"kind": "citizen", "id_number": "11010519491231002X", "name": "王芳", "realname_level": 3, "auth_method": "face"}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy within {timeout}s")


async def load(url: str, path: str, headers: dict[str, str], seconds: float, concurrency: int) -> dict[str, float]:
    """Closed-loop load: `concurrency` clients, each sending the next request when the last is answered."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as client:
        for _ in range(concurrency * 5):  # warm-up: connections, caches, JWKS
            r = await client.get(path)
            if r.status_code != 200:
                raise RuntimeError(f"{url}{path}: {r.status_code} {r.text[:300]}")
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def start(target: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def run_scenario(var: Path, keys: Path, target: str, path: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Start the service and the gateway, measure straight and through, stop them."""
    service_port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "CONTRIBUTION_"))}
    env.update({
        "SOCIALSEC_VAR_DIR": str(var), "SOCIALSEC_LOG_LEVEL": args.log_level,
        "SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE": str(keys / "gateway-signing.pub.pem"),
        "CONTRIBUTION_DATABASE_URL": f"sqlite+aiosqlite:///{var}/contribution.db",
        "CONTRIBUTION_CONSUMERS_ENABLED": "false",
        "GATEWAY_ISSUERS_FILE": str(var / "issuers.json"),
        "GATEWAY_SIGNING_KEY_FILE": str(keys / "gateway-signing.pem"),
        "GATEWAY_CONTRIBUTION_URL": f"http://127.0.0.1:{service_port}",
        "GATEWAY_RATE_LIMIT_PER_PRINCIPAL": "10000000/minute",
        "GATEWAY_RATE_LIMIT_PER_ADDRESS": "10000000/minute",
    })
    procs = [start(target, service_port, env), start("gateway.app:app", gateway_port, env)]
    try:
        service_url, gateway_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{gateway_port}"
        wait_healthy(service_url, procs[0])
        wait_healthy(gateway_url, procs[1])
        token, _, _ = mint_token(args.issuer, dict(PERSONA), keys_dir=keys, ttl_seconds=3600)
        prn = {"kind": "citizen", "sub": "bench", "issuer": args.issuer,
               **{k: v for k, v in PERSONA.items() if k != "kind"}, "auth_time": int(time.time())}
        principal = encode_principal(prn, audience=SERVICE, private_key_pem=(keys / "gateway-signing.pem").read_text(),
                                     ttl=int(args.seconds) * 4 + 120)
        direct = asyncio.run(load(service_url, path, {"X-Principal": principal}, args.seconds, args.concurrency))
        through = asyncio.run(load(gateway_url, path, {"Authorization": f"Bearer {token}"}, args.seconds, args.concurrency))
        return direct, through
    finally:
        stop(procs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured run (default 5, at most 60)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--issuer", choices=sorted(SANDBOX_ISSUERS), default="sandbox-alipay")
    parser.add_argument("--log-level", default="WARNING", help="SOCIALSEC_LOG_LEVEL of both processes (INFO logs every request)")
    args = parser.parse_args()
    args.seconds = min(max(args.seconds, 1.0), 60.0)

    var = Path(tempfile.mkdtemp(prefix="socialsec-bench-"))
    results = []
    try:
        keys = ensure_dev_keys(var)
        doc = issuers_document("http://127.0.0.1:1")
        for entry in doc["issuers"]:  # keys from files: the bench needs no sandbox process
            (var / f"{entry['name']}.jwks.json").write_text(json.dumps(jwks_of(SANDBOX_ISSUERS[entry["name"]], keys)))
            del entry["jwks_uri"]
            entry["jwks_file"] = f"{entry['name']}.jwks.json"
        (var / "issuers.json").write_text(json.dumps(doc))
        for label, target, path in SCENARIOS:
            results.append((label, path, *run_scenario(var, keys, target, path, args)))
    finally:
        shutil.rmtree(var, ignore_errors=True)

    print(f"authenticated GET as a citizen ({args.issuer} token), {args.concurrency} concurrent clients, "
          f"{args.seconds:.0f} s per run, on {os.cpu_count()} CPUs (the load generator shares them)")
    for label, path, direct, through in results:
        print(f"\n{label}: GET {path}")
        print(f"  {'':16}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for name, r in (("direct", direct), ("through gateway", through)):
            print(f"  {name:16}{r['requests']:>10.0f}{r['errors']:>8.0f}{r['rps']:>10.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
        print(f"  ratio gateway/direct: throughput {through['rps'] / direct['rps']:.2f}, "
              f"p50 {through['p50_ms'] / direct['p50_ms']:.2f}x, p99 {through['p99_ms'] / direct['p99_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
