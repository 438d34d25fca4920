"""End to end through the gateway: an employer's annual declaration, approved by a reviewer, becomes
the contribution bases the employer's monthly declaration uses (registration -> review -> contribution)."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import make_credit_code, make_id_number

pytestmark = pytest.mark.e2e


async def test_approved_annual_declaration_becomes_the_new_bases(stack: Any) -> None:
    rnd = random.Random()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    year = today.year - 1
    effective_from = f"{year + 1}-07"  # Beijing's band year starts in July
    current = today.strftime("%Y-%m")
    cc = make_credit_code(f"91110105MA{rnd.randint(0, 9_999_999):07d}")
    ids = [make_id_number("110105", f"19{rnd.randint(60, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}",
                          f"{rnd.randint(0, 999):03d}") for _ in range(2)]
    assert ids[0] != ids[1]
    unit = await stack.auth(kind="employer", credit_code=cc, unit_name="示例年审有限公司", operator="经办人")
    reviewer = await stack.auth(kind="staff", staff_id="R-e2e", roles=["reviewer"])
    c = stack.client

    r = await c.post("/registration/v1/employers", headers=unit, json={
        "credit_code": cc, "name": "示例年审有限公司", "region_code": "110105", "address": "北京市朝阳区示例路9号",
        "contact": "郑经办 13900000001", "work_injury_class": 1})
    assert r.status_code == 201, r.text
    person_ids = []
    for idn, name in zip(ids, ("陈一", "林二"), strict=True):
        r = await c.post(f"/registration/v1/employers/{cc}/employees", headers=unit, json={
            "id_number": idn, "name": name, "hire_date": f"{year}-01-02", "monthly_wage_fen": 1_000_000,
            "insurance_types": ["pension", "medical", "unemployment", "work_injury"]})
        assert r.status_code == 201, r.text
        person_ids.append(r.json()["person_id"])

    roster_url = f"/review/v1/employers/{cc}/annual-declarations/{year}/roster"

    async def roster_complete() -> bool:
        resp = await c.get(roster_url, headers=unit)
        return resp.status_code == 200 and len(resp.json()["items"]) == 2

    await stack.wait_until(roster_complete, timeout=15)
    csv_resp = await c.get(roster_url, params={"format": "csv"}, headers=unit)
    assert csv_resp.content.startswith(b"\xef\xbb\xbf") and "陈一" in csv_resp.content.decode("utf-8-sig")

    decl_url = f"/review/v1/employers/{cc}/annual-declarations/{year}"
    lines = [
        {"id_number": ids[0], "name": "陈一", "avg_monthly_wage_fen": 1_234_500},
        {"id_number": ids[1], "name": "林二", "avg_monthly_wage_fen": 1_500_000},
    ]
    r = await c.put(decl_url, headers=unit, json={"lines": lines})
    assert r.status_code == 200, r.text
    diff = r.json()["differences"]
    assert diff["not_declared"] == [] and diff["not_registered"] == [] and diff["name_differs"] == []
    r = await c.post(f"{decl_url}/submit", headers={**unit, "Idempotency-Key": f"submit-{cc}"})
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text
    r = await c.post(f"/review/v1/annual-declarations/{r.json()['id']}/decision", headers=reviewer,
                     json={"decision": "approve"})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    receipt = await c.get(f"{decl_url}/receipt", headers=unit)
    assert receipt.status_code == 200 and receipt.content.startswith(b"%PDF")

    if current < effective_from:
        pytest.skip(f"the new bases apply from {effective_from}, a month that cannot be declared yet")
    months = []
    m = effective_from
    while m <= current:
        months.append(m)
        y, mm = int(m[:4]), int(m[5:])
        m = f"{y + (mm == 12):04d}-{mm % 12 + 1:02d}"

    # Each try declares one month for the first employee; until contribution has applied the
    # approval the month is priced at the registered wage, so the next try takes the next month.
    bases_seen = []
    for month in months:
        for _ in range(50):
            r = await c.post(f"/contribution/v1/employers/{cc}/declarations", headers=unit,
                             json={"month": month, "person_ids": [person_ids[0]]})
            if r.status_code == 201:
                break
            assert r.status_code == 422, r.text  # contribution has not learnt the employment yet
            await asyncio.sleep(0.2)
        assert r.status_code == 201, r.text
        pension = [x for x in r.json()["lines"] if x["insurance"] == "pension" and x["payer"] == "employee"]
        bases_seen.append(pension[0]["base_fen"])
        if bases_seen[-1] == 1_234_500:
            break
        await asyncio.sleep(1.0)
    assert bases_seen[-1] == 1_234_500, bases_seen
