"""Certificates: the owner's PDF in Chinese (rendered and checked), the public check by code."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from services.common.pii import mask_id_number
from tests.contribution.payments.conftest import ALICE, BOB, PayWorld
from tests.contribution.payments.test_notify import alipay_signed, open_alipay, post_alipay
from tests.helpers import citizen

MASKED = mask_id_number(ALICE)


async def paid(world: PayWorld, **decl: Any) -> dict[str, Any]:
    p = await open_alipay(world, **decl)
    total = f"{p['amount_fen'] // 100}.{p['amount_fen'] % 100:02d}"
    assert (await post_alipay(world, alipay_signed(p, total_amount=total))).text == "success"
    r = await world.client.get(f"/contribution/v1/me/declarations/{p['declaration_id']}", headers=world.headers(citizen(ALICE)))
    assert r.status_code == 200, r.text
    [summary] = r.json()["payments"]
    assert summary["status"] == "paid" and summary["id"] == p["id"]
    return {**p, "certificate_code": summary["certificate_code"]}


class TestCertificatePdf:
    async def test_anonymous_other_person_and_unpaid(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        url = f"/contribution/v1/me/payments/{p['id']}/certificate"
        assert (await world.client.get(url)).status_code == 401
        r = await world.client.get(url, headers=world.headers(citizen(BOB, "李四")))
        assert r.status_code == 404 and r.json()["code"] == "payment_not_found"
        r = await world.client.get(url, headers=world.headers(citizen(ALICE)))
        assert r.status_code == 409 and r.json()["code"] == "certificate_not_available"
        r = await world.client.get("/contribution/v1/me/payments/nope/certificate", headers=world.headers(citizen(ALICE)))
        assert r.status_code == 404

    async def test_pdf_in_chinese_with_the_verification_code(self, world: PayWorld, tmp_path: Path) -> None:
        p = await paid(world)
        r = await world.client.get(f"/contribution/v1/me/payments/{p['id']}/certificate", headers=world.headers(citizen(ALICE, level=1)))
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF") and len(r.content) < 400_000
        text = PdfReader(io.BytesIO(r.content)).pages[0].extract_text()
        for expected in ("社会保险费缴费凭证", "张三", MASKED, "2026-01", "养老保险", "医疗保险", "6,300.00",
                         "支付宝", p["certificate_code"], "2026-03-10 10:04:59"):
            assert expected in text, (expected, text)
        assert ALICE not in text  # the id number is masked
        if shutil.which("pdftoppm") is None:
            pytest.skip("pdftoppm (poppler-utils) is not installed")
        pdf = tmp_path / "certificate.pdf"
        pdf.write_bytes(r.content)
        cmd = ["pdftoppm", "-png", "-r", "60", "-singlefile", str(pdf), str(tmp_path / "page")]
        await asyncio.to_thread(subprocess.run, cmd, check=True)
        from PIL import Image

        img = Image.open(tmp_path / "page.png").convert("L")
        dark = sum(1 for v in img.getdata() if v < 128)
        assert dark > 3000, "the page is blank: the Chinese font did not render"
        # Rendered text covers the title area (a missing font renders nothing or boxes in a thin band).
        w, h = img.size
        title = img.crop((int(w * 0.3), int(h * 0.07), int(w * 0.7), int(h * 0.12)))
        assert sum(1 for v in title.getdata() if v < 128) > 200
        if out := os.environ.get("CERTIFICATE_PNG_OUT"):
            shutil.copy(tmp_path / "page.png", out)


class TestCertificateCheck:
    async def test_valid_code(self, world: PayWorld) -> None:
        p = await paid(world)
        r = await world.client.get(f"/contribution/v1/certificates/{p['certificate_code']}")
        assert r.status_code == 200
        body = r.json()
        assert body["valid"] is True and body["holder_name"] == "*三" and body["holder_id_masked"] == MASKED
        assert body["months"] == ["2026-01", "2026-02", "2026-03"] and body["amount_fen"] == 630000
        assert body["channel"] == "alipay" and ALICE not in r.text

    @pytest.mark.parametrize("code", ["AAAAAAAAAAAAAAAAAAAAAAAA", "short", "%2E%2E", "x" * 64])
    async def test_unknown_or_malformed_code(self, world: PayWorld, code: str) -> None:
        r = await world.client.get(f"/contribution/v1/certificates/{code}")
        assert r.status_code in (404, 422)
        if r.status_code == 404:
            assert r.json()["code"] in ("certificate_not_found", "not_found")

    async def test_codes_are_unguessable(self, world: PayWorld) -> None:
        codes = {(await paid(world, months=(m,)))["certificate_code"] for m in ("2026-01", "2026-02")}
        assert len(codes) == 2 and all(len(c) >= 22 for c in codes)
