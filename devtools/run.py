"""`make run`: keys, migrations, then the gateway, four services and the sandbox, together.

Keys are created once, before any process starts. Every process gets the same
environment (built by `stack_env`), its output is prefixed with its name, and
Ctrl-C, SIGTERM (or any process dying) stops them all; a second Ctrl-C while they
stop kills them at once. Each process is started with `--die-with-parent`, so it
also ends when the runner is killed hard (SIGKILL).

Signals: a handler runs between two bytecodes of the main thread, which may hold
any lock at that moment (`threading.Event.wait` holds its condition's lock, and
`Event.set` from the handler then waits for it forever). So the handler only
counts the signal; `signal.set_wakeup_fd` wakes the main loop, which sleeps in
`select()`, and the main loop acts.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.keys import ensure_dev_keys

SERVICES = ("registration", "contribution", "card", "review")


@dataclass(frozen=True)
class Ports:
    gateway: int = 8000
    registration: int = 8001
    contribution: int = 8002
    card: int = 8003
    review: int = 8004
    sandbox: int = 8010

    def of(self, name: str) -> int:
        return int(getattr(self, name))


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free right now (held together while chosen, so never the same twice)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def stack_env(var_dir: Path, ports: Ports, host: str = "127.0.0.1", base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every process of the local stack runs with."""
    env = dict(os.environ if base is None else base)
    keys = var_dir / "keys"
    url = {name: f"http://{host}:{ports.of(name)}" for name in ("gateway", "sandbox", *SERVICES)}
    env.setdefault("SOCIALSEC_VAR_DIR", str(var_dir))
    env["SOCIALSEC_VAR_DIR"] = str(var_dir)
    env.setdefault("SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE", str(keys / "gateway-signing.pub.pem"))
    env.setdefault("GATEWAY_SIGNING_KEY_FILE", str(keys / "gateway-signing.pem"))
    for name in SERVICES:
        env.setdefault(f"GATEWAY_{name.upper()}_URL", url[name])
    # Event feeds: each consumer polls the producers it subscribes to.
    env.setdefault("CONTRIBUTION_REGISTRATION_URL", url["registration"])
    env.setdefault("CONTRIBUTION_REVIEW_URL", url["review"])
    env.setdefault("CONTRIBUTION_CARD_URL", url["card"])
    env.setdefault("CARD_REGISTRATION_URL", url["registration"])
    env.setdefault("REVIEW_REGISTRATION_URL", url["registration"])
    env.setdefault("REVIEW_CONTRIBUTION_URL", url["contribution"])
    # Payment platforms: the sandbox stands in for Alipay and WeChat Pay.
    env.setdefault("CONTRIBUTION_ALIPAY_GATEWAY_URL", f"{url['sandbox']}/sandbox/alipay/gateway.do")
    env.setdefault("CONTRIBUTION_WECHATPAY_BASE_URL", f"{url['sandbox']}/sandbox/wechatpay")
    # Reminder messages (every service): the sandbox's WeChat and Alipay message APIs.
    env.setdefault("SOCIALSEC_WECHAT_API_URL", f"{url['sandbox']}/sandbox/wechat")
    env.setdefault("SOCIALSEC_ALIPAY_GATEWAY_URL", f"{url['sandbox']}/sandbox/alipay/gateway.do")
    env.setdefault("CONTRIBUTION_ALIPAY_NOTIFY_URL", f"{url['contribution']}/contribution/v1/notify/alipay")
    env.setdefault("CONTRIBUTION_WECHATPAY_NOTIFY_URL", f"{url['contribution']}/contribution/v1/notify/wechatpay")
    env.setdefault("CONTRIBUTION_CERTIFICATE_VERIFY_URL", f"{url['gateway']}/contribution/v1/certificates/")
    env.setdefault("SANDBOX_URL", url["sandbox"])
    env.setdefault("CONTRIBUTION_WEBHOOK_ALLOW_INSECURE", "true")
    if not env.get("GATEWAY_ISSUERS_FILE"):
        env["GATEWAY_ISSUERS_FILE"] = str(var_dir / "issuers.json")
    return env


class StopRequest:
    """Termination signals, recorded by the handler and acted upon by the main loop."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def install(self) -> None:
        """Record SIGINT, SIGTERM and SIGHUP (main thread only)."""
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for s in self.SIGNALS:
            signal.signal(s, self._record)

    def _record(self, signum: int, _frame: object) -> None:
        # Nothing else here: no lock, no I/O (see the module's docstring).
        self.count += 1

    @property
    def requested(self) -> bool:
        return self.count > 0

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when a signal arrives (the wakeup fd makes select return)."""
        select.select([self._r], [], [], max(seconds, 0.0))
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass


