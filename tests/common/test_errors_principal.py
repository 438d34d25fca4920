"""Problem+json for bad input, and the principal guard."""

from __future__ import annotations

import time

from tests.helpers import citizen, make_id_number, principal_headers, staff

IDN = make_id_number()


def _cit(**kw):
    return principal_headers("registration", citizen(IDN, **kw))


class TestProblems:
    async def test_malformed_json_is_400_problem(self, ksvc):
        r = await ksvc.client.post("/t/widgets", content=b"{not json", headers={**_cit(), "content-type": "application/json"})
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["code"] == "malformed_body"
        assert set(body) >= {"type", "title", "status", "detail", "code", "errors", "request_id"}
        assert body["request_id"] == r.headers["x-request-id"]

    async def test_wrong_types_and_unknown_enum_list_each_field(self, ksvc):
        r = await ksvc.client.post(
            "/t/widgets", json={"id_number": IDN, "name": 5, "colour": "green", "amount_fen": "lots"}, headers=_cit()
        )
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "validation_failed"
        fields = {e["field"]: e["code"] for e in body["errors"]}
        assert fields == {"name": "string_type", "colour": "enum", "amount_fen": "int_parsing"}
        # Chinese by default
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in e["message"]) for e in body["errors"])

    async def test_english_on_request(self, ksvc):
        r = await ksvc.client.post(
            "/t/widgets", json={"id_number": IDN, "name": ""}, headers={**_cit(), "Accept-Language": "en-US,en;q=0.9"}
        )
        assert r.status_code == 422
        assert r.json()["title"] == "The submitted data is invalid"
        assert r.json()["errors"][0]["field"] == "name"

    async def test_oversized_field_is_422_not_500(self, ksvc):
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "x" * 10_000}, headers=_cit())
        assert r.status_code == 422
        assert r.json()["errors"][0]["code"] == "string_too_long"

    async def test_float_money_refused(self, ksvc):
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a", "amount_fen": 12.5}, headers=_cit())
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "amount_fen"

    async def test_invalid_id_number_surfaces_its_code_without_echoing_it(self, ksvc):
        bad = IDN[:-1] + ("0" if IDN[-1] != "0" else "1")
        r = await ksvc.client.post("/t/widgets", json={"id_number": bad, "name": "a"}, headers=_cit())
        assert r.status_code == 422
        assert r.json()["code"] == "id_number_invalid"
        assert bad not in r.text

    async def test_invalid_credit_code_and_month(self, ksvc):
        r = await ksvc.client.post(
            "/t/widgets", json={"id_number": IDN, "name": "a", "credit_code": "91350100M000100Y44", "month": "2026-13"},
            headers=_cit(),
        )
        assert r.status_code == 422
        codes = {e["field"]: e["code"] for e in r.json()["errors"]}
        assert codes == {"credit_code": "credit_code_invalid", "month": "month_invalid"}

    async def test_unknown_route_and_method(self, ksvc):
        r = await ksvc.client.get("/nope")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = await ksvc.client.delete("/t/widgets")
        assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"

    async def test_unexpected_error_is_500_problem_without_trace(self, ksvc, caplog):
        r = await ksvc.client.get("/t/boom")
        assert r.status_code == 500
        assert r.json()["code"] == "internal_error"
        assert "Traceback" not in r.text and "secret" not in r.text

    async def test_domain_error_carries_code_and_params(self, ksvc):
        body = {"id_number": IDN, "name": "a"}
        assert (await ksvc.client.post("/t/widgets", json=body, headers=_cit())).status_code == 201
        r = await ksvc.client.post("/t/widgets", json=body, headers=_cit())
        assert r.status_code == 409
        assert r.json()["code"] == "widget_exists" and r.json()["hint"] == "x"
        assert r.json()["title"] == "已存在"


