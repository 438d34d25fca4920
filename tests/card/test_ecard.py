"""Electronic card per platform, its signed QR payload and the hospital's verification."""

from __future__ import annotations

from typing import Any

from jose import jwt
from sqlalchemy import func, select

from services.card.models import QrVerification
from tests.helpers import channel, staff

HOSPITAL = channel("hospital", "H-301")


async def _ecard(flow: Any, idn: str, platform: str = "alipay") -> dict[str, Any]:
    r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn, platform=platform)))
    assert r.status_code == 201, r.text
    return r.json()


async def _qr(flow: Any, idn: str, platform: str = "alipay") -> Any:
    return await flow.client.post("/card/v1/me/ecard/qrcode", headers=flow.h(flow.citizen(idn, platform=platform)))


async def _verify(flow: Any, payload: str, by: Any = HOSPITAL) -> Any:
    return await flow.client.post("/card/v1/ecard/verifications", json={"payload": payload}, headers=flow.h(by))


class TestIssueEcard:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post("/card/v1/me/ecard")).status_code == 401

    async def test_needs_level_three_and_fresh_auth(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"
        r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn, auth_time=flow.now_epoch() - 600)))
        assert r.status_code == 403 and r.json()["code"] == "fresh_auth_required"
        r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(channel("bank")))
        assert r.status_code == 403

    async def test_one_per_platform_mirroring_the_card(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        ali = await _ecard(flow, idn, "alipay")
        assert ali["platform"] == "alipay" and ali["status"] == "active" and ali["card_id"] == card["id"]
        assert ali["card_no_masked"] == "J******78"
        r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn, platform="alipay")))
        assert r.status_code == 409 and r.json()["code"] == "ecard_already_issued"
        wx = await _ecard(flow, idn, "wechat")
        assert wx["platform"] == "wechat" and wx["id"] != ali["id"]
        mine = (await flow.my_card(idn, platform="wechat")).json()
        assert mine["ecard"]["id"] == wx["id"]
        await flow.client.post("/card/v1/me/card/loss-reports", json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert (await flow.my_card(idn)).json()["ecard"]["status"] == "temporarily_lost"

    async def test_applied_card_has_no_ecard(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        await flow.apply(idn)
        r = await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 409 and r.json()["current_state"] == "applied"


class TestQrCode:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post("/card/v1/me/ecard/qrcode")).status_code == 401

    async def test_needs_an_ecard_for_this_platform(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn, "alipay")
        r = await _qr(flow, idn, "wechat")
        assert r.status_code == 404 and r.json()["code"] == "ecard_not_found"

    async def test_signed_payload_valid_sixty_seconds(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn)
        r = await _qr(flow, idn)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["valid_seconds"] == 60
        header = jwt.get_unverified_header(body["payload"])
        claims = jwt.get_unverified_claims(body["payload"])
        assert header["alg"] == "ES256"
        assert claims["exp"] - claims["iat"] == 60 and claims["jti"]
        assert idn not in str(claims)
        second = (await _qr(flow, idn)).json()
        assert jwt.get_unverified_claims(second["payload"])["jti"] != claims["jti"]

    async def test_no_qr_after_a_loss_report(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn)
        await flow.client.post("/card/v1/me/card/loss-reports", json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        r = await _qr(flow, idn)
        assert r.status_code == 409 and r.json()["current_state"] == "temporarily_lost"


class TestVerification:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post("/card/v1/ecard/verifications", json={"payload": "x"})).status_code == 401

    async def test_only_hospitals(self, flow: Any, idn: str) -> None:
        for prn in (channel("bank"), staff("admin"), flow.citizen(idn)):
            r = await _verify(flow, "x", by=prn)
            assert r.status_code == 403

    async def test_bad_input(self, flow: Any) -> None:
        r = await _verify(flow, "x" * 5000)
        assert r.status_code == 422
        r = await flow.client.post("/card/v1/ecard/verifications", json={"payload": 5}, headers=flow.h(HOSPITAL))
        assert r.status_code == 422
        r = await _verify(flow, "not.a.jws")
        assert r.status_code == 422 and r.json()["code"] == "qr_invalid"

    async def test_verify_once_then_replay_refused(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        await _ecard(flow, idn)
        payload = (await _qr(flow, idn)).json()["payload"]
        flow.svc.clock.advance(seconds=59)
        r = await _verify(flow, payload)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["card_id"] == card["id"] and body["card_status"] == "active"
        assert body["holder_name_masked"] == "*三" and body["id_number_masked"] == idn[:6] + "********" + idn[-4:]
        assert body["card_no_masked"] == "J******78" and body["platform"] == "alipay" and body["id"]
        replay = await _verify(flow, payload)
        assert replay.status_code == 409 and replay.json()["code"] == "qr_already_used"
        async with flow.svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(QrVerification))).scalar_one() == 1

    async def test_expired(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn)
        payload = (await _qr(flow, idn)).json()["payload"]
        flow.svc.clock.advance(seconds=60)
        r = await _verify(flow, payload)
        assert r.status_code == 422 and r.json()["code"] == "qr_expired"

    async def test_tampered_and_foreign_signatures(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn)
        payload = (await _qr(flow, idn)).json()["payload"]
        head, body, sig = payload.split(".")
        flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
        assert (await _verify(flow, f"{head}.{body}.{flipped}")).json()["code"] == "qr_invalid"
        claims = jwt.get_unverified_claims(payload)
        forged = jwt.encode({**claims, "exp": claims["exp"] + 3600}, "secret", algorithm="HS256")
        assert (await _verify(flow, forged)).json()["code"] == "qr_invalid"
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        assert (await _verify(flow, jwt.encode(claims, other_key, algorithm="ES256"))).json()["code"] == "qr_invalid"

    async def test_qr_of_a_card_lost_after_it_was_shown(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await _ecard(flow, idn)
        payload = (await _qr(flow, idn)).json()["payload"]
        await flow.client.post("/card/v1/me/card/loss-reports", json={"kind": "formal"}, headers=flow.h(flow.citizen(idn)))
        r = await _verify(flow, payload)
        assert r.status_code == 409 and r.json()["current_state"] == "formally_lost"
