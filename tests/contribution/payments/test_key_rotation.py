"""Platform key rotation: several Alipay public keys; WeChat Pay platform certificates fetched, verified,
decrypted and refreshed, so a new platform certificate is known before the platform signs with it."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.contribution.payments import wechatpay
from services.contribution.payments.jobs import refresh_wechatpay_certificates_once, wechatpay_certificates
from services.contribution.payments.keys import SANDBOX_PLATFORM_KEY_ID, PaymentKeys
from services.contribution.payments.platforms import PaymentPlatforms
from services.contribution.settings import Settings
from tests.conftest import KEYS
from tests.contribution.payments import independent as ind
from tests.contribution.payments.conftest import BOB, PayWorld
from tests.contribution.payments.test_notify import (
    alipay_fields,
    open_alipay,
    open_wechat,
    post_alipay,
    state,
)
from tests.helpers import citizen, make_id_number

APIV3 = (KEYS / "wechatpay-apiv3.key").read_bytes().strip()
CAROL = make_id_number("110105", "19700101", "021")


def _write_public(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _with_settings(world: PayWorld, **update: Any) -> PaymentPlatforms:
    sandbox_app = world.sandbox._transport.app  # type: ignore[attr-defined]
    if not getattr(sandbox_app.state, "certificates_routes", False):
        from sandbox.certificates import router

        sandbox_app.include_router(router)
        sandbox_app.state.certificates_routes = True
    settings = world.settings.model_copy(update=update)
    platforms = PaymentPlatforms(settings, world.svc.app.state.common, client=world.sandbox)
    world.svc.app.state.payment_platforms = platforms
    return platforms


# ---- Alipay -------------------------------------------------------------------------------------


class TestAlipaySeveralPublicKeys:
    def test_one_key_stays_one_key_several_become_a_tuple(self, tmp_path: Path) -> None:
        new = _write_public(ind.new_rsa_key(), tmp_path / "new.pub.pem")
        one = PaymentKeys(Settings(), None).alipay_public_key
        assert isinstance(one, rsa.RSAPublicKey)
        both = PaymentKeys(Settings(alipay_public_key_files=f" {new} ,{KEYS / 'alipay-platform.pub.pem'}"), None)
        keys = both.alipay_public_key
        # The single key and the list, without the repeat.
        assert isinstance(keys, tuple) and len(keys) == 2

    def test_a_missing_file_in_the_list_is_a_configuration_error(self, tmp_path: Path) -> None:
        from services.common.settings import ConfigurationError

        with pytest.raises(ConfigurationError, match="CONTRIBUTION_ALIPAY_PUBLIC_KEY_FILES"):
            _ = PaymentKeys(Settings(alipay_public_key_files=str(tmp_path / "absent.pem")), None).alipay_public_key

    async def test_rotation_old_and_new_key_verify_while_both_are_listed(self, world: PayWorld, tmp_path: Path) -> None:
        new_key = ind.new_rsa_key()
        new_pub = _write_public(new_key, tmp_path / "alipay-new.pub.pem")
        old_pub = KEYS / "alipay-platform.pub.pem"

        # 1. the new key is added next to the old one: notifications signed by either are credited.
        _with_settings(world, alipay_public_key_file=old_pub, alipay_public_key_files=str(new_pub))
        p1 = await open_alipay(world)  # Alipay still answers with the old key
        r = await post_alipay(world, ind.alipay_notification(ind.load_private(KEYS / "alipay-platform.pem"), **alipay_fields(p1)))
        assert r.status_code == 200 and r.text == "success"
        p2 = await open_for(world, BOB, "alipay")
        r = await post_alipay(world, ind.alipay_notification(new_key, **alipay_fields(p2)))
        assert r.status_code == 200 and r.text == "success"
        assert (await state(world, p2["id"]))["payment"] == "paid"

        # 2. the old key is removed later (once Alipay signs with the new one): only the new one verifies.
        p3 = await open_for(world, CAROL, "alipay")
        _with_settings(world, alipay_public_key_file=new_pub, alipay_public_key_files="")
        forged = ind.alipay_notification(ind.load_private(KEYS / "alipay-platform.pem"), **alipay_fields(p3))
        assert (await post_alipay(world, forged)).text != "success"
        assert (await state(world, p3["id"]))["payment"] != "paid"


# ---- WeChat Pay certificates ----------------------------------------------------------------------


def _certificates_answer(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"data": items}).encode()


def _encrypted(pem: bytes, key: bytes = APIV3) -> dict[str, str]:
    nonce = secrets.token_hex(6)
    return {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "certificate",
            "ciphertext": base64.b64encode(AESGCM(key).encrypt(nonce.encode(), pem, b"certificate")).decode()}


class TestWechatPayCertificates:
    async def test_fetch_verifies_decrypts_and_lists_the_platform_certificate(self, world: PayWorld) -> None:
        platforms = _with_settings(world, wechatpay_certificate_mode=True)
        assert await refresh_wechatpay_certificates_once(world.svc.app) == 1
        keys = platforms.wechat_platform_keys
        (serial,) = keys.fetched
        assert len(serial) == 40 and serial in keys and SANDBOX_PLATFORM_KEY_ID in keys  # the configured key stays
        assert keys[serial].public_numbers() == ind.load_private(KEYS / "wechatpay-platform.pem").public_key().public_numbers()

    async def test_rotation_a_new_certificate_is_known_before_the_platform_signs_with_it(self, world: PayWorld) -> None:
        platforms = _with_settings(world, wechatpay_certificate_mode=True)
        await refresh_wechatpay_certificates_once(world.svc.app)
        first = next(iter(platforms.wechat_platform_keys.fetched))
        # The platform signs with its first certificate (named by its serial): payments go through.
        assert (await world.sandbox.post(f"/sandbox/wechatpay/certificates/{first}/use")).status_code == 200
        p1 = await open_wechat(world)
        await world.sandbox.post(f"/sandbox/wechatpay/transactions/{p1['out_trade_no']}/pay")
        await world.platform.drain()
        assert (await state(world, p1["id"]))["payment"] == "paid"

        # The platform publishes a new certificate; the periodic fetch learns it before it is used.
        r = await world.sandbox.post("/sandbox/wechatpay/certificates")
        second = r.json()["serial_no"]
        assert second not in platforms.wechat_platform_keys
        assert await refresh_wechatpay_certificates_once(world.svc.app) == 2
        assert {first, second} <= set(platforms.wechat_platform_keys)

        # The platform switches to it: answers and notifications signed with the new key verify.
        assert (await world.sandbox.post(f"/sandbox/wechatpay/certificates/{second}/use")).status_code == 200
        p2 = await open_for(world, BOB, "wechat")
        await world.sandbox.post(f"/sandbox/wechatpay/transactions/{p2['out_trade_no']}/pay")
        await world.platform.drain()
        after = await state(world, p2["id"])
        assert after["payment"] == "paid" and after["outcomes"][-1] == "credited"

        # A certificate the platform no longer lists is dropped at the next fetch; configured keys stay.
        certs = world.sandbox._transport.app.state.sandbox_wechatpay_certificates  # type: ignore[attr-defined]
        del certs[0]
        assert await refresh_wechatpay_certificates_once(world.svc.app) == 1
        assert first not in platforms.wechat_platform_keys and SANDBOX_PLATFORM_KEY_ID in platforms.wechat_platform_keys

    async def test_an_answer_signed_by_an_unknown_key_is_not_believed(self, world: PayWorld) -> None:
        platforms = _with_settings(world, wechatpay_certificate_mode=True)
        world.platform._keys["wechatpay-platform.pem"] = ind.new_rsa_key()  # an impostor signs, as the known serial
        with pytest.raises(wechatpay.WechatPayError, match="not verified: signature"):
            await refresh_wechatpay_certificates_once(world.svc.app)
        world.platform.platform_serial = "ABCDEF0123"  # ... or as a serial the list does not hold
        with pytest.raises(wechatpay.WechatPayError, match="not verified: unknown_serial"):
            await refresh_wechatpay_certificates_once(world.svc.app)
        assert platforms.wechat_platform_keys.fetched == {}

    async def test_an_answer_signed_by_a_listed_certificate_not_known_yet_is_believed(self, world: PayWorld) -> None:
        # The platform switched to a new certificate before our first fetch: the certificate comes
        # authenticated by the APIv3 key, and the answer verifies with it.
        platforms = _with_settings(world, wechatpay_certificate_mode=True)
        second = (await world.sandbox.post("/sandbox/wechatpay/certificates")).json()["serial_no"]
        await world.sandbox.post(f"/sandbox/wechatpay/certificates/{second}/use")
        assert await refresh_wechatpay_certificates_once(world.svc.app) == 2
        assert second in platforms.wechat_platform_keys

    def test_read_certificates_refuses_a_wrong_serial_a_bad_ciphertext_and_keeps_valid_ones(self) -> None:
        from sandbox.certificates import _certificate

        cert = _certificate(ind.new_rsa_key(), effective=datetime(2026, 1, 1, tzinfo=UTC))
        good = {"serial_no": cert.serial_no, "effective_time": "x", "expire_time": "y", "encrypt_certificate": _encrypted(cert.pem)}
        (read,) = wechatpay.read_certificates(_certificates_answer([good]), APIV3)
        assert read.serial_no == cert.serial_no and read.not_after > 0
        with pytest.raises(wechatpay.WechatPayError, match="another serial"):
            wechatpay.read_certificates(_certificates_answer([{**good, "serial_no": "ABCDEF"}]), APIV3)
        with pytest.raises(wechatpay.WechatPayError, match="decrypted"):
            wechatpay.read_certificates(_certificates_answer([{**good, "encrypt_certificate": _encrypted(cert.pem, b"k" * 32)}]), APIV3)
        for bad in (b"[]", b"{}", b"not json", _certificates_answer([{"serial_no": "1"}])):
            with pytest.raises(wechatpay.WechatPayError):
                wechatpay.read_certificates(bad, APIV3)

    def test_expired_certificates_are_not_kept(self) -> None:
        keys = wechatpay.PlatformKeys({})
        k = ind.new_rsa_key().public_key()
        old = wechatpay.PlatformCertificate("01", "", "", not_after=100.0, key=k, pem="")
        live = wechatpay.PlatformCertificate("02", "", "", not_after=300.0, key=k, pem="")
        keys.replace_fetched([old, live], now=200.0)
        assert list(keys) == ["02"] and len(keys) == 1

    async def test_the_job_does_nothing_outside_certificate_mode(self, world: PayWorld) -> None:
        _with_settings(world, wechatpay_certificate_mode=False)
        await asyncio.wait_for(wechatpay_certificates(world.svc.app, asyncio.Event()), timeout=2)

    async def test_the_job_fetches_at_start_and_stops(self, world: PayWorld) -> None:
        platforms = _with_settings(world, wechatpay_certificate_mode=True)
        stop = asyncio.Event()
        task = asyncio.create_task(wechatpay_certificates(world.svc.app, stop))
        for _ in range(200):
            if platforms.wechat_platform_keys.fetched:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        assert len(platforms.wechat_platform_keys.fetched) == 1


async def open_for(world: PayWorld, id_number: str, channel: str) -> dict[str, Any]:
    decl_id = await world.declaration(id_number)
    prn = citizen(id_number, "李四", level=2, platform="wechat" if channel == "wechat" else "alipay")
    r = await world.open(decl_id, channel, prn=prn)
    assert r.status_code == 201, r.text
    return r.json()


class TestUnknownSerialBringsTheFetchForward:
    async def test_a_notification_signed_by_a_new_certificate_is_credited_on_the_platforms_retry(
        self, world: PayWorld, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from services.contribution.payments import jobs

        monkeypatch.setattr(jobs, "CERTIFICATES_EARLY_SECONDS", 0.0)
        monkeypatch.setattr(jobs, "CERTIFICATES_TICK_SECONDS", 0.01)
        platforms = _with_settings(world, wechatpay_certificate_mode=True)  # refreshed every 12 h
        stop = asyncio.Event()
        task = asyncio.create_task(wechatpay_certificates(world.svc.app, stop))
        try:
            await _until(lambda: bool(platforms.wechat_platform_keys.fetched))
            p = await open_wechat(world)
            # The platform starts signing with a certificate published after our last fetch.
            second = (await world.sandbox.post("/sandbox/wechatpay/certificates")).json()["serial_no"]
            await world.sandbox.post(f"/sandbox/wechatpay/certificates/{second}/use")
            order = next(o for o in world.platform.wechat_orders.values() if o["out_trade_no"] == p["out_trade_no"])
            order["trade_state"] = "SUCCESS"
            order["transaction_id"] = "4200000000000000000000000001"
            body, headers = world.platform.wechat_notification(order)
            first_try = await world.client.post("/contribution/v1/notify/wechatpay", content=body, headers=headers)
            assert first_try.status_code >= 400  # not verified: the serial is not known yet
            await _until(lambda: second in platforms.wechat_platform_keys)
            retry = await world.client.post("/contribution/v1/notify/wechatpay", content=body, headers=headers)
            assert retry.status_code in (200, 204), retry.text
            assert (await state(world, p["id"]))["payment"] == "paid"
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)


async def _until(check: Any, timeout: float = 10) -> None:
    """Wait (polling the job's effect) until `check()` holds."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110  (the job has no event to wait on)
            await asyncio.sleep(0.01)
