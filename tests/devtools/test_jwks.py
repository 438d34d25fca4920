"""`python -m devtools.jwks`: the key set file a rotation needs, read back by the services' key sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.jwks import main
from services.common.keyset import KeySet, public_key_of_pem, thumbprint
from tests.conftest import KEYS


def test_writes_a_key_set_the_services_read(tmp_path: Path) -> None:
    out = tmp_path / "keys.json"
    assert main(["--out", str(out), str(KEYS / "gateway-signing.pub.pem"), f"{KEYS / 'card-qr-signing.pem'}=qr-1"]) == 0
    doc = json.loads(out.read_text())
    assert [k["kid"] for k in doc["keys"]] == [
        thumbprint(public_key_of_pem((KEYS / "gateway-signing.pub.pem").read_text())), "qr-1"]
    assert all("d" not in k and k["alg"] == "ES256" for k in doc["keys"])
    assert len(KeySet(name="t", jwks_file=out).keys) == 2


def test_refuses_a_non_p256_key_and_a_repeat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(KEYS / "alipay-platform.pub.pem")]) == 2
    assert main([str(KEYS / "gateway-signing.pem"), str(KEYS / "gateway-signing.pub.pem")]) == 2
    assert "twice" in capsys.readouterr().err
