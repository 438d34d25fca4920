"""Rotating the e-card QR signing key without an outage: a QR shown before the switch still verifies
while its key is in the set (CARD_QR_PUBLIC_KEYS_FILE); once the old key is removed it no longer does."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwt

from services.card.ecard import QrSigner, legacy_qr_kid
from services.card.errors import QrInvalid
from services.common.clock import FrozenClock
from services.common.keyset import jwks_document, public_key_of_pem, thumbprint
from tests.card.conftest import START, CardFlow
from tests.conftest import KEYS
from tests.gateway.conftest import new_ec_pem
from tests.helpers import channel

HOSPITAL = channel("hospital", "H-301")
OLD_PEM = (KEYS / "card-qr-signing.pem").read_text()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jwks(path: Path, *pems: str) -> None:
    keys = [public_key_of_pem(p) for p in pems]
    write_atomically(path, json.dumps(jwks_document((thumbprint(k), k) for k in keys)))


def kid_of(pem: str) -> str:
    return thumbprint(public_key_of_pem(pem))


@pytest.fixture
async def rotating(make_service: Any, tmp_path: Path) -> Any:
    signing = tmp_path / "qr-signing.pem"
    signing.write_text(OLD_PEM)
    jwks = tmp_path / "qr-keys.json"
    write_jwks(jwks, OLD_PEM)
    svc = await make_service(
        "card", clock=FrozenClock(START), pin_hash_time_cost=1, pin_hash_memory_kib=64, pin_hash_parallelism=1,
        qr_signing_key_file=signing, qr_public_keys_file=jwks,
    )
    signer: QrSigner = svc.app.state.qr_signer
    signer.keys.check_seconds = 0  # see each file change at once (5 s by default)
    assert signer.signing is not None
    signer.signing.check_seconds = 0
    return CardFlow(svc), signing, jwks


async def _qr(flow: CardFlow, idn: str) -> str:
    r = await flow.client.post("/card/v1/me/ecard/qrcode", headers=flow.h(flow.citizen(idn)))
    assert r.status_code == 200, r.text
    payload: str = r.json()["payload"]
    return payload


async def _verify(flow: CardFlow, payload: str) -> Any:
    return await flow.client.post("/card/v1/ecard/verifications", json={"payload": payload}, headers=flow.h(HOSPITAL))


class TestQrKeyRotation:
    async def test_add_switch_remove(self, rotating: Any, idn: str) -> None:
        flow, signing, jwks = rotating
        await flow.active_card(idn)
        assert (await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn)))).status_code == 201
        new = new_ec_pem()

        before_add = await _qr(flow, idn)
        assert jwt.get_unverified_header(before_add)["kid"] == kid_of(OLD_PEM)
        # 1. the new public key is added to the set
        write_jwks(jwks, OLD_PEM, new)
        before_switch = await _qr(flow, idn)
        # 2. the signing key is switched
        write_atomically(signing, new)
        after_switch = await _qr(flow, idn)
        assert jwt.get_unverified_header(after_switch)["kid"] == kid_of(new)
        # QRs shown before the switch verify, as do the new ones, while the old key is in the set.
        for payload in (before_add, before_switch, after_switch):
            r = await _verify(flow, payload)
            assert r.status_code == 201, r.text
        # 3. the old key is removed once every QR it signed has expired
        kept = await _qr(flow, idn)
        stale = await _qr_signed_with(flow, idn, OLD_PEM)
        write_jwks(jwks, new)
        assert (await _verify(flow, kept)).status_code == 201
        r = await _verify(flow, stale)
        assert r.status_code == QrInvalid.status, r.text
        assert r.json()["code"] == "qr_invalid"

    async def test_a_qr_signed_before_kids_were_thumbprints_verifies(self, rotating: Any, idn: str) -> None:
        flow, _signing, _jwks = rotating
        await flow.active_card(idn)
        await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn)))
        payload = await _qr(flow, idn)
        claims = jwt.get_unverified_claims(payload)
        der = public_key_of_pem(OLD_PEM).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        legacy = hashlib.sha256(der).hexdigest()[:16]
        assert legacy_qr_kid(public_key_of_pem(OLD_PEM)) == legacy
        old_style = jwt.encode(claims, OLD_PEM, algorithm="ES256", headers={"kid": legacy})
        assert (await _verify(flow, old_style)).status_code == 201

    async def test_an_unknown_kid_is_refused(self, rotating: Any, idn: str) -> None:
        flow, _signing, _jwks = rotating
        await flow.active_card(idn)
        await flow.client.post("/card/v1/me/ecard", headers=flow.h(flow.citizen(idn)))
        claims = jwt.get_unverified_claims(await _qr(flow, idn))
        stranger = new_ec_pem()
        for pem, kid in ((stranger, kid_of(stranger)), (stranger, kid_of(OLD_PEM)), (OLD_PEM, "nope")):
            r = await _verify(flow, jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid}))
            assert r.json()["code"] == "qr_invalid"

    def test_a_missing_key_set_file_refuses_to_start(self, tmp_path: Path) -> None:
        from services.card.settings import Settings
        from services.common.settings import CommonSettings, ConfigurationError

        with pytest.raises(ConfigurationError, match="CARD_QR_PUBLIC_KEYS_FILE"):
            Settings(qr_public_keys_file=tmp_path / "absent.json").qr_signing_key_path(CommonSettings(var_dir=KEYS.parent))


async def _qr_signed_with(flow: CardFlow, idn: str, pem: str) -> str:
    """A fresh QR payload for the card, re-signed with `pem` (as a QR shown before the switch would be)."""
    claims = jwt.get_unverified_claims(await _qr(flow, idn))
    return jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid_of(pem)})
