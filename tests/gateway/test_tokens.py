"""Platform tokens at the gateway: both sandbox issuers with their claim mappings, and every refusal."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from jose import jwt

from sandbox.issuers import SANDBOX_ISSUERS, issuers_document, public_jwk
from services.common.principal import decode_principal
from tests.conftest import KEYS
from tests.gateway.conftest import (
    SANDBOX_URL,
    MutableJwks,
    alipay_claims,
    alipay_key,
    bearer,
    citizen_persona,
    new_ec_pem,
    new_rsa_pem,
    sandbox_token,
    sign,
)

ALIPAY = SANDBOX_ISSUERS["sandbox-alipay"]
GATEWAY_PUBLIC = (KEYS / "gateway-signing.pub.pem").read_text()


def forwarded_principal(gw: Any, service: str = "registration") -> dict[str, Any]:
    """The principal the fake service received, verified as the service would."""
    seen = gw.upstreams[service].seen[-1]
    token = seen["headers"]["x-principal"]
    return decode_principal(token, audience=service, public_key_pem=GATEWAY_PUBLIC).model_dump(exclude_none=True)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def refused(gw: Any, token: str) -> dict[str, Any]:
    r = await gw.client.get("/registration/v1/me", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert not gw.upstreams["registration"].seen, "a refused token must never reach the service"
    return r.json()


class TestValidTokens:
    async def test_alipay_citizen_mapped_to_our_principal(self, gw):
        r = await gw.client.get("/registration/v1/me", headers=bearer(sandbox_token("sandbox-alipay")))
        assert r.status_code == 200, r.text
        prn = forwarded_principal(gw)
        assert prn["kind"] == "citizen"
        assert prn["issuer"] == "sandbox-alipay" and prn["platform"] == "alipay"
        assert prn["id_number"] == "11010519491231002X"  # normalized uppercase
        assert prn["name"] == "王芳" and prn["realname_level"] == 3 and prn["auth_method"] == "face"
        assert prn["sub"].startswith("2088") and len(prn["sub"]) == 16
        assert abs(prn["auth_time"] - time.time()) < 60

    async def test_wechat_citizen_with_other_claim_names(self, gw):
        token = sandbox_token("sandbox-wechat", citizen_persona(realname_level=2, auth_method="bank_card"))
        header = jwt.get_unverified_header(token)
        claims = jwt.get_unverified_claims(token)
        assert header["alg"] == "ES256" and "id_card" in claims and "openid" in claims and "cert_no" not in claims
        r = await gw.client.get("/card/v1/me/cards", headers=bearer(token))
        assert r.status_code == 200
        prn = forwarded_principal(gw, "card")
        assert prn["platform"] == "wechat" and prn["issuer"] == "sandbox-wechat"
        assert prn["realname_level"] == 2 and prn["auth_method"] == "bank_card"
        assert prn["sub"].startswith("o") and len(prn["sub"]) == 28

    async def test_employer_channel_and_staff(self, gw):
        from tests.helpers import make_credit_code

        cc = make_credit_code()
        for persona, expect in [
            ({"kind": "employer", "credit_code": cc, "unit_name": "北京示例科技有限公司", "operator": "李四"},
             {"credit_code": cc, "unit_name": "北京示例科技有限公司", "operator": "李四"}),
            ({"kind": "channel", "channel_kind": "bank", "branch_id": "B001"}, {"channel_kind": "bank", "branch_id": "B001"}),
            ({"kind": "staff", "staff_id": "S9", "roles": ["reviewer", "superuser"]}, {"staff_id": "S9", "roles": ("reviewer",)}),
        ]:
            r = await gw.client.get("/review/v1/x", headers=bearer(sandbox_token("sandbox-wechat", persona)))
            assert r.status_code == 200, r.text
            prn = forwarded_principal(gw, "review")
            assert prn["kind"] == persona["kind"]
            for k, v in expect.items():
                assert prn[k] == v

    async def test_the_principal_is_signed_for_the_target_service_only(self, gw):
        r = await gw.client.get("/contribution/v1/me", headers=bearer(sandbox_token()))
        token = gw.upstreams["contribution"].seen[-1]["headers"]["x-principal"]
        assert decode_principal(token, audience="contribution", public_key_pem=GATEWAY_PUBLIC).kind == "citizen"
        with pytest.raises(Exception):
            decode_principal(token, audience="card", public_key_pem=GATEWAY_PUBLIC)
        claims = jwt.get_unverified_claims(token)
        assert claims["exp"] - claims["iat"] == 60 and claims["iss"] == "socialsec-gateway"
        # The request id travels in X-Request-ID (the signed principal is reused across requests).
        assert "rid" not in claims
        assert gw.upstreams["contribution"].seen[-1]["headers"]["x-request-id"] == r.headers["x-request-id"]

    async def test_single_kind_issuer_needs_no_kind_claim(self, make_gateway):
        pem, kid = alipay_key()
        doc = issuers_document(SANDBOX_URL)
        doc["issuers"][0]["kinds"] = ["citizen"]
        gw = await make_gateway(issuers=doc)
        r = await gw.client.get("/registration/v1/me", headers=bearer(sign(alipay_claims(principal_type=None), pem, "RS256", kid)))
        assert r.status_code == 200
        assert forwarded_principal(gw)["kind"] == "citizen"

    async def test_no_token_goes_on_anonymous(self, gw):
        r = await gw.client.get("/contribution/v1/policies", headers={"X-Principal": "forged"})
        assert r.status_code == 200
        assert "x-principal" not in gw.upstreams["contribution"].seen[-1]["headers"]


class TestRefusedTokens:
    async def test_expired(self, gw):
        pem, kid = alipay_key()
        now = int(time.time())
        body = await refused(gw, sign(alipay_claims(iat=now - 7200, exp=now - 3600), pem, "RS256", kid))
        assert body["code"] == "token_expired"

    async def test_expiry_within_leeway_is_accepted(self, gw):
        pem, kid = alipay_key()
        now = int(time.time())
        r = await gw.client.get("/registration/v1/me", headers=bearer(sign(alipay_claims(iat=now - 600, exp=now - 30), pem, "RS256", kid)))
        assert r.status_code == 200

    async def test_not_yet_valid(self, gw):
        pem, kid = alipay_key()
        now = int(time.time())
        body = await refused(gw, sign(alipay_claims(nbf=now + 3600, exp=now + 7200), pem, "RS256", kid))
        assert body["code"] == "token_not_yet_valid"

    async def test_issued_in_the_future(self, gw):
        pem, kid = alipay_key()
        now = int(time.time())
        body = await refused(gw, sign(alipay_claims(iat=now + 3600, exp=now + 7200), pem, "RS256", kid))
        assert body["code"] == "token_not_yet_valid"

    async def test_wrong_audience(self, gw):
        pem, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(aud="another-app"), pem, "RS256", kid))
        assert body["code"] == "audience_invalid"

    async def test_wrong_issuer(self, gw):
        pem, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(iss="https://evil.example"), pem, "RS256", kid))
        assert body["code"] == "issuer_untrusted"

    async def test_issuer_claim_of_another_trusted_issuer(self, gw):
        # signed by the alipay key but claiming to come from the wechat issuer (ES256 only)
        pem, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(iss=SANDBOX_ISSUERS["sandbox-wechat"].iss), pem, "RS256", kid))
        assert body["code"] == "algorithm_not_allowed"

    async def test_alg_none(self, gw):
        token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(alipay_claims())}."
        body = await refused(gw, token)
        assert body["code"] == "algorithm_not_allowed"

    async def test_hs256_signed_with_the_public_key_as_secret(self, gw):
        pub_pem = (KEYS / "sandbox-alipay-issuer.pub.pem").read_text()
        _, kid = alipay_key()
        import hashlib
        import hmac

        header = b64({"alg": "HS256", "typ": "JWT", "kid": kid})
        payload = b64(alipay_claims())
        mac = hmac.new(pub_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        token = f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        body = await refused(gw, token)
        assert body["code"] == "algorithm_not_allowed"

    async def test_tampered_payload(self, gw):
        pem, kid = alipay_key()
        token = sign(alipay_claims(level=1), pem, "RS256", kid)
        head, _, sig = token.split(".")
        forged = f"{head}.{b64(alipay_claims(level=3))}.{sig}"
        body = await refused(gw, forged)
        assert body["code"] == "signature_invalid"

    async def test_signed_by_another_key_under_the_issuers_kid(self, gw):
        _, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(), new_rsa_pem(), "RS256", kid))
        assert body["code"] == "signature_invalid"

    async def test_unknown_kid(self, gw):
        body = await refused(gw, sign(alipay_claims(), new_rsa_pem(), "RS256", "no-such-kid"))
        assert body["code"] == "signing_key_unknown"

    async def test_missing_required_claims(self, gw):
        pem, kid = alipay_key()
        for missing, code in [("exp", "token_claim_missing"), ("iat", "token_claim_missing"),
                              ("aud", "token_claim_missing"), ("user_id", "token_claim_missing"),
                              ("cert_no", "token_claim_missing")]:
            body = await refused(gw, sign(alipay_claims(**{missing: None}), pem, "RS256", kid))
            assert body["code"] == code, missing

    async def test_kind_not_allowed_for_issuer(self, make_gateway):
        doc = issuers_document(SANDBOX_URL)
        doc["issuers"][0]["kinds"] = ["citizen", "employer"]
        gw = await make_gateway(issuers=doc)
        pem, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(principal_type="staff", staff_no="S1", roles=["admin"]), pem, "RS256", kid))
        assert body["code"] == "kind_not_allowed_for_issuer"

    async def test_invalid_claim_values(self, gw):
        pem, kid = alipay_key()
        for over in [{"cert_no": "110105194912310021"}, {"level": 5}, {"principal_type": "root"},
                     {"auth_at": int(time.time()) + 86400}, {"user_name": "x" * 500}]:
            body = await refused(gw, sign(alipay_claims(**over), pem, "RS256", kid))
            assert body["code"] == "token_claim_invalid", over

    async def test_oversized_token(self, gw):
        pem, kid = alipay_key()
        body = await refused(gw, sign(alipay_claims(padding="x" * 9000), pem, "RS256", kid))
        assert body["code"] == "token_too_large"

    async def test_garbage_and_other_schemes(self, gw):
        for header in ["Bearer not.a.jwt", "Bearer abc", "Basic dXNlcjpwYXNz", "Bearer "]:
            r = await gw.client.get("/registration/v1/me", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert r.json()["code"] == "token_invalid"
            assert r.headers["www-authenticate"].startswith("Bearer")

    async def test_english_problem(self, gw):
        r = await gw.client.get("/registration/v1/me", headers={"Authorization": "Bearer x.y.z", "Accept-Language": "en"})
        assert r.json()["title"].startswith("Invalid token")

    async def test_failures_are_counted_by_code(self, gw):
        await gw.client.get("/registration/v1/me", headers={"Authorization": "Bearer x.y.z"})
        assert 'gateway_token_failures_total{code="token_invalid"} 1.0' in gw.metrics_text()


class TestSignedPrincipalCache:
    """The X-Principal signed for a token and a service is reused for part of its life, never past the token's exp."""

    @staticmethod
    def seen_principal(gw: Any, service: str = "registration") -> tuple[str, dict[str, Any]]:
        token = gw.upstreams[service].seen[-1]["headers"]["x-principal"]
        return token, jwt.get_unverified_claims(token)

    async def test_reused_per_token_and_service_with_a_request_id_each(self, gw):
        await gw.registry.prefetch()
        token = sandbox_token()
        first = await gw.client.get("/registration/v1/me", headers=bearer(token))
        signed, _ = self.seen_principal(gw)
        second = await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert self.seen_principal(gw)[0] == signed
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        assert gw.upstreams["registration"].seen[-1]["headers"]["x-request-id"] == second.headers["x-request-id"]
        await gw.client.get("/card/v1/me", headers=bearer(token))
        card_signed, claims = self.seen_principal(gw, "card")
        assert card_signed != signed and claims["aud"] == "card"
        await gw.client.get("/registration/v1/me", headers=bearer(sandbox_token("sandbox-wechat")))
        assert self.seen_principal(gw)[0] != signed

    async def test_never_used_past_the_tokens_exp(self, make_gateway):
        from datetime import UTC, datetime

        from services.common.clock import FrozenClock

        clock = FrozenClock(datetime.now(UTC))
        gw = await make_gateway(clock=clock)
        await gw.registry.prefetch()  # every issuer's keys in: a later key load would forget verified tokens
        pem, kid = alipay_key()
        t0 = int(clock.now().timestamp())
        clock.set(datetime.fromtimestamp(t0, UTC))
        token = sign(alipay_claims(iat=t0, exp=t0 + 30), pem, "RS256", kid)
        assert (await gw.client.get("/registration/v1/me", headers=bearer(token))).status_code == 200
        first, claims = self.seen_principal(gw)
        assert claims["iat"] == t0
        clock.advance(seconds=29)  # still before exp: the same signed principal
        assert (await gw.client.get("/registration/v1/me", headers=bearer(token))).status_code == 200
        assert self.seen_principal(gw)[0] == first
        for later in (30, 31, 45):  # at and past exp, within the issuer's leeway: signed afresh every time
            clock.set(datetime.fromtimestamp(t0 + later, UTC))
            assert (await gw.client.get("/registration/v1/me", headers=bearer(token))).status_code == 200
            signed, claims = self.seen_principal(gw)
            assert signed != first and claims["iat"] == t0 + later
            first = signed
        clock.set(datetime.fromtimestamp(t0 + 30 + 61, UTC))  # past the leeway: refused, nothing forwarded
        count = len(gw.upstreams["registration"].seen)
        r = await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "token_expired"
        assert len(gw.upstreams["registration"].seen) == count

    async def test_renewed_before_its_own_lifetime_runs_out(self, make_gateway):
        from datetime import UTC, datetime

        from services.common.clock import FrozenClock

        clock = FrozenClock(datetime.now(UTC))
        gw = await make_gateway(clock=clock)
        await gw.registry.prefetch()  # every issuer's keys in: a later key load would forget verified tokens
        token = sandbox_token()
        await gw.client.get("/registration/v1/me", headers=bearer(token))
        first, claims = self.seen_principal(gw)
        clock.advance(seconds=39)
        await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert self.seen_principal(gw)[0] == first
        clock.advance(seconds=2)  # 41 s: under 20 s of its 60 s left, a new one
        await gw.client.get("/registration/v1/me", headers=bearer(token))
        renewed, later = self.seen_principal(gw)
        assert renewed != first and later["exp"] - claims["exp"] == 41

    async def test_forgotten_when_the_issuers_are_reloaded(self, gw):
        await gw.registry.prefetch()
        token = sandbox_token()
        await gw.client.get("/registration/v1/me", headers=bearer(token))
        first, _ = self.seen_principal(gw)
        assert gw.public.state.reload_issuers()
        await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert self.seen_principal(gw)[0] != first


