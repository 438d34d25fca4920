"""Rotating the gateway's principal key without an outage.

The gateway signs X-Principal with a kid (the RFC 7638 thumbprint of its key, or a configured id);
a service accepts every key of its key set (SOCIALSEC_GATEWAY_PUBLIC_KEYS_FILE, a JWKS, and/or the
single SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE), re-read when the file changes. The procedure, run here with
requests flowing through a real gateway to a real service: add the new public key to the set, switch
the gateway's signing key, remove the old public key; no request fails.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jws

from services.common.keyset import (
    KeySet,
    WatchedKey,
    jwks_document,
    public_key_of_pem,
    thumbprint,
)
from services.common.principal import PrincipalInvalid, decode_principal, encode_principal
from services.common.settings import CommonSettings, ConfigurationError
from tests.conftest import KEYS
from tests.gateway.conftest import HostDispatch, bearer, citizen_persona, new_ec_pem, sandbox_token
from tests.gateway.test_service_principal import whoami_factory
from tests.helpers import citizen

SERVICE = "registration"
OLD_PEM = (KEYS / "gateway-signing.pem").read_text()


def write_atomically(path: Path, text: str) -> None:
    """How an operator should replace a key file: write aside, then rename over."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jwks(path: Path, *pems: str) -> None:
    keys = [public_key_of_pem(p) for p in pems]
    write_atomically(path, json.dumps(jwks_document((thumbprint(k), k) for k in keys)))


def kid_of(pem: str) -> str:
    return thumbprint(public_key_of_pem(pem))


