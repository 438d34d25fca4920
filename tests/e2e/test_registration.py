"""End to end through the gateway: an employer registers and enrols an employee (late),
separates them, and the person enrols as flexible from the month after."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import make_credit_code, make_id_number

pytestmark = pytest.mark.e2e


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


async def test_employer_enrols_separates_then_flexible(stack: Any) -> None:
    rnd = random.Random()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    first_of_month = today.replace(day=1)
    last_of_previous = first_of_month - timedelta(days=1)
    hire = last_of_previous.replace(day=1) - timedelta(days=40)  # registered well past the 30 days
    cc = make_credit_code(f"91110105MA{rnd.randint(0, 9_999_999):07d}")
    other_cc = make_credit_code(f"91310000MA{rnd.randint(0, 9_999_999):07d}")
    idn = make_id_number("110105", f"19{rnd.randint(60, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}", f"{rnd.randint(0, 999):03d}")
    name = "孙七"
    unit = await stack.auth(kind="employer", credit_code=cc, unit_name="示例餐饮有限公司", operator="经办人")
    other_unit = await stack.auth(kind="employer", credit_code=other_cc, unit_name="别家公司", operator="经办人")
    person = await stack.auth(kind="citizen", id_number=idn, name=name, realname_level=3, auth_method="face")
    c = stack.client
    base = "/registration/v1"

    r = await c.post(f"{base}/employers", headers=unit, json={
        "credit_code": cc, "name": "示例餐饮有限公司", "region_code": "110105", "address": "北京市朝阳区示例路8号",
        "contact": "周八 13900000000", "work_injury_class": 4})
    assert r.status_code == 201, r.text

    r = await c.post(f"{base}/employers/{cc}/employees", headers={**unit, "Idempotency-Key": f"hire-{idn[-6:]}"}, json={
        "id_number": idn, "name": name, "hire_date": hire.isoformat(), "monthly_wage_fen": 900_000,
        "insurance_types": ["pension", "medical", "unemployment", "work_injury", "maternity"]})
    assert r.status_code == 201, r.text
    hired = r.json()
    assert hired["late"] is True and hired["late_days"] == (today - hire).days - 30
    assert idn not in r.text and hired["id_number_masked"].endswith(idn[-4:])

    r = await c.get(f"{base}/employers/{cc}/employees", headers=other_unit)
    assert r.status_code == 403 and r.json()["code"] == "not_own_employer"
    roster = (await c.get(f"{base}/employers/{cc}/employees?status=active", headers=unit)).json()
    assert [i["person_id"] for i in roster["items"]] == [hired["person_id"]]

    # While employed, a flexible enrolment is refused, naming the employee one.
    flexible = {"category": "flexible", "region_code": "110105", "household_region_code": "110105",
                "insurance_types": ["pension", "medical"], "start_month": _month(today)}
    r = await c.post(f"{base}/me/enrolments", headers=person, json=flexible)
    assert r.status_code == 409 and r.json()["open_enrolment"]["id"] == hired["id"], r.text

    r = await c.post(f"{base}/employers/{cc}/employees/{hired['person_id']}/separation", headers=unit,
                     json={"separation_date": last_of_previous.isoformat(), "reason": "辞职"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ended" and r.json()["end_month"] == _month(last_of_previous)

    r = await c.post(f"{base}/me/enrolments", headers=person, json={**flexible, "id_number": make_id_number()})
    assert r.status_code == 422, "an id number in the body is refused"
    r = await c.post(f"{base}/me/enrolments", headers=person, json=flexible)
    assert r.status_code == 201, r.text
    assert r.json()["category"] == "flexible" and r.json()["person_id"] == hired["person_id"]

    me = (await c.get(f"{base}/me", headers=person)).json()
    assert [(e["category"], e["status"]) for e in me["enrolments"]] == [("employee", "ended"), ("flexible", "active")]
    assert [h["change"] for h in me["history"]] == ["enrolled", "separated", "enrolment_ended", "enrolled"]
    assert me["enrolments"][0]["employer"]["name"] == "示例餐饮有限公司"

    # At once, with no wait for the other services' consumers: contribution and
    # card catch up on registration's feed rather than answer "not enrolled".
    r = await c.post("/contribution/v1/me/declarations", headers={**person, "Idempotency-Key": f"decl-{idn[-6:]}"},
                     json={"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": [_month(today)]})
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["person_id"] == hired["person_id"] and r.json()["total_fen"] > 0
    r = await c.post("/card/v1/me/applications", headers={**person, "Idempotency-Key": f"card-{idn[-6:]}"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "applied"