def prepare(
    var_dir: Path, ports: Ports, env: dict[str, str], stop: StopRequest | None = None
) -> bool:
    """Keys, the default issuers file (only if missing and not configured), migrations.

    False when a stop was requested meanwhile (the migrations are then interrupted).
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    ensure_dev_keys(var_dir)
    issuers = Path(env["GATEWAY_ISSUERS_FILE"])
    if not issuers.exists() and not os.environ.get("GATEWAY_ISSUERS_FILE"):
        from sandbox.issuers import write_default_issuers_file

        write_default_issuers_file(var_dir, f"http://127.0.0.1:{ports.sandbox}")
    cmd = [sys.executable, "-m", "services.common.migrate", *SERVICES]
    if stop is None:
        subprocess.run(cmd, env=env, check=True)
        return True
    with subprocess.Popen(cmd, env=env) as p:
        while p.poll() is None and not stop.requested:
            stop.sleep(0.2)
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            return False
    if stop.requested:
        return False
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, cmd)
    return True


def commands(ports: Ports, host: str = "127.0.0.1", apps: dict[str, str] | None = None) -> dict[str, list[str]]:
    """The command of every process (`services.common.serve`, uvicorn with `<NAME>_WORKERS` workers).

    `apps` replaces the ASGI app of some processes (an import string).
    """
    names = ("sandbox", "registration", "contribution", "card", "review", "gateway")
    out = {}
    for name in names:
        cmd = [sys.executable, "-m", "services.common.serve", name, "--host", host, "--port", str(ports.of(name)),
               "--no-access-log", "--log-level", "warning", "--graceful-timeout", "3",
               "--die-with-parent", str(os.getpid())]
        if apps and name in apps:
            cmd += ["--app", apps[name]]
        out[name] = cmd
    return out


def _pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        try:
            sys.stdout.write(f"{name:>12} | {line.decode(errors='replace')}")
            sys.stdout.flush()
        except (OSError, ValueError):  # our own output is gone; keep draining the child's
            pass


class Stack:
    """The running processes."""

    def __init__(
        self, env: dict[str, str], ports: Ports, host: str = "127.0.0.1", quiet: bool = False,
        apps: dict[str, str] | None = None,
    ) -> None:
        self.env, self.ports, self.host, self.quiet, self.apps = env, ports, host, quiet, apps
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, stop: StopRequest | None = None) -> None:
        """Start every process (each in a session of its own: the runner alone decides how they stop)."""
        for name, cmd in commands(self.ports, self.host, self.apps).items():
            if stop is not None and stop.requested:
                return
            p = subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.procs[name] = p
            threading.Thread(target=_pump if not self.quiet else _drain, args=(name, p.stdout), daemon=True).start()

    def wait_healthy(self, timeout: float = 60.0, stop: StopRequest | None = None) -> bool:
        """True once every process answers `/healthz`; False when a stop was requested first."""
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if stop is not None and stop.requested:
                    return False
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
                try:
                    with urllib.request.urlopen(f"http://{self.host}:{self.ports.of(name)}/healthz", timeout=1) as r:
                        if r.status == 200:
                            pending.discard(name)
                except OSError:
                    pass
            if stop is not None:
                stop.sleep(0.2)
            else:
                time.sleep(0.2)
        if stop is not None and stop.requested:
            return False
        if pending:
            raise RuntimeError(f"not healthy within {timeout:.0f}s: {', '.join(sorted(pending))}")
        return True

    def first_exited(self) -> str | None:
        """The name of a process that has ended, if any."""
        return next((name for name, p in self.procs.items() if p.poll() is not None), None)

    def stop(self, stop: StopRequest | None = None, grace: float = 5.0) -> None:
        """SIGTERM to every process group; SIGKILL after `grace` seconds, or at once on another signal."""
        for p in self.procs.values():
            if p.poll() is None:
                _killpg(p.pid, signal.SIGTERM)
        seen = stop.count if stop is not None else 0
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in self.procs.values()) and time.monotonic() < deadline:
            if stop is not None:
                if stop.count > seen:
                    break
                stop.sleep(0.1)
            else:
                time.sleep(0.1)
        for p in self.procs.values():
            if p.poll() is None:
                _killpg(p.pid, signal.SIGKILL)
        for p in self.procs.values():
            p.wait()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(name: str, stream: object) -> None:
    for _ in iter(stream.readline, b""):  # type: ignore[attr-defined]
        pass


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or name not in (*SERVICES, "gateway", "sandbox"):
            raise SystemExit(f"--{what} takes NAME=VALUE with NAME one of the six processes, not {v!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest()
    stop.install()
    parser = argparse.ArgumentParser(prog="python -m devtools.run", description="Run the whole stack locally.")
    parser.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                        help="listen on another port (e.g. gateway=9000)")
    parser.add_argument("--app", action="append", default=[], metavar="NAME=MODULE:ATTR",
                        help="run another ASGI app in place of a process's own")
    args = parser.parse_args(argv)
    ports = Ports(**{k: int(v) for k, v in _pairs(args.port, "port").items()})
    var_dir = Path(os.environ.get("SOCIALSEC_VAR_DIR", "var")).resolve()
    env = stack_env(var_dir, ports)
    if not prepare(var_dir, ports, env, stop):
        return 0
    stack = Stack(env, ports, apps=_pairs(args.app, "app"))
    try:
        stack.start(stop)
        if not stack.wait_healthy(60, stop):
            return 0
        print(
            "\nsocialsec is up (Ctrl-C stops everything):\n"
            f"  gateway       http://127.0.0.1:{ports.gateway}   (docs: /docs)\n"
            f"  registration  http://127.0.0.1:{ports.registration}\n"
            f"  contribution  http://127.0.0.1:{ports.contribution}\n"
            f"  card          http://127.0.0.1:{ports.card}\n"
            f"  review        http://127.0.0.1:{ports.review}\n"
            f"  sandbox       http://127.0.0.1:{ports.sandbox}\n"
            f"  data          {var_dir}\n"
            "Get a token:  make token ARGS='--kind citizen --level 3'   (see README for a walk-through)\n",
            flush=True,
        )
        while not stop.requested:
            exited = stack.first_exited()
            if exited is not None:
                print(f"{exited} exited with {stack.procs[exited].returncode}; stopping the others",
                      file=sys.stderr, flush=True)
                return 1
            stop.sleep(0.5)
        return 0
    except RuntimeError as exc:
        print(f"start-up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop(stop)


if __name__ == "__main__":
    raise SystemExit(main())
