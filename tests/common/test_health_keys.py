"""Liveness vs readiness, request ids, and development keys made once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.common.settings import CommonSettings


class TestHealth:
    async def test_readyz_is_503_when_the_database_is_gone(self, make_service, tmp_path):
        from services.registration.settings import Settings

        svc = await make_service("registration")
        assert (await svc.client.get("/readyz")).status_code == 200
        # Point the app at a database that cannot be opened.
        from services.common.db import Database

        svc.app.state.db = Database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
        r = await svc.client.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        assert (await svc.client.get("/healthz")).status_code == 200
        await svc.app.state.db.dispose()
        assert Settings  # the service's settings class exists

    async def test_request_id_is_accepted_or_created_and_echoed(self, make_service):
        svc = await make_service("registration")
        r = await svc.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r = await svc.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


def test_six_processes_racing_create_each_key_once(tmp_path):
    code = "import sys; from pathlib import Path; from devtools.keys import ensure_dev_keys; ensure_dev_keys(Path(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(6)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    keys = tmp_path / "keys"
    first = {p.name: p.read_bytes() for p in keys.iterdir() if not p.name.startswith(".")}
    # Running again changes nothing: keys are created once and kept.
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    again = {p.name: p.read_bytes() for p in keys.iterdir() if not p.name.startswith(".")}
    assert first == again
    common = CommonSettings(var_dir=tmp_path)
    assert len(common.pii_key_bytes()) == 32
    assert "BEGIN PUBLIC KEY" in common.gateway_public_key_pem()
    assert oct((keys / "pii.key").stat().st_mode & 0o777) == "0o600"
    assert not list(Path(keys).glob("*.tmp"))
