"""`make run`: keys, migrations, then the gateway, four services and the sandbox, together.

Keys are created once, before any process starts. Every process gets the same
environment (built by `stack_env`), its output is prefixed with its name, and
Ctrl-C (or any process dying) stops them all.
"""

from __future__ import annotations

import os
import signal
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
    env.setdefault("CARD_REGISTRATION_URL", url["registration"])
    env.setdefault("REVIEW_REGISTRATION_URL", url["registration"])
    env.setdefault("REVIEW_CONTRIBUTION_URL", url["contribution"])
    # Payment platforms: the sandbox stands in for Alipay and WeChat Pay.
    env.setdefault("CONTRIBUTION_ALIPAY_GATEWAY_URL", f"{url['sandbox']}/sandbox/alipay/gateway.do")
    env.setdefault("CONTRIBUTION_WECHATPAY_BASE_URL", f"{url['sandbox']}/sandbox/wechatpay")
    env.setdefault("CONTRIBUTION_ALIPAY_NOTIFY_URL", f"{url['contribution']}/contribution/v1/notify/alipay")
    env.setdefault("CONTRIBUTION_WECHATPAY_NOTIFY_URL", f"{url['contribution']}/contribution/v1/notify/wechatpay")
    env.setdefault("CONTRIBUTION_CERTIFICATE_VERIFY_URL", f"{url['gateway']}/contribution/v1/certificates/")
    env.setdefault("SANDBOX_URL", url["sandbox"])
    env.setdefault("CONTRIBUTION_WEBHOOK_ALLOW_INSECURE", "true")
    if not env.get("GATEWAY_ISSUERS_FILE"):
        env["GATEWAY_ISSUERS_FILE"] = str(var_dir / "issuers.json")
    return env


def prepare(var_dir: Path, ports: Ports, env: dict[str, str]) -> None:
    """Keys, the default issuers file (only if missing and not configured), migrations."""
    var_dir.mkdir(parents=True, exist_ok=True)
    ensure_dev_keys(var_dir)
    issuers = Path(env["GATEWAY_ISSUERS_FILE"])
    if not issuers.exists() and not os.environ.get("GATEWAY_ISSUERS_FILE"):
        from sandbox.issuers import write_default_issuers_file

        write_default_issuers_file(var_dir, f"http://127.0.0.1:{ports.sandbox}")
    subprocess.run([sys.executable, "-m", "services.common.migrate", *SERVICES], env=env, check=True)


def commands(ports: Ports, host: str = "127.0.0.1") -> dict[str, list[str]]:
    """The uvicorn command of every process."""
    apps = {
        "sandbox": "sandbox.app:app",
        "registration": "services.registration.app:app",
        "contribution": "services.contribution.app:app",
        "card": "services.card.app:app",
        "review": "services.review.app:app",
        "gateway": "gateway.app:app",
    }
    return {
        name: [sys.executable, "-m", "uvicorn", target, "--host", host, "--port", str(ports.of(name)),
               "--no-access-log", "--log-level", "warning"]
        for name, target in apps.items()
    }


def _pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:>12} | {line.decode(errors='replace')}")
        sys.stdout.flush()


class Stack:
    """The running processes."""

    def __init__(self, env: dict[str, str], ports: Ports, host: str = "127.0.0.1", quiet: bool = False) -> None:
        self.env, self.ports, self.host, self.quiet = env, ports, host, quiet
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for name, cmd in commands(self.ports, self.host).items():
            p = subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.procs[name] = p
            threading.Thread(target=_pump if not self.quiet else _drain, args=(name, p.stdout), daemon=True).start()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
                try:
                    with urllib.request.urlopen(f"http://{self.host}:{self.ports.of(name)}/healthz", timeout=1) as r:
                        if r.status == 200:
                            pending.discard(name)
                except OSError:
                    pass
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not healthy within {timeout:.0f}s: {', '.join(sorted(pending))}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _drain(name: str, stream: object) -> None:
    for _ in iter(stream.readline, b""):  # type: ignore[attr-defined]
        pass


def main() -> int:
    var_dir = Path(os.environ.get("SOCIALSEC_VAR_DIR", "var")).resolve()
    ports = Ports()
    env = stack_env(var_dir, ports)
    prepare(var_dir, ports, env)
    stack = Stack(env, ports)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack.start()
    try:
        stack.wait_healthy(60)
    except RuntimeError as exc:
        print(f"start-up failed: {exc}", file=sys.stderr)
        stack.stop()
        return 1
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
    while not stopping.is_set():
        for name, p in stack.procs.items():
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; stopping the others", file=sys.stderr)
                stopping.set()
                break
        stopping.wait(0.5)
    stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
