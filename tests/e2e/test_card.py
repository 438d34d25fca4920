"""End to end through the gateway: enrol, apply, issue, activate at a bank, change the initial PIN,
get an e-card QR code, and a hospital verifies it."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import make_id_number

pytestmark = pytest.mark.e2e


async def test_card_from_enrolment_to_hospital_scan(stack: Any) -> None:
    rnd = random.Random()
    idn = make_id_number("110105", f"19{rnd.randint(60, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}", f"{rnd.randint(0, 999):03d}")
    name = "赵六"
    card_no = f"J{rnd.randint(0, 99_999_999):08d}"
    citizen = await stack.auth(kind="citizen", id_number=idn, name=name, realname_level=3, auth_method="face")
    bank = await stack.auth(kind="channel", channel_kind="bank", branch_id="ICBC-0101")
    hospital = await stack.auth(kind="channel", channel_kind="hospital", branch_id="H-301")
    c = stack.client

    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    r = await c.post("/registration/v1/me/enrolments", headers=citizen, json={
        "category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": month,
    })
    assert r.status_code == 201, r.text

    applied: dict[str, Any] = {}

    async def card_applied() -> bool:
        resp = await c.post("/card/v1/me/applications", headers=citizen)
        if resp.status_code == 201:
            applied.update(resp.json())
            return True
        assert resp.status_code == 409 and resp.json()["code"] == "enrolment_required", resp.text
        return False

    await stack.wait_until(card_applied, timeout=15)
    card_id = applied["id"]
    assert applied["status"] == "applied"

    waiting = await c.get("/card/v1/cards?status=applied&limit=500", headers=bank)
    assert waiting.status_code == 200 and card_id in [x["id"] for x in waiting.json()["items"]]

    r = await c.post(f"/card/v1/cards/{card_id}/issuance", headers=bank, json={"card_no": card_no, "bank": "中国工商银行"})
    assert r.status_code == 200, r.text
    assert r.json()["card_no_masked"] == card_no[0] + "******" + card_no[-2:]

    r = await c.post("/card/v1/activations", headers=bank, json={"card_no": card_no, "id_number": idn, "name": name})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["activation_branch"] == "ICBC-0101"

    mine = (await c.get("/card/v1/me/card", headers=citizen)).json()
    assert mine["initial_pin_unchanged"] is True and mine["card_no_masked"].endswith(card_no[-2:])
    initial = idn[-6:].replace("X", "0")
    new_pin = next(p for p in ("285714", "302917", "418305") if p not in idn)
    r = await c.put("/card/v1/me/card/pin", headers=citizen, json={"old_pin": initial, "new_pin": new_pin})
    assert r.status_code == 200, r.text
    assert r.json()["initial_pin_unchanged"] is False

    r = await c.post("/card/v1/me/ecard", headers=citizen)
    assert r.status_code == 201, r.text
    assert r.json()["platform"] == "alipay" and r.json()["status"] == "active"
    r = await c.post("/card/v1/me/ecard/qrcode", headers=citizen)
    assert r.status_code == 200, r.text
    payload = r.json()["payload"]

    r = await c.post("/card/v1/ecard/verifications", headers=hospital, json={"payload": payload})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["card_status"] == "active" and body["card_id"] == card_id
    assert body["holder_name_masked"] == "*六" and idn not in r.text
    replay = await c.post("/card/v1/ecard/verifications", headers=hospital, json={"payload": payload})
    assert replay.status_code == 409 and replay.json()["code"] == "qr_already_used"
