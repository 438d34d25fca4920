"""The sandbox's token side, the default issuers file and `make token`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from jose import jwt

from devtools.keys import ensure_dev_keys
from sandbox.app import create_app
from sandbox.issuers import SANDBOX_ISSUERS, write_default_issuers_file
from sandbox.settings import SandboxSettings
from tests.conftest import KEYS
from tests.gateway.conftest import bearer


@pytest.fixture
async def sandbox():
    app = create_app(SandboxSettings(keys_dir=KEYS))
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://sandbox") as client:
            yield client


class TestIssueToken:
    async def test_alipay_citizen(self, sandbox):
        r = await sandbox.post("/sandbox/tokens", json={
            "issuer": "sandbox-alipay", "kind": "citizen", "id_number": "11010519491231002x", "name": "王芳",
            "realname_level": 3, "auth_method": "face"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["issuer"] == "sandbox-alipay" and body["kid"] and body["expires_at"]
        claims = jwt.get_unverified_claims(body["token"])
        assert jwt.get_unverified_header(body["token"]) == {"alg": "RS256", "kid": body["kid"], "typ": "JWT"}
        assert claims["cert_no"] == "11010519491231002X" and claims["user_name"] == "王芳" and claims["level"] == 3
        assert claims["principal_type"] == "citizen" and claims["user_id"].startswith("2088")
        assert claims["aud"] == "socialsec" and claims["exp"] - claims["iat"] == 3600
        assert "auth_at" in claims

    async def test_the_same_persona_gets_the_same_platform_id(self, sandbox):
        persona = {"issuer": "sandbox-wechat", "kind": "citizen", "id_number": "11010519491231002X", "name": "王芳",
                   "realname_level": 2}
        a = jwt.get_unverified_claims((await sandbox.post("/sandbox/tokens", json=persona)).json()["token"])
        b = jwt.get_unverified_claims((await sandbox.post("/sandbox/tokens", json=persona)).json()["token"])
        assert a["openid"] == b["openid"]
        c = jwt.get_unverified_claims((await sandbox.post("/sandbox/tokens", json={**persona, "sub": "o-mine"})).json()["token"])
        assert c["openid"] == "o-mine"

    async def test_bad_input(self, sandbox):
        for body in [{"issuer": "alipay", "kind": "citizen"}, {"issuer": "sandbox-alipay", "kind": "root"},
                     {"issuer": "sandbox-alipay", "kind": "citizen", "id_number": "110105194912310021"},
                     {"issuer": "sandbox-alipay", "kind": "citizen", "realname_level": 4},
                     {"issuer": "sandbox-alipay", "kind": "citizen", "name": "x" * 65},
                     {"issuer": "sandbox-alipay", "kind": "staff", "roles": ["god"]},
                     {"issuer": "sandbox-alipay", "kind": "citizen", "ttl_seconds": 10**9},
                     {"issuer": "sandbox-alipay", "kind": "citizen", "surprise": 1}]:
            r = await sandbox.post("/sandbox/tokens", json=body)
            assert r.status_code == 422, body
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await sandbox.post("/sandbox/tokens", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "malformed_body"

    async def test_jwks(self, sandbox):
        for name, issuer in SANDBOX_ISSUERS.items():
            r = await sandbox.get(f"/sandbox/{name}/.well-known/jwks.json")
            assert r.status_code == 200
            (key,) = r.json()["keys"]
            assert key["alg"] == issuer.algorithm and key["use"] == "sig"
            assert "d" not in key  # public half only
        assert (await sandbox.get("/sandbox/nobody/.well-known/jwks.json")).status_code == 404

    async def test_health(self, sandbox):
        assert (await sandbox.get("/healthz")).json() == {"status": "ok"}


class TestDefaultIssuersFile:
    def test_written_once_trusting_both_sandbox_issuers(self, tmp_path: Path):
        path = write_default_issuers_file(tmp_path, "http://127.0.0.1:8010")
        doc = json.loads(path.read_text())
        assert [i["name"] for i in doc["issuers"]] == ["sandbox-alipay", "sandbox-wechat"]
        for entry in doc["issuers"]:
            assert entry["kinds"] == ["citizen", "employer", "agency", "channel", "staff"]
            assert entry["jwks_uri"] == f"http://127.0.0.1:8010/sandbox/{entry['name']}/.well-known/jwks.json"
        assert {i["platform"] for i in doc["issuers"]} == {"alipay", "wechat"}
        path.write_text('{"issuers": []}')
        write_default_issuers_file(tmp_path, "http://elsewhere")
        assert path.read_text() == '{"issuers": []}'  # an existing file is never overwritten


class TestMakeToken:
    async def test_prints_a_token_the_gateway_accepts(self, make_gateway, capsys, monkeypatch):
        monkeypatch.setenv("SOCIALSEC_VAR_DIR", str(KEYS.parent))
        ensure_dev_keys(KEYS.parent)
        from devtools.token import main

        assert main(["--issuer", "sandbox-wechat", "--kind", "citizen", "--level", "2", "--auth-method", "sms"]) == 0
        token = capsys.readouterr().out.strip()
        gw = await make_gateway()
        r = await gw.client.get("/review/v1/me", headers=bearer(token))
        assert r.status_code == 200
        for kind in ("employer", "agency", "channel", "staff"):
            assert main(["--kind", kind, "--roles", "admin"]) == 0
            r = await gw.client.get("/review/v1/me", headers=bearer(capsys.readouterr().out.strip()))
            assert r.status_code == 200, kind
