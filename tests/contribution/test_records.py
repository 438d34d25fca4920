"""My records: months per insurance, who paid, the gaps, and the months left to a monthly pension."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.contracts import registration as reg
from tests.contribution.conftest import (
    AGENCY,
    ALICE,
    BOB,
    UNIT,
    enrol_self,
    feed,
    hire,
    pay,
    person_ref,
    register_unit,
)
from tests.helpers import agency, citizen, employer

R = "/contribution/v1/me/records"


class TestRecords:
    async def test_anonymous_and_wrong_principal(self, svc: Any) -> None:
        assert (await svc.client.get(R)).status_code == 401
        assert (await svc.client.get(R, headers=svc.headers(employer(UNIT)))).status_code == 403
        assert (await svc.client.get(R, headers=svc.headers(agency(AGENCY)))).status_code == 403

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(citizen(ALICE))
        for year in ("20x6", "1800", "99999"):
            assert (await svc.client.get(R, params={"year": year}, headers=h)).status_code == 422

    async def test_empty_record(self, svc: Any) -> None:
        body = (await svc.client.get(R, headers=svc.headers(citizen(ALICE)))).json()
        assert body["year"] == 2026 and body["items"] == [] and body["gaps"] == []
        assert (body["pension_months_paid"], body["pension_months_required"], body["pension_months_remaining"]) == (0, 180, 180)

    async def test_employer_then_self_with_gaps_and_pending(self, svc: Any) -> None:
        # Employed by the unit in January, left; flexible from February; February paid by self, March only declared.
        await register_unit(svc)
        ref = await hire(svc, ALICE, 1000000, start_month="2026-01")
        await feed(svc, reg.PERSON_SEPARATED, reg.PersonSeparated(
            person_id=ref["person_id"], id_hash=ref["id_hash"], enrolment_id=ref["enrolment_id"], employer_credit_code=UNIT,
            separation_date=date(2026, 1, 31), last_month="2026-01",
        ))
        await enrol_self(svc, ALICE, start_month="2026-02")
        svc.clock.set(svc.clock.now().replace(month=1, day=10))
        jan = (await svc.client.post(f"/contribution/v1/employers/{UNIT}/declarations", json={"month": "2026-01"},
                                     headers=svc.headers(employer(UNIT)))).json()
        await pay(svc, jan["id"], payment_id="p-jan")
        svc.clock.set(svc.clock.now().replace(month=4, day=10))  # now 2026-04
        h = svc.headers(citizen(ALICE))
        body = {"category": "flexible", "region_code": "110105", "base_fen": 695700}
        feb = (await svc.client.post("/contribution/v1/me/declarations", json={**body, "months": ["2026-02"]}, headers=h)).json()
        await svc.client.post(f"/contribution/v1/me/declarations/{feb['id']}/confirm", headers=h)
        await pay(svc, feb["id"], payment_id="p-feb")
        mar = (await svc.client.post("/contribution/v1/me/declarations", json={**body, "months": ["2026-04"]}, headers=h)).json()
        await svc.client.post(f"/contribution/v1/me/declarations/{mar['id']}/confirm", headers=h)

        r = await svc.client.get(R, params={"year": 2026}, headers=h)
        assert r.status_code == 200, r.text
        out = r.json()
        pension = [(i["month"], i["amount_fen"], i["paid_by"], i["status"]) for i in out["items"] if i["insurance"] == "pension"]
        assert pension == [
            ("2026-01", 240000, "employer", "paid"),  # 1000000 x (16% + 8%)
            ("2026-02", 139140, "self", "paid"),
            ("2026-04", 139140, None, "awaiting_payment"),
        ]
        jan_parts = next(i for i in out["items"] if i["month"] == "2026-01" and i["insurance"] == "pension")["parts"]
        assert jan_parts == [{"payer": "employer", "amount_fen": 160000}, {"payer": "employee", "amount_fen": 80000}]
        assert out["gaps"] == ["2026-03"]
        assert (out["pension_months_paid"], out["pension_months_remaining"]) == (2, 178)
        other = (await svc.client.get(R, params={"year": 2026}, headers=svc.headers(citizen(BOB)))).json()
        assert other["items"] == [] and other["pension_months_paid"] == 0

    async def test_resident_year_and_pension_minimum_rises_after_2029(self, svc: Any) -> None:
        await enrol_self(svc, BOB, category="resident", start_month="2026-01")
        h = svc.headers(citizen(BOB))
        d = (await svc.client.post("/contribution/v1/me/declarations",
                                   json={"category": "resident", "region_code": "110105", "grade_fen": 50000, "year": 2026},
                                   headers=h)).json()
        await svc.client.post(f"/contribution/v1/me/declarations/{d['id']}/confirm", headers=h)
        await pay(svc, d["id"])
        out = (await svc.client.get(R, headers=h)).json()
        assert [(i["month"], i["year"], i["category"], i["amount_fen"], i["paid_by"]) for i in out["items"]] == [
            (None, 2026, "resident", 50000, "self")
        ]
        assert out["pension_months_paid"] == 0 and out["gaps"] == []
        from services.contribution.policies.pricing import required_pension_months

        assert [required_pension_months(y) for y in (2029, 2030, 2034, 2039, 2045)] == [180, 186, 210, 240, 240]
        assert person_ref(BOB)["id_hash"]
