"""End to end through the gateway: a person enrols as flexible, contribution learns it from
registration's feed, and the person adds a declaration, confirms it and sees it in their record."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import make_id_number

pytestmark = pytest.mark.e2e


async def test_flexible_person_declares_and_confirms(stack: Any) -> None:
    rnd = random.Random()
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    idn = make_id_number("110105", f"19{rnd.randint(60, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}", f"{rnd.randint(0, 999):03d}")
    person = await stack.auth(kind="citizen", id_number=idn, name="周九", realname_level=3, auth_method="face")
    stranger = await stack.auth(kind="citizen", id_number=make_id_number("110105", "19700101", f"{rnd.randint(0, 999):03d}"),
                                name="吴十", realname_level=3, auth_method="face")
    c = stack.client

    r = await c.get("/contribution/v1/policies/110105", params={"on": month})
    assert r.status_code == 200, r.text
    policy = r.json()
    assert policy["region_code"] == "110000"
    lower = policy["base_lower_fen"]
    pension_bp = policy["rates"]["pension"]["individual"]
    medical_bp = policy["rates"]["medical"]["individual"]

    body = {"category": "flexible", "region_code": "110105", "base_fen": lower, "months": [month]}
    r = await c.post("/contribution/v1/me/declarations", headers=person, json=body)
    assert r.status_code == 422 and r.json()["code"] == "not_enrolled"

    r = await c.post("/registration/v1/me/enrolments", headers=person, json={
        "category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": month})
    assert r.status_code == 201, r.text

    created: dict[str, Any] = {}

    async def declared() -> bool:
        resp = await c.post("/contribution/v1/me/declarations", headers={**person, "Idempotency-Key": f"decl-{idn}"}, json=body)
        if resp.status_code == 201:
            created.update(resp.json())
            return True
        assert resp.json()["code"] == "not_enrolled", resp.text
        return False

    await stack.wait_until(declared, timeout=15)
    expected = (lower * pension_bp + 5000) // 10000 + (lower * medical_bp + 5000) // 10000
    assert created["status"] == "draft" and created["total_fen"] == expected
    assert idn not in str(created)

    r = await c.get(f"/contribution/v1/me/declarations/{created['id']}", headers=stranger)
    assert r.status_code == 404
    r = await c.post(f"/contribution/v1/me/declarations/{created['id']}/confirm", headers=person)
    assert r.status_code == 200 and r.json()["status"] == "awaiting_payment"
    r = await c.post("/contribution/v1/me/declarations", headers=person, json=body)
    assert r.status_code == 409 and r.json()["code"] == "month_already_declared"

    r = await c.get("/contribution/v1/me/records", headers=person)
    assert r.status_code == 200
    pending = [i for i in r.json()["items"] if i["status"] == "awaiting_payment"]
    assert {i["insurance"] for i in pending} == {"pension", "medical"}
