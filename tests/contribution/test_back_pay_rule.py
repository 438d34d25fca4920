"""One back-pay rule for every category: today's policy says how far back one may pay,
each month's policy says what that month costs. Checked across a change of window."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contribution.test_policies import policy_body
from tests.helpers import citizen, staff

P = "/contribution/v1/policies"
Q = "/contribution/v1/quotes"
REGION = "330000"  # no seeded policy: the test sets both periods itself


async def _two_periods(svc: Any, *, old_window: str, new_window: str) -> None:
    """2024-01..2025-12 with `old_window` and grade 500 CNY; from 2026-01 with `new_window` and grade 600 CNY."""
    admin = svc.headers(staff("admin"))
    old = policy_body(
        effective_to="2025-12", back_pay_window=old_window, base_lower_fen=500000, base_upper_fen=2500000,
        grades=[{"grade_fen": 50000, "subsidy_fen": 6000}],
    )
    r = await svc.client.put(f"{P}/{REGION}/2024-01", json=old, headers=admin)
    assert r.status_code == 201, r.text
    new = policy_body(back_pay_window=new_window, grades=[{"grade_fen": 60000, "subsidy_fen": 6000}])
    r = await svc.client.put(f"{P}/{REGION}/2026-01", json=new, headers=admin)
    assert r.status_code == 201, r.text


def _flexible(months: list[str], base: int) -> dict[str, Any]:
    return {"category": "flexible", "region_code": REGION, "base_fen": base, "months": months}


def _resident(year: int, grade: int) -> dict[str, Any]:
    return {"category": "resident", "region_code": REGION, "grade_fen": grade, "year": year}


class TestWindowWidenedToday:
    """The old period allowed no back payment; today's allows 36 months."""

    @pytest.fixture(autouse=True)
    async def _policies(self, svc: Any) -> None:
        await _two_periods(svc, old_window="none", new_window="months:36")

    async def test_flexible_back_pays_an_old_month_at_that_months_band(self, svc: Any) -> None:
        # 500000 is inside the 2024 band (lower 500000) but below today's (720000).
        r = await svc.client.post(Q, json=_flexible(["2024-06"], 500000), headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["back_payment_months"] == ["2024-06"]
        # 500000 x 20% pension + 500000 x 10% medical.
        assert body["total_fen"] == 100000 + 50000

    async def test_resident_back_pays_an_old_year_at_that_years_grade(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=_resident(2024, 50000), headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["back_payment_months"] == ["2024-01"]
        assert body["total_fen"] == 50000 and body["subsidy_fen"] == 0  # back-paid years get no subsidy
        # Today's grade is not the 2024 one: amounts come from the year's own policy.
        r = await svc.client.post(Q, json=_resident(2024, 60000), headers=svc.headers(citizen()))
        assert r.status_code == 422 and r.json()["code"] == "grade_not_offered"


class TestWindowNarrowedToday:
    """The old period allowed 36 months back; today's allows none."""

    @pytest.fixture(autouse=True)
    async def _policies(self, svc: Any) -> None:
        await _two_periods(svc, old_window="months:36", new_window="none")

    async def test_flexible_is_refused_by_todays_window(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=_flexible(["2025-06"], 500000), headers=svc.headers(citizen()))
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "back_payment_outside_window"
        assert body["window"] == "none" and body["earliest_month"] == "2026-03" and body["months"] == ["2025-06"]

    async def test_resident_is_refused_by_todays_window(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=_resident(2025, 50000), headers=svc.headers(citizen()))
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "back_payment_outside_window"
        assert body["window"] == "none" and body["months"] == ["2025"]

    async def test_this_year_is_not_a_back_payment(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=_resident(2026, 60000), headers=svc.headers(citizen()))
        assert r.status_code == 200 and r.json()["subsidy_fen"] == 6000
