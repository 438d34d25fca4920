"""Regional rules: fixed flexible tiers (base_not_offered), payment frequency, fixed medical levies."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from services.contribution.models import ContributionRecord
from services.contribution.policies.pricing import fits_frequency, whole_periods
from tests.contribution.conftest import ALICE, enrol_self, pay, rows
from tests.contribution.test_policies import policy_body
from tests.helpers import citizen, staff

P = "/contribution/v1/policies"
Q = "/contribution/v1/quotes"
D = "/contribution/v1/me/declarations"

# Beijing from 2026-01 (a test policy): flexible workers choose 60/70/80/90/100% of 11,761 CNY, pay by quarter or
# year, and pay a fixed 5 CNY medical levy a month.
TIERS_FEN = [705660, 823270, 940880, 1058490, 1176100]


async def tiered_quarterly(svc: Any, **over: Any) -> dict[str, Any]:
    body = policy_body(
        avg_wage_fen=1176100, base_lower_fen=695700, base_upper_fen=3528300,
        flexible_base_tiers_pct=[100, 60, 70, 80, 90], frequencies=["quarterly", "yearly"],
        medical_levies_fen={"individual": 500}, account_interest_rates={"2025": 200}, **over,
    )
    r = await svc.client.put(f"{P}/110000/2026-01", json=body, headers=svc.headers(staff("admin")))
    assert r.status_code == 201, r.text
    return dict(r.json())


def flexible(base_fen: int, months: list[str]) -> dict[str, Any]:
    return {"category": "flexible", "region_code": "110105", "base_fen": base_fen, "months": months}


Q1 = ["2026-01", "2026-02", "2026-03"]


class TestPolicyFields:
    async def test_seeded_regions(self, svc: Any) -> None:
        bj = (await svc.client.get(f"{P}/110105", params={"on": "2026-03"})).json()
        assert bj["medical_levies_fen"] == {"employee": 300}  # DOMAIN.md: Beijing, 3 CNY a month for employees
        assert bj["flexible_base_tiers_pct"] == [] and bj["flexible_base_tiers_fen"] == []
        assert bj["account_interest_rates"]["2023"] == 397 and bj["account_interest_rates"]["2024"] == 262
        assert bj["resident_basic_pension_fen"] == 92400
        sh = (await svc.client.get(f"{P}/310104", params={"on": "2026-03"})).json()
        assert sh["medical_levies_fen"] == {} and sh["account_interest_rates"]["2016"] == 831

    async def test_staff_sets_them_and_get_answers_them(self, svc: Any) -> None:
        out = await tiered_quarterly(svc)
        assert out["flexible_base_tiers_pct"] == [60, 70, 80, 90, 100]
        assert out["flexible_base_tiers_fen"] == TIERS_FEN  # 1176100 x 60% = 705660 ...
        assert out["frequencies"] == ["quarterly", "yearly"]
        assert out["medical_levies_fen"] == {"individual": 500}
        assert out["account_interest_rates"] == {"2025": 200}
        got = (await svc.client.get(f"{P}/110105", params={"on": "2026-02"})).json()
        assert got["flexible_base_tiers_fen"] == TIERS_FEN and got["version"] == out["version"]

    @pytest.mark.parametrize("over", [
        {"flexible_base_tiers_pct": [0]},
        {"flexible_base_tiers_pct": [60, 60]},
        {"flexible_base_tiers_pct": ["60"]},
        {"flexible_base_tiers_pct": [60.5]},
        {"medical_levies_fen": {"employer": 300}},
        {"medical_levies_fen": {"employee": -1}},
        {"medical_levies_fen": {"employee": 3.5}},
        {"account_interest_rates": {"20x4": 262}},
        {"account_interest_rates": {"２０２４": 262}},
        {"account_interest_rates": {"2024": 10001}},
        {"resident_basic_pension_fen": -1},
        {"resident_basic_pension_fen": "92400"},
        {"frequencies": []},
        {"frequencies": ["weekly"]},
    ])
    async def test_bad_fields(self, svc: Any, over: dict[str, Any]) -> None:
        r = await svc.client.put(f"{P}/110000/2026-01", json=policy_body(**over), headers=svc.headers(staff("admin")))
        assert r.status_code == 422, (over, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


class TestFixedTiers:
    async def test_quote_refuses_a_base_not_offered(self, svc: Any) -> None:
        await tiered_quarterly(svc)
        h = svc.headers(citizen(ALICE))
        for base in (695700, 705661, 3528300):  # in the band, but not a tier
            r = await svc.client.post(Q, json=flexible(base, Q1), headers=h)
            assert r.status_code == 422 and r.json()["code"] == "base_not_offered", r.text
            assert r.json()["tiers_fen"] == TIERS_FEN and r.json()["tiers_pct"] == [60, 70, 80, 90, 100]
        en = await svc.client.post(Q, json=flexible(695700, Q1), headers={**h, "Accept-Language": "en"})
        assert "705660" in en.json()["detail"]
        r = await svc.client.post(Q, json=flexible(823270, Q1), headers=h)
        assert r.status_code == 200 and {x["base_fen"] for x in r.json()["lines"]} == {823270}

    async def test_declaration_refuses_a_base_not_offered(self, svc: Any) -> None:
        await tiered_quarterly(svc)
        await enrol_self(svc, ALICE, start_month="2026-01")
        h = svc.headers(citizen(ALICE))
        r = await svc.client.post(D, json=flexible(695700, Q1), headers=h)
        assert r.status_code == 422 and r.json()["code"] == "base_not_offered"
        assert (await svc.client.get(D, headers=h)).json()["items"] == []

    async def test_months_before_the_tiers_keep_the_band(self, svc: Any) -> None:
        # The tiers start 2026-04: the first quarter still runs under the seeded policy (any base in the band).
        body = policy_body(avg_wage_fen=1176100, base_lower_fen=695700, base_upper_fen=3528300,
                           flexible_base_tiers_pct=[60, 70, 80, 90, 100])
        r = await svc.client.put(f"{P}/110000/2026-04", json=body, headers=svc.headers(staff("admin")))
        assert r.status_code == 201, r.text
        h = svc.headers(citizen(ALICE))
        assert (await svc.client.post(Q, json=flexible(695700, Q1), headers=h)).status_code == 200
        r = await svc.client.post(Q, json=flexible(695700, ["2026-03", "2026-04"]), headers=h)
        assert r.status_code == 422 and r.json()["code"] == "base_not_offered" and r.json()["month"] == "2026-04"


class TestFrequency:
    def test_fit(self) -> None:
        assert fits_frequency(["2026-02"], "monthly")
        assert fits_frequency(Q1, "quarterly") and fits_frequency(Q1 + ["2026-04", "2026-05", "2026-06"], "quarterly")
        assert not fits_frequency(["2026-02", "2026-03", "2026-04"], "quarterly")  # three months, two quarters
        assert fits_frequency([f"2026-{m:02d}" for m in range(7, 13)], "half_yearly")
        assert not fits_frequency(Q1, "half_yearly") and not fits_frequency(Q1, "yearly")
        assert whole_periods(["2026-02", "2026-05"], "quarterly") == [f"2026-{m:02d}" for m in range(1, 7)]

    async def test_quarterly_payer_declares_whole_quarters(self, svc: Any) -> None:
        await tiered_quarterly(svc)
        await enrol_self(svc, ALICE, start_month="2026-01")
        h = svc.headers(citizen(ALICE))
        for months in (["2026-03"], ["2026-02", "2026-03"], ["2026-03", "2026-04", "2026-05"]):
            r = await svc.client.post(D, json=flexible(705660, months), headers=h)
            assert r.status_code == 422 and r.json()["code"] == "payment_frequency_mismatch", r.text
            assert r.json()["frequencies"] == ["quarterly", "yearly"]
        r = await svc.client.post(D, json=flexible(705660, ["2026-02", "2026-03"]), headers=h)
        assert r.json()["months_to_declare"] == Q1
        r = await svc.client.post(D, json=flexible(705660, Q1 + ["2026-04", "2026-05", "2026-06"]), headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["months"] == Q1 + ["2026-04", "2026-05", "2026-06"]

    async def test_monthly_region_allows_any_months(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(695700, ["2026-02", "2026-03"]), headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 200

    async def test_employee_quotes_are_monthly(self, svc: Any) -> None:
        await tiered_quarterly(svc)
        r = await svc.client.post(Q, json={"category": "employee", "region_code": "110105", "base_fen": 695700,
                                           "months": ["2026-03"], "work_injury_class": 1},
                                  headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 200, r.text
        levy = [x for x in r.json()["lines"] if x["rate_bp"] == 0]
        assert levy == []  # this test policy levies flexible workers only


class TestMedicalLevy:
    async def test_levy_is_its_own_line_and_is_recorded(self, svc: Any) -> None:
        await tiered_quarterly(svc)
        await enrol_self(svc, ALICE, start_month="2026-01")
        h = svc.headers(citizen(ALICE))
        r = await svc.client.post(D, json=flexible(705660, Q1), headers=h)
        assert r.status_code == 201, r.text
        body = r.json()
        jan = [(x["insurance"], x["payer"], x["rate_bp"], x["amount_fen"]) for x in body["lines"] if x["month"] == "2026-01"]
        # 705660 x 20% = 141132, x 10% = 70566, and the 5 CNY levy at rate 0
        assert jan == [("pension", "individual", 2000, 141132), ("medical", "individual", 1000, 70566),
                       ("medical", "individual", 0, 500)]
        assert body["total_fen"] == 3 * (141132 + 70566 + 500)
        await svc.client.post(f"{D}/{body['id']}/confirm", headers=h)
        await pay(svc, body["id"])
        recs = await rows(svc, select(ContributionRecord).where(ContributionRecord.insurance == "medical"))
        assert sorted((r.period, r.amount_fen) for r in recs) == [(m, 71066) for m in Q1]
        records = (await svc.client.get("/contribution/v1/me/records", params={"year": 2026}, headers=h)).json()
        med = [i for i in records["items"] if i["insurance"] == "medical"]
        assert [i["amount_fen"] for i in med] == [71066, 71066, 71066]
