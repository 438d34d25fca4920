"""Shared pieces of the benchmarks: free ports, PostgreSQL databases, a service process, wrk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url(admin_url: str, database: str, *, driver: str = "postgresql+asyncpg") -> str:
    """The URL of another database on the same server, with the given SQLAlchemy driver."""
    parts = urlsplit(admin_url)
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


def psql(admin_url: str, sql: str, *, database: str | None = None) -> str:
    url = pg_url(admin_url, database, driver="postgresql") if database else admin_url
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def recreate_database(admin_url: str, name: str) -> None:
    psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin_url, f'CREATE DATABASE "{name}"')


def ensure_wrk() -> str:
    """wrk (a C load generator): Debian's package `wrk`, installed here when missing and run as root."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        path = shutil.which("wrk")
        if path:
            return path
    raise SystemExit("wrk is not installed: apt-get install wrk (as root)")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str

    def rss_peak_mib(self) -> float:
        """Peak resident memory of the process so far (VmHWM)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmHWM:\s+(\d+) kB", text)
        return int(m.group(1)) / 1024 if m else float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_service(name: str, target: str, env: dict[str, str], *, log: Path) -> Process:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited: see {log}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return Process(name, proc, url)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{name} did not answer within 60 s: see {log}")


LUA_RANDOM = """
local items = {}
for line in io.lines("%(file)s") do
  local path, header = line:match("^(%%S+)\\t(.*)$")
  items[#items + 1] = {path, header}
end
math.randomseed(%(seed)d)
request = function()
  local it = items[math.random(#items)]
  return wrk.format("GET", it[1], {["%(header)s"] = it[2]})
end
"""


def wrk_random_gets(url: str, lines: list[tuple[str, str]], *, header: str, connections: int, seconds: int,
                    workdir: Path, seed: int = 7) -> dict[str, float]:
    """Run wrk over GETs picked at random from (path, header value) pairs; requests/s and latency percentiles."""
    data = workdir / f"wrk-{connections}-{abs(hash(url)) % 10000}.tsv"
    data.write_text("".join(f"{p}\t{h}\n" for p, h in lines))
    script = workdir / "random.lua"
    script.write_text(LUA_RANDOM % {"file": data, "seed": seed, "header": header})
    out = subprocess.run(
        [ensure_wrk(), "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout
    return parse_wrk(out)


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and non-2xx count from wrk's --latency report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": _ms(p50.group(1)) if p50 else float("nan"),
        "p99_ms": _ms(p99.group(1)) if p99 else float("nan"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }
