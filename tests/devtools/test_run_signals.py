"""`make run` stops everything it started, whenever it is told to, and even when it is killed hard.

Each round starts `python -m devtools.run` (on free ports, in a data directory of its
own), sends SIGINT or SIGTERM at a random moment (during start-up, while serving, or
twice in a row), to the runner's process group as a terminal's Ctrl-C does or to the
runner alone, and checks that within 10 s the runner and every process it started
are gone and every port is free again. The processes of one stack are found by
their environment (`SOCIALSEC_VAR_DIR` is unique per stack), so a process the
runner lost track of is found too.

Most rounds run the runner with a minimal ASGI app in place of each of the six
processes: what is under test is the runner (signals, start-up, stopping, dying
with it), and the minimal app starts in a fraction of the time the real ones take
on two cores. Some rounds, and the SIGKILL one, run the real stack.
`RUN_SIGNAL_ROUNDS_REAL=20` runs every round on the real stack;
`RUN_SIGNAL_SEED` picks other random moments (the seed is printed on failure).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.run import free_ports

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc"),
]

NAMES = ("gateway", "registration", "contribution", "card", "review", "sandbox")
ROUNDS = 20
REAL_ROUNDS = int(os.environ.get("RUN_SIGNAL_ROUNDS_REAL", "4"))
SEED = int(os.environ.get("RUN_SIGNAL_SEED", "20261202"))
DEADLINE = 10.0
UP = "socialsec is up"


def _port_free(port: int) -> bool:
    """A server could listen on it again (SO_REUSEADDR, as uvicorn binds)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _processes_of(var_dir: Path) -> set[int]:
    """Live processes started with this stack's SOCIALSEC_VAR_DIR (zombies have no environment)."""
    marker = f"SOCIALSEC_VAR_DIR={var_dir}".encode()
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


@dataclass
class Runner:
    proc: subprocess.Popen[bytes]
    var_dir: Path
    ports: list[int]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while UP not in self.output():
            assert self.proc.poll() is None, f"runner ended before start-up:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"not up within {timeout}s:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def signal(self, sig: int, group: bool) -> None:
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def assert_all_gone(self, since: float, what: str) -> None:
        """The runner, its processes and their ports, all gone within DEADLINE of `since`."""
        deadline = since + DEADLINE
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{what}: the runner still runs after {DEADLINE}s:\n{self.output()[-3000:]}")
        left: set[int] = set()
        while time.monotonic() < deadline:
            left = _processes_of(self.var_dir)
            busy = [p for p in self.ports if not _port_free(p)]
            if not left and not busy:
                return
            time.sleep(0.1)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"{what}: after {DEADLINE}s processes {sorted(left)} remain, ports busy "
                    f"{[p for p in self.ports if not _port_free(p)]}:\n{self.output()[-3000:]}")


@pytest.fixture(scope="module")
def var_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    yield {"real": tmp_path_factory.mktemp("run-real"), "light": tmp_path_factory.mktemp("run-light")}


def _start(var_dir: Path, light: bool, n: int) -> Runner:
    ports = free_ports(len(NAMES))
    args = [f"--port={name}={port}" for name, port in zip(NAMES, ports, strict=True)]
    if light:
        args += [f"--app={name}=tests.devtools.tiny_app:app" for name in NAMES]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_", "TEST_", "REGISTRATION_", "CONTRIBUTION_",
                                "CARD_", "REVIEW_"))}
    env["SOCIALSEC_VAR_DIR"] = str(var_dir)
    env["SOCIALSEC_LOG_LEVEL"] = "WARNING"
    log = var_dir / f"runner-{n}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.run", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=Path(__file__).resolve().parents[2],
        )
    return Runner(proc=proc, var_dir=var_dir, ports=ports, log=log)


def _plan() -> list[tuple[str, str, int, bool, float]]:
    """(variant, moment, signal, to the group, delay) for each round, from the seed."""
    rng = random.Random(SEED)
    real_moments = ["startup", "serving", "twice", "startup", "serving"]
    plan = []
    for i in range(ROUNDS):
        real = i < REAL_ROUNDS
        moment = real_moments[i % len(real_moments)] if real else rng.choice(["startup", "serving", "twice"])
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        plan.append(("real" if real else "light", moment, sig, rng.random() < 0.7, rng.random()))
    return plan


def test_any_signal_at_any_moment_stops_every_process(var_dirs: dict[str, Path]) -> None:
    startup_seconds = {"real": 10.0, "light": 4.5}
    for n, (variant, moment, sig, group, delay) in enumerate(_plan()):
        what = (f"round {n} (seed {SEED}): {variant} stack, {signal.Signals(sig).name} "
                f"{'to the group' if group else 'to the runner'} {moment}")
        t0 = time.monotonic()
        runner = _start(var_dirs[variant], variant == "light", n)
        if moment == "startup":
            time.sleep(delay * startup_seconds[variant])
        else:
            runner.wait_up()
            time.sleep(delay)
        runner.signal(sig, group)
        sent = time.monotonic()
        if moment == "twice":
            time.sleep(delay * 0.3)
            runner.signal(sig, group)
        runner.assert_all_gone(sent, what)
        print(f"{what}: {time.monotonic() - t0:.1f}s, gone {time.monotonic() - sent:.1f}s after")


def test_children_end_when_the_runner_is_killed_hard(var_dirs: dict[str, Path]) -> None:
    runner = _start(var_dirs["real"], False, 100)
    runner.wait_up()
    children = _processes_of(runner.var_dir) - {runner.proc.pid}
    assert len(children) >= len(NAMES)
    runner.proc.kill()  # SIGKILL: the runner cannot stop anything itself
    runner.assert_all_gone(time.monotonic(), "SIGKILL of the runner")