class TestVerifiedTokenCache:
    async def test_a_token_verified_once_still_expires(self, make_gateway):
        from datetime import UTC, datetime

        from services.common.clock import FrozenClock

        clock = FrozenClock(datetime.now(UTC))
        gw = await make_gateway(clock=clock)
        pem, kid = alipay_key()
        now = int(clock.now().timestamp())
        token = sign(alipay_claims(iat=now, exp=now + 120), pem, "RS256", kid)
        for _ in range(3):
            assert (await gw.client.get("/registration/v1/me", headers=bearer(token))).status_code == 200
        assert gw.registry.verified.get(token, now) is not None
        clock.advance(seconds=120 + 61)  # past exp and the issuer's 60 s leeway
        r = await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "token_expired"

    async def test_reloading_the_issuers_forgets_verified_tokens(self, gw):
        token = sandbox_token()
        assert (await gw.client.get("/registration/v1/me", headers=bearer(token))).status_code == 200
        doc = issuers_document(SANDBOX_URL)
        doc["issuers"] = [doc["issuers"][1]]
        gw.issuers_file.write_text(json.dumps(doc))
        assert gw.public.state.reload_issuers()
        r = await gw.client.get("/registration/v1/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "issuer_untrusted"


class TestKeyRotation:
    async def test_new_kid_in_the_jwks_is_accepted_without_restart(self, make_gateway):
        old_pem, new_pem = new_ec_pem(), new_ec_pem()
        old, new = public_jwk(old_pem), public_jwk(new_pem)
        jwks = MutableJwks([old])
        doc = issuers_document("http://idp")
        doc["issuers"] = [doc["issuers"][1]]  # the wechat-like issuer (ES256)
        gw = await make_gateway(issuers=doc, jwks_transport=jwks.transport())
        wechat = SANDBOX_ISSUERS["sandbox-wechat"]
        now = int(time.time())
        claims = {"iss": wechat.iss, "aud": "socialsec", "iat": now, "exp": now + 600, "openid": "o1",
                  "identity_type": "citizen", "id_card": "11010519491231002X", "real_name": "王芳", "verify_level": 3}
        r = await gw.client.get("/card/v1/me", headers=bearer(sign(claims, old_pem, "ES256", old["kid"])))
        assert r.status_code == 200
        assert jwks.fetches == 1
        jwks.keys = [old, new]  # the platform publishes its next key
        r = await gw.client.get("/card/v1/me", headers=bearer(sign(claims, new_pem, "ES256", new["kid"])))
        assert r.status_code == 200
        assert jwks.fetches == 2
        # A made-up kid right after that refresh does not trigger another fetch (at most one per 30 s).
        r = await gw.client.get("/card/v1/me", headers=bearer(sign(claims, new_ec_pem(), "ES256", "made-up")))
        assert r.status_code == 401 and r.json()["code"] == "signing_key_unknown"
        assert jwks.fetches == 2
        assert 'gateway_jwks_loads_total{issuer="sandbox-wechat"} 2.0' in gw.metrics_text()

    async def test_unknown_kid_refresh_is_throttled_per_issuer(self, make_gateway):
        pem = new_ec_pem()
        jwks = MutableJwks([public_jwk(pem)])
        doc = issuers_document("http://idp")
        doc["issuers"] = [doc["issuers"][1]]
        gw = await make_gateway(issuers=doc, jwks_transport=jwks.transport())
        wechat = SANDBOX_ISSUERS["sandbox-wechat"]
        now = int(time.time())
        claims = {"iss": wechat.iss, "aud": "socialsec", "iat": now, "exp": now + 600, "openid": "o1",
                  "identity_type": "citizen", "id_card": "11010519491231002X", "real_name": "王芳", "verify_level": 3}
        for i in range(5):
            r = await gw.client.get("/card/v1/me", headers=bearer(sign(claims, pem, "ES256", f"kid-{i}")))
            assert r.json()["code"] == "signing_key_unknown"
        assert jwks.fetches == 2  # the first load, then one refresh for the first unknown kid

    async def test_jwks_unreachable_is_503_not_401(self, make_gateway):
        import httpx

        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        gw = await make_gateway(jwks_transport=httpx.MockTransport(down))
        r = await gw.client.get("/registration/v1/me", headers=bearer(sandbox_token()))
        assert r.status_code == 503 and r.json()["code"] == "issuer_keys_unavailable"


class TestIssuersFile:
    async def test_reload_on_request_keeps_serving_and_applies_the_new_file(self, gw):
        token = sandbox_token("sandbox-wechat")
        assert (await gw.client.get("/card/v1/me", headers=bearer(token))).status_code == 200
        doc = issuers_document(SANDBOX_URL)
        doc["issuers"] = [doc["issuers"][0]]  # wechat no longer trusted
        gw.issuers_file.write_text(json.dumps(doc))
        assert gw.public.state.reload_issuers() is True
        r = await gw.client.get("/card/v1/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "issuer_untrusted"

    async def test_broken_file_on_reload_keeps_the_previous_registry(self, gw):
        gw.issuers_file.write_text("{not json")
        assert gw.public.state.reload_issuers() is False
        assert (await gw.client.get("/card/v1/me", headers=bearer(sandbox_token("sandbox-wechat")))).status_code == 200

    async def test_sighup_reloads(self, gw):
        import asyncio
        import os
        import signal

        doc = issuers_document(SANDBOX_URL)
        doc["issuers"] = [doc["issuers"][0]]
        gw.issuers_file.write_text(json.dumps(doc))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):  # the signal is handled on the next turns of the event loop
            if len(gw.registry.by_iss) == 1:
                break
            await asyncio.sleep(0)
        assert len(gw.registry.by_iss) == 1

    def test_hs_and_none_algorithms_are_refused_in_the_file(self, tmp_path):
        from gateway.issuers import IssuersFileError, load_issuers

        for algs in (["HS256"], ["none"], ["RS256", "HS512"]):
            doc = issuers_document(SANDBOX_URL)
            doc["issuers"][0]["algorithms"] = algs
            path = tmp_path / "issuers.json"
            path.write_text(json.dumps(doc))
            with pytest.raises(IssuersFileError):
                load_issuers(path)

    def test_exactly_one_key_source_and_relative_jwks_file(self, tmp_path):
        from gateway.issuers import IssuersFileError, load_issuers

        doc = issuers_document(SANDBOX_URL)
        doc["issuers"][0]["jwks"] = {"keys": []}
        path = tmp_path / "issuers.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(IssuersFileError):
            load_issuers(path)
        del doc["issuers"][0]["jwks_uri"], doc["issuers"][0]["jwks"]
        doc["issuers"][0]["jwks_file"] = "keys/alipay.jwks.json"
        path.write_text(json.dumps(doc))
        states = load_issuers(path)
        assert states[0].jwks_path == tmp_path.resolve() / "keys" / "alipay.jwks.json"

    async def test_jwks_file_and_inline_jwks(self, make_gateway, tmp_path):
        pem, kid = alipay_key()
        jwk = public_jwk(pem)
        (tmp_path / "alipay.jwks.json").write_text(json.dumps({"keys": [jwk]}))
        for source in ({"jwks_file": "alipay.jwks.json"}, {"jwks": {"keys": [jwk]}}):
            doc = issuers_document(SANDBOX_URL)
            del doc["issuers"][0]["jwks_uri"]
            doc["issuers"][0].update(source)
            gw = await make_gateway(issuers=doc)
            r = await gw.client.get("/registration/v1/me", headers=bearer(sign(alipay_claims(), pem, "RS256", kid)))
            assert r.status_code == 200, source