class TestPrincipal:
    async def test_no_principal_is_401(self, ksvc):
        r = await ksvc.client.get("/t/widgets")
        assert r.status_code == 401 and r.json()["code"] == "principal_required"

    async def test_plain_or_forged_header_is_401(self, ksvc):
        r = await ksvc.client.get("/t/widgets", headers={"X-Principal": '{"kind":"staff","roles":["admin"]}'})
        assert r.status_code == 401 and r.json()["code"] == "principal_invalid"

    async def test_principal_signed_by_another_key_is_401(self, ksvc):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from services.common.principal import encode_principal

        other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        token = encode_principal(staff("operator"), audience="registration", private_key_pem=other)
        r = await ksvc.client.get("/t/widgets", headers={"X-Principal": token})
        assert r.status_code == 401

    async def test_principal_for_another_service_is_401(self, ksvc):
        r = await ksvc.client.get("/t/widgets", headers=principal_headers("card", staff("operator")))
        assert r.status_code == 401

    async def test_expired_principal_is_401(self, ksvc):
        import os
        from pathlib import Path

        from services.common.principal import encode_principal

        key = (Path(os.environ["SOCIALSEC_VAR_DIR"]) / "keys" / "gateway-signing.pem").read_text()
        token = encode_principal(staff("operator"), audience="registration", private_key_pem=key, now=time.time() - 120)
        r = await ksvc.client.get("/t/widgets", headers={"X-Principal": token})
        assert r.status_code == 401

    async def test_hs256_with_public_key_is_401(self, ksvc):
        import base64
        import hashlib
        import hmac
        import json
        import os
        from pathlib import Path

        pub = (Path(os.environ["SOCIALSEC_VAR_DIR"]) / "keys" / "gateway-signing.pub.pem").read_bytes()

        def b64(d: bytes) -> str:
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

        now = int(time.time())
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64(json.dumps({"iss": "socialsec-gateway", "aud": "registration", "iat": now, "exp": now + 60,
                                  "prn": staff("admin")}).encode())
        sig = b64(hmac.new(pub, f"{head}.{payload}".encode(), hashlib.sha256).digest())
        r = await ksvc.client.get("/t/widgets", headers={"X-Principal": f"{head}.{payload}.{sig}"})
        assert r.status_code == 401

    async def test_wrong_kind_is_403(self, ksvc):
        r = await ksvc.client.get("/t/widgets", headers=_cit())
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"

    async def test_staff_without_role_is_403(self, ksvc):
        r = await ksvc.client.get("/t/widgets", headers=principal_headers("registration", staff("reviewer")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"
        r = await ksvc.client.get("/t/widgets", headers=principal_headers("registration", staff("admin")))
        assert r.status_code == 200

    async def test_level_too_low_is_403_step_up(self, ksvc):
        r = await ksvc.client.post("/t/widgets", json={"id_number": IDN, "name": "a"}, headers=_cit(level=1))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"
        assert r.json()["required_level"] == 2

    async def test_freshness_and_face(self, ksvc):
        old = time.time() - 600
        assert (await ksvc.client.get("/t/fresh", headers=_cit(auth_time=old))).json()["code"] == "fresh_auth_required"
        assert (await ksvc.client.get("/t/fresh", headers=_cit())).status_code == 200
        r = await ksvc.client.get("/t/face", headers=_cit(auth_method="sms"))
        assert r.status_code == 403 and r.json()["code"] == "face_auth_required"
        assert (await ksvc.client.get("/t/face", headers=_cit(auth_time=old))).json()["code"] == "face_auth_required"
        assert (await ksvc.client.get("/t/face", headers=_cit())).status_code == 200


class TestOwnUnit:
    def test_an_employer_acts_on_its_own_code_only_and_staff_on_every_one(self):
        import pytest

        from services.common.principal import NotOwnEmployer, Principal, check_own_unit
        from tests.helpers import employer, make_credit_code

        own, other = make_credit_code(), make_credit_code("91310000MA0000009")
        check_own_unit(Principal.model_validate(employer(own)), own)
        check_own_unit(Principal.model_validate(employer(own.lower())), own)  # a token may spell it in lower case
        check_own_unit(Principal.model_validate(staff("operator")), other)
        with pytest.raises(NotOwnEmployer) as refused:
            check_own_unit(Principal.model_validate(employer(own)), other)
        assert refused.value.status == 403 and refused.value.code == "not_own_employer"