class KidRecorder:
    """Wraps a service: records the kid of every X-Principal it receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.kids: list[str | None] = []
        self.received = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"x-principal":
                    self.kids.append(jws.get_unverified_header(v.decode()).get("kid"))
                    self.received.set()
        await self.app(scope, receive, send)


# ---- the key set and the principal ----------------------------------------------------------


class TestKeySet:
    def test_single_key_gets_its_thumbprint(self, tmp_path: Path) -> None:
        keys = KeySet(name="t", pem_file=KEYS / "gateway-signing.pub.pem")
        assert keys.kids() == [kid_of(OLD_PEM)]
        # RFC 7638: base64url SHA-256, 43 characters, no padding.
        assert len(keys.kids()[0]) == 43 and "=" not in keys.kids()[0]

    def test_rfc7638_thumbprint_of_the_rfc_example_shape(self) -> None:
        # The thumbprint hashes exactly {"crv","kty","x","y"} in this order, no whitespace.
        import base64
        import hashlib

        key = public_key_of_pem(OLD_PEM)
        from services.common.keyset import ec_public_jwk

        j = ec_public_jwk(key)
        canonical = f'{{"crv":"P-256","kty":"EC","x":"{j["x"]}","y":"{j["y"]}"}}'
        expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        assert thumbprint(key) == expected

    def test_jwks_and_single_key_together(self, tmp_path: Path) -> None:
        new = new_ec_pem()
        jwks = tmp_path / "keys.json"
        write_jwks(jwks, new)
        keys = KeySet(name="t", jwks_file=jwks, pem_file=KEYS / "gateway-signing.pub.pem")
        assert set(keys.kids()) == {kid_of(new), kid_of(OLD_PEM)}

    @pytest.mark.parametrize("doc", [
        "not json", "{}", '{"keys": {}}', '{"keys": [{"kty": "RSA", "kid": "a"}]}',
        '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "a"}]}',
        '{"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "a"}]}',
    ])
    def test_a_malformed_file_refuses_to_start(self, tmp_path: Path, doc: str) -> None:
        path = tmp_path / "keys.json"
        path.write_text(doc)
        with pytest.raises(ConfigurationError):
            KeySet(name="t", jwks_file=path)

    def test_a_kid_without_key_data_or_twice_or_a_private_key_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "keys.json"
        member = jwks_document([("a", public_key_of_pem(OLD_PEM))])["keys"][0]
        for keys in ([{**member, "kid": ""}], [member, member], [{**member, "d": "x"}]):
            path.write_text(json.dumps({"keys": keys}))
            with pytest.raises(ConfigurationError):
                KeySet(name="t", jwks_file=path)

    def test_missing_files_refuse_to_start(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="SOCIALSEC_GATEWAY_PUBLIC_KEYS_FILE"):
            CommonSettings(var_dir=KEYS.parent, gateway_public_keys_file=tmp_path / "absent.json").gateway_key_set()

    def test_reread_when_changed_and_a_broken_file_keeps_the_set(self, tmp_path: Path) -> None:
        clock = [0.0]
        jwks = tmp_path / "keys.json"
        a, b = new_ec_pem(), new_ec_pem()
        write_jwks(jwks, a)
        keys = KeySet(name="t", jwks_file=jwks, check_seconds=5, monotonic=lambda: clock[0])
        write_jwks(jwks, a, b)
        clock[0] = 4
        assert keys.get(kid_of(b)) is None  # not checked again before the interval
        clock[0] = 10
        assert keys.get(kid_of(b)) is not None
        write_atomically(jwks, '{"keys": [')  # half-written
        clock[0] = 20
        assert keys.refresh() is False and set(keys.kids()) == {kid_of(a), kid_of(b)}
        write_jwks(jwks, b)
        clock[0] = 30
        assert keys.refresh() is True and keys.kids() == [kid_of(b)]


class TestDecodeWithKeySet:
    def _keys(self, tmp_path: Path, *pems: str) -> KeySet:
        path = tmp_path / "keys.json"
        write_jwks(path, *pems)
        return KeySet(name="t", jwks_file=path)

    def test_the_kid_chooses_the_key(self, tmp_path: Path) -> None:
        new = new_ec_pem()
        keys = self._keys(tmp_path, OLD_PEM, new)
        for pem in (OLD_PEM, new):
            token = encode_principal(citizen(), audience=SERVICE, private_key_pem=pem, kid=kid_of(pem))
            assert decode_principal(token, audience=SERVICE, keys=keys).kind == "citizen"

    def test_unknown_kid_and_a_kid_naming_another_key_are_refused(self, tmp_path: Path) -> None:
        new = new_ec_pem()
        keys = self._keys(tmp_path, OLD_PEM)
        for pem, kid in ((new, kid_of(new)), (new, kid_of(OLD_PEM)), (OLD_PEM, "some-other-kid")):
            token = encode_principal(citizen(), audience=SERVICE, private_key_pem=pem, kid=kid)
            with pytest.raises(PrincipalInvalid):
                decode_principal(token, audience=SERVICE, keys=keys)

    def test_without_kid_any_key_of_the_set(self, tmp_path: Path) -> None:
        new = new_ec_pem()
        keys = self._keys(tmp_path, new, OLD_PEM)
        token = encode_principal(citizen(), audience=SERVICE, private_key_pem=OLD_PEM)
        assert decode_principal(token, audience=SERVICE, keys=keys).kind == "citizen"
        stranger = encode_principal(citizen(), audience=SERVICE, private_key_pem=new_ec_pem())
        with pytest.raises(PrincipalInvalid):
            decode_principal(stranger, audience=SERVICE, keys=keys)
        other_audience = encode_principal(citizen(), audience="card", private_key_pem=new)
        with pytest.raises(PrincipalInvalid):
            decode_principal(other_audience, audience=SERVICE, keys=keys)

    def test_a_non_text_kid_is_refused(self, tmp_path: Path) -> None:
        from jose import jwt

        keys = self._keys(tmp_path, OLD_PEM)
        token = jwt.encode({"iss": "socialsec-gateway"}, OLD_PEM, algorithm="ES256", headers={"kid": 7})
        with pytest.raises(PrincipalInvalid):
            decode_principal(token, audience=SERVICE, keys=keys)


class TestWatchedSigningKey:
    def test_configured_id_names_the_start_key_a_switched_key_its_thumbprint(self, tmp_path: Path) -> None:
        path = tmp_path / "signing.pem"
        path.write_text(OLD_PEM)
        signing = WatchedKey(name="t", path=path, kid="gw-2026-01", check_seconds=0)
        assert signing.current()[0] == "gw-2026-01"
        new = new_ec_pem()
        write_atomically(path, new)
        assert signing.current() == (kid_of(new), new)

    def test_a_broken_file_keeps_the_key(self, tmp_path: Path) -> None:
        path = tmp_path / "signing.pem"
        path.write_text(OLD_PEM)
        signing = WatchedKey(name="t", path=path, check_seconds=0)
        write_atomically(path, "-----BEGIN PRIVATE KEY-----\nnope\n")
        assert signing.current() == (kid_of(OLD_PEM), OLD_PEM)
        with pytest.raises(ConfigurationError):
            WatchedKey(name="t", path=path)


# ---- the procedure, end to end ---------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path: Path, make_service: Any, make_gateway: Any) -> Any:
    """A gateway signing with the old key and a service whose key set is a JWKS holding it."""
    jwks = tmp_path / "gateway-keys.json"
    write_jwks(jwks, OLD_PEM)
    signing = tmp_path / "gateway-signing.pem"
    signing.write_text(OLD_PEM)
    common = CommonSettings(var_dir=KEYS.parent, gateway_public_key_file=None, gateway_public_keys_file=jwks)
    factory = whoami_factory(SERVICE)
    svc = await make_service(SERVICE, app_factory=lambda **kw: factory(**{**kw, "common": common}))
    keys: KeySet = svc.app.state.gateway_keys
    assert keys.jwks_file == jwks and keys.pem_file is None
    keys.check_seconds = 0  # a file change is seen by the next request (5 s by default)
    recorder = KidRecorder(svc.app)
    gw = await make_gateway(upstream_transport=HostDispatch({SERVICE: httpx.ASGITransport(app=recorder)}),
                            signing_key_file=signing)
    gw.public.state.signing.check_seconds = 0
    return jwks, signing, gw, recorder


class TestRotationWithoutOutage:
    async def test_add_switch_remove_while_requests_flow(self, stack: Any) -> None:
        jwks, signing, gw, recorder = stack
        new = new_ec_pem()
        old_kid, new_kid = kid_of(OLD_PEM), kid_of(new)
        tokens = [sandbox_token(issuer, citizen_persona(sub=f"user-{i}")) for i in range(4)
                  for issuer in ("sandbox-alipay", "sandbox-wechat")]
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        stop = asyncio.Event()

        async def client(n: int) -> None:
            i = n
            while not stop.is_set():
                r = await gw.client.get(f"/{SERVICE}/v1/_whoami", headers=bearer(tokens[i % len(tokens)]))
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    failures.append(r.text)
                i += 1
                await asyncio.sleep(0)

        async def served(count: int, kid: str) -> None:
            """Wait until the service has received `count` more principals signed with `kid`."""
            target = recorder.kids.count(kid) + count
            async with asyncio.timeout(30):
                while recorder.kids.count(kid) < target:
                    recorder.received.clear()
                    await recorder.received.wait()

        clients = [asyncio.create_task(client(n)) for n in range(4)]
        try:
            await served(20, old_kid)
            # 1. the new public key is added to every key set
            write_jwks(jwks, OLD_PEM, new)
            await served(20, old_kid)
            # 2. the gateway switches its signing key (the file is replaced; SIGHUP or the next check reads it)
            write_atomically(signing, new)
            await served(40, new_kid)
            # 3. later (at least the principal lifetime), the old public key is removed
            write_jwks(jwks, new)
            before = len(recorder.kids)
            await served(40, new_kid)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert failures == [] and set(statuses) == {200}, (statuses, failures[:3])
        assert old_kid in recorder.kids and new_kid in recorder.kids
        assert old_kid not in recorder.kids[before:]
        # Once switched, nothing is signed with the old key any more (no reuse of principals signed before).
        first_new = recorder.kids.index(new_kid)
        assert recorder.kids[first_new:].count(old_kid) <= 4  # at most the requests already signed in flight
        # And a principal signed with the removed key is now refused, as any unknown key is.
        stale = encode_principal(citizen(), audience=SERVICE, private_key_pem=OLD_PEM, kid=old_kid)
        r = await gw.client.get(f"/{SERVICE}/v1/_whoami")  # the gateway itself still answers
        assert r.status_code == 401
        keys: KeySet = recorder.app.state.gateway_keys
        with pytest.raises(PrincipalInvalid):
            decode_principal(stale, audience=SERVICE, keys=keys)

    async def test_sighup_reload_switches_the_signing_key(self, stack: Any) -> None:
        jwks, signing, gw, recorder = stack
        gw.public.state.signing.check_seconds = 3600  # only the reload reads the file again
        new = new_ec_pem()
        write_jwks(jwks, OLD_PEM, new)
        write_atomically(signing, new)
        token = sandbox_token("sandbox-alipay")
        assert (await gw.client.get(f"/{SERVICE}/v1/_whoami", headers=bearer(token))).status_code == 200
        assert recorder.kids[-1] == kid_of(OLD_PEM)
        assert gw.public.state.reload_issuers() is True
        assert (await gw.client.get(f"/{SERVICE}/v1/_whoami", headers=bearer(token))).status_code == 200
        assert recorder.kids[-1] == kid_of(new)

    async def test_a_service_without_the_new_key_refuses_as_today(self, stack: Any) -> None:
        jwks, signing, gw, recorder = stack
        write_atomically(signing, new_ec_pem())  # switched before the key was added: the mistake the procedure avoids
        r = await gw.client.get(f"/{SERVICE}/v1/_whoami", headers=bearer(sandbox_token("sandbox-alipay")))
        assert r.status_code == 401 and r.json()["code"] == "principal_invalid"

    async def test_the_gateway_signs_with_a_configured_kid(self, tmp_path: Path, make_gateway: Any) -> None:
        gw = await make_gateway(signing_key_id="gw-2026-12")
        r = await gw.client.get("/registration/v1/anything", headers=bearer(sandbox_token()))
        assert r.status_code == 200
        principal = gw.upstreams["registration"].seen[-1]["headers"]["x-principal"]
        assert jws.get_unverified_header(principal)["kid"] == "gw-2026-12"

    async def test_the_default_kid_is_the_thumbprint(self, gw: Any) -> None:
        r = await gw.client.get("/registration/v1/anything", headers=bearer(sandbox_token()))
        assert r.status_code == 200
        principal = gw.upstreams["registration"].seen[-1]["headers"]["x-principal"]
        assert jws.get_unverified_header(principal)["kid"] == kid_of(OLD_PEM)
