"""End to end through the gateway: a flexible person declares three months (one back-paid), confirms,
pays through the sandbox's Alipay or WeChat Pay, sees the months paid and a certificate that verifies."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import make_id_number

pytestmark = pytest.mark.e2e


def _months() -> list[str]:
    """Last month (back-paid), this month and next month; in January, this and the next two."""
    today = datetime.now(ZoneInfo("Asia/Shanghai"))
    first = today.year * 12 + today.month - 1 - (1 if today.month > 1 else 0)
    return [f"{(first + i) // 12:04d}-{(first + i) % 12 + 1:02d}" for i in range(3)]


async def _declare_and_confirm(stack: Any, issuer: str, name: str) -> tuple[dict[str, str], str, dict[str, Any]]:
    rnd = random.Random()
    idn = make_id_number("110105", f"19{rnd.randint(60, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}", f"{rnd.randint(0, 999):03d}")
    person = await stack.auth(issuer, kind="citizen", id_number=idn, name=name, realname_level=3, auth_method="face")
    c = stack.client
    months = _months()
    r = await c.post("/registration/v1/me/enrolments", headers=person, json={
        "category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": months[0]})
    assert r.status_code == 201, r.text
    r = await c.get("/contribution/v1/policies/110105", params={"on": months[-1]})
    assert r.status_code == 200, r.text
    body = {"category": "flexible", "region_code": "110105", "base_fen": r.json()["base_lower_fen"], "months": months}
    created: dict[str, Any] = {}

    async def declared() -> bool:
        resp = await c.post("/contribution/v1/me/declarations", headers={**person, "Idempotency-Key": f"d-{idn}"}, json=body)
        if resp.status_code == 201:
            created.update(resp.json())
            return True
        assert resp.json()["code"] == "not_enrolled", resp.text
        return False

    await stack.wait_until(declared, timeout=15)
    assert created["months"] == months and created["total_fen"] > 0
    r = await c.post(f"/contribution/v1/me/declarations/{created['id']}/confirm", headers=person)
    assert r.status_code == 200 and r.json()["status"] == "awaiting_payment", r.text
    return person, idn, created


async def _after_payment(stack: Any, person: dict[str, str], idn: str, decl: dict[str, Any], payment_id: str, channel: str) -> None:
    c = stack.client
    latest: dict[str, Any] = {}

    async def paid() -> bool:
        resp = await c.get(f"/contribution/v1/me/declarations/{decl['id']}", headers=person)
        latest.update(resp.json())
        return resp.json()["status"] == "paid"

    await stack.wait_until(paid, timeout=15)
    [payment] = latest["payments"]
    assert payment["id"] == payment_id and payment["channel"] == channel and payment["status"] == "paid"
    code = payment["certificate_code"]
    assert code

    years = sorted({m[:4] for m in decl["months"]})
    paid_items = []
    for year in years:
        r = await c.get("/contribution/v1/me/records", headers=person, params={"year": year})
        assert r.status_code == 200, r.text
        paid_items += [(i["month"], i["insurance"]) for i in r.json()["items"] if i["status"] == "paid"]
    assert sorted(paid_items) == sorted((m, ins) for m in decl["months"] for ins in ("pension", "medical"))

    r = await c.get(f"/contribution/v1/me/payments/{payment_id}/certificate", headers=person)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    r = await c.get(f"/contribution/v1/certificates/{code}")
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["valid"] is True and check["months"] == decl["months"] and check["amount_fen"] == decl["total_fen"]
    assert idn not in r.text and check["holder_id_masked"].endswith(idn[-4:])
    r = await c.get("/contribution/v1/certificates/" + "A" * 24)
    assert r.status_code == 404


async def test_pay_with_alipay(stack: Any) -> None:
    person, idn, decl = await _declare_and_confirm(stack, "sandbox-alipay", "郑一")
    url = f"/contribution/v1/declarations/{decl['id']}/payments"
    r = await stack.client.post(url, headers=person, json={"channel": "alipay"})
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
    r = await stack.client.post(url, headers={**person, "Idempotency-Key": str(uuid.uuid4())}, json={"channel": "alipay"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["amount_fen"] == decl["total_fen"] and p["trade_no"]
    r = await stack.sandbox.post(f"/sandbox/alipay/trades/{p['trade_no']}/pay")
    assert r.status_code == 200, r.text
    await _after_payment(stack, person, idn, decl, p["id"], "alipay")


async def test_pay_with_wechat_pay(stack: Any) -> None:
    person, idn, decl = await _declare_and_confirm(stack, "sandbox-wechat", "王二")
    r = await stack.client.post(f"/contribution/v1/declarations/{decl['id']}/payments",
                                headers={**person, "Idempotency-Key": str(uuid.uuid4())}, json={"channel": "wechat"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["package"].startswith("prepay_id=") and p["signType"] == "RSA" and p["paySign"]
    r = await stack.sandbox.post(f"/sandbox/wechatpay/transactions/{p['out_trade_no']}/pay")
    assert r.status_code == 200, r.text
    await _after_payment(stack, person, idn, decl, p["id"], "wechat")
