"""The process model: `<NAME>_WORKERS` uvicorn workers per process, started by `services.common.serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.run import free_ports
from services.common.serve import WorkersSettingError, cpu_count, workers_for
from tests.devtools.test_run_signals import _port_free, _processes_of


def test_worker_count_setting() -> None:
    assert workers_for("registration", {}) == 1  # make run
    assert workers_for("registration", {"REGISTRATION_WORKERS": "3"}) == 3
    assert workers_for("gateway", {"GATEWAY_WORKERS": "auto"}) == cpu_count() >= 1  # the image
    assert workers_for("card", {"REGISTRATION_WORKERS": "4"}) == 1
    for bad in ("0", "-2", "two", "２", "1.5"):
        with pytest.raises(WorkersSettingError):
            workers_for("card", {"CARD_WORKERS": bad})


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")
def test_a_service_with_two_workers_on_a_fresh_database(tmp_path: Path) -> None:
    """Two workers start on a database nobody has migrated yet (it is migrated once, first), answer, and stop."""
    from devtools.keys import ensure_dev_keys

    ensure_dev_keys(tmp_path)
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "CONTRIBUTION_", "TEST_"))}
    env.update(SOCIALSEC_VAR_DIR=str(tmp_path), CONTRIBUTION_WORKERS="2", SOCIALSEC_LOG_JSON="false")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.common.serve", "contribution", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
        )
    try:
        deadline = time.monotonic() + 90
        answers = 0
        while answers < 10:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    answers += r.status == 200
            except OSError:
                time.sleep(0.2)
        assert len(_processes_of(tmp_path)) >= 3  # the supervisor and its two workers
        time.sleep(1.0)  # both workers' jobs have taken (or skipped) their first round
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    deadline = time.monotonic() + 10
    while (_processes_of(tmp_path) or not _port_free(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_of(tmp_path) and _port_free(port)
    output = log.read_text()
    assert "Started parent process" in output or "Started server process" in output, output[-3000:]
    assert output.count("Application startup complete") == 2, output[-3000:]
    for bad in ("Traceback", "locked", "ERROR"):
        assert bad not in output, output[-3000:]
