"""Quotes: hand-computed prices, refusals, and the property that totals are the sum of their lines."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.enums import Category
from services.contribution.enums import LinePayer
from services.contribution.models import Policy
from services.contribution.policies.pricing import late_fee, premium, round_fen
from services.contribution.policies.quotes import Priced, payer_lines
from tests.contribution.conftest import AGENCY
from tests.helpers import agency, citizen, employer, staff

Q = "/contribution/v1/quotes"


def flexible(months: list[str], base: int = 695700, region: str = "110105") -> dict[str, Any]:
    return {"category": "flexible", "region_code": region, "base_fen": base, "months": months}


class TestQuote:
    async def test_anonymous_and_wrong_principal(self, svc: Any) -> None:
        assert (await svc.client.post(Q, json=flexible(["2026-03"]))).status_code == 401
        for prn in (employer(), staff("admin")):
            r = await svc.client.post(Q, json=flexible(["2026-03"]), headers=svc.headers(prn))
            assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"

    async def test_flexible_beijing_lower_band_three_months_one_back_paid(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2026-04", "2026-02", "2026-03"]), headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        body = r.json()
        # 695700 x 20% = 139140 pension, 695700 x 10% = 69570 medical, per month 208710, three months 626130.
        assert body["months"] == ["2026-02", "2026-03", "2026-04"]
        assert body["back_payment_months"] == ["2026-02"]
        assert [(x["month"], x["insurance"], x["payer"], x["base_fen"], x["rate_bp"], x["amount_fen"]) for x in body["lines"][:2]] == [
            ("2026-02", "pension", "individual", 695700, 2000, 139140),
            ("2026-02", "medical", "individual", 695700, 1000, 69570),
        ]
        assert len(body["lines"]) == 6
        assert body["total_fen"] == 626130 and body["subsidy_fen"] == 0

    async def test_agency_may_quote(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2026-03"]), headers=svc.headers(agency(AGENCY)))
        assert r.status_code == 200 and r.json()["total_fen"] == 208710

    async def test_base_over_the_upper_band_is_refused_with_the_band(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2026-03"], base=3528301), headers=svc.headers(citizen()))
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "base_outside_band"
        assert (body["base_lower_fen"], body["base_upper_fen"]) == (695700, 3528300)
        r = await svc.client.post(Q, json=flexible(["2026-03"], base=695699), headers=svc.headers(citizen()))
        assert r.json()["code"] == "base_outside_band"

    async def test_resident_grade_with_subsidy_as_a_government_line(self, svc: Any) -> None:
        body = {"category": "resident", "region_code": "110105", "grade_fen": 50000, "year": 2026}
        r = await svc.client.post(Q, json=body, headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        out = r.json()
        assert [(x["payer"], x["amount_fen"]) for x in out["lines"]] == [("individual", 50000), ("government", 6000)]
        assert out["total_fen"] == 50000 and out["subsidy_fen"] == 6000
        small = {**body, "grade_fen": 30000}
        assert (await svc.client.post(Q, json=small, headers=svc.headers(citizen()))).json()["subsidy_fen"] == 3000

    async def test_resident_grade_not_offered_and_past_year(self, svc: Any) -> None:
        body = {"category": "resident", "region_code": "110105", "grade_fen": 12345, "year": 2026}
        r = await svc.client.post(Q, json=body, headers=svc.headers(citizen()))
        assert r.status_code == 422 and r.json()["code"] == "grade_not_offered"
        assert 200000 in r.json()["grades_fen"]
        r = await svc.client.post(Q, json={**body, "grade_fen": 50000, "year": 2025}, headers=svc.headers(citizen()))
        assert r.status_code == 422 and r.json()["code"] == "back_payment_outside_window"

    async def test_shanghai_rounds_up_to_the_jiao(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2026-03"], base=746001, region="310104"), headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        # 746001 x 20% = 149200.2 -> 149210; 746001 x 10% = 74600.1 -> 74610.
        assert [x["amount_fen"] for x in r.json()["lines"]] == [149210, 74610]
        assert r.json()["total_fen"] == 223820

    async def test_back_payment_outside_the_window(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2025-12", "2026-01"]), headers=svc.headers(citizen()))
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "back_payment_outside_window"
        assert body["window"] == "current_year" and body["earliest_month"] == "2026-01" and body["months"] == ["2025-12"]

    async def test_more_than_twelve_months_ahead(self, svc: Any) -> None:
        ok = await svc.client.post(Q, json=flexible(["2027-03"]), headers=svc.headers(citizen()))
        assert ok.status_code == 200
        r = await svc.client.post(Q, json=flexible(["2027-04"]), headers=svc.headers(citizen()))
        assert r.status_code == 422 and r.json()["code"] == "months_too_far_ahead"
        assert r.json()["latest_month"] == "2027-03"

    async def test_unknown_region(self, svc: Any) -> None:
        r = await svc.client.post(Q, json=flexible(["2026-03"], region="440305"), headers=svc.headers(citizen()))
        assert r.status_code == 404 and r.json()["code"] == "policy_not_found"

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(citizen())
        cases = [
            (flexible(["2026-13"]), "month_invalid"),
            (flexible([]), "validation_failed"),
            (flexible(["2026-03", "2026-03"]), "duplicate_months"),
            (flexible(["2026-03"], base=-1), "validation_failed"),
            (flexible(["2026-03"], base=695700.5), "validation_failed"),  # type: ignore[arg-type]
            (flexible(["2026-03"], base="695700"), "validation_failed"),  # type: ignore[arg-type]
            (flexible(["2026-03"], region="11010"), "region_code_invalid"),
            (flexible(["2026-03"], region="A10105"), "region_code_invalid"),
            ({**flexible(["2026-03"]), "category": "retired"}, "validation_failed"),
            ({"category": "resident", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]}, "validation_failed"),
            ({**flexible(["2026-03"]), "extra": 1}, "validation_failed"),
            (flexible(["2026-03"] + [f"2026-{m:02d}" for m in range(1, 13)] * 4), None),
        ]
        for body, code in cases:
            r = await svc.client.post(Q, json=body, headers=h)
            assert r.status_code == 422, (body, r.text)
            if code:
                assert r.json()["code"] == code, (body, r.json())
        r = await svc.client.post(Q, content=b'{"category": ', headers={**h, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "malformed_body"


# ---- property: totals are the sum of their lines, and nothing is ever a float ----------------


def _policy(rates: dict[str, dict[str, int]], rounding: str) -> Policy:
    return Policy(
        region_code="110000", effective_from="2026-01", effective_to=None, from_index=0, to_index=None,
        avg_wage_fen=1000000, base_lower_fen=1, base_upper_fen=10**9, rates=rates,
        work_injury_rates={str(c): 20 * c for c in range(1, 9)}, grades=[], frequencies=["monthly"],
        back_pay_window="current_year", rounding=rounding, deadline_day=15, late_fee_per_10000_per_day=5,
    )


_rate = st.integers(min_value=0, max_value=10000)
_payers = st.fixed_dictionaries({"employer": _rate, "employee": _rate, "individual": _rate})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.fixed_dictionaries({"pension": _payers, "medical": _payers, "unemployment": _payers, "maternity": _payers}),
    rounding=st.sampled_from(["fen_half_up", "jiao_up"]),
    base=st.integers(min_value=1, max_value=10**8),
    months=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=12, unique=True),
    category=st.sampled_from([Category.flexible, Category.employee]),
    wi_class=st.one_of(st.none(), st.integers(min_value=1, max_value=8)),
    subsidy=st.integers(min_value=0, max_value=10**6),
)
def test_total_is_the_sum_of_the_payers_lines_and_all_integers(
    rates: dict[str, dict[str, int]], rounding: str, base: int, months: list[int], category: Category,
    wi_class: int | None, subsidy: int,
) -> None:
    policy = _policy(rates, rounding)
    lines = []
    for m in sorted(months):
        lines += payer_lines(policy, month=f"2026-{m:02d}", base_fen=base, category=category, work_injury_class=wi_class)
    if subsidy:
        from services.common.enums import Insurance
        from services.contribution.policies.pricing import Line

        lines.append(Line(month="2026-01", insurance=Insurance.pension, payer=LinePayer.government, base_fen=base,
                          rate_bp=0, amount_fen=subsidy))
    priced = Priced(category=category, region_code="110000", months=[], back_payment_months=[], lines=lines)
    assert priced.total_fen == sum(x.amount_fen for x in lines if x.payer != LinePayer.government)
    assert priced.subsidy_fen == (subsidy if subsidy else 0)
    for x in lines:
        assert type(x.amount_fen) is int and type(x.base_fen) is int and type(x.rate_bp) is int
        assert x.amount_fen >= 0
        if x.payer == LinePayer.government:
            continue
        exact_tenths = x.base_fen * x.rate_bp  # in 1/10000 fen
        if rounding == "jiao_up":
            assert x.amount_fen % 10 == 0 and 0 <= x.amount_fen * 10000 - exact_tenths < 100000
        else:
            assert abs(x.amount_fen * 10000 - exact_tenths) <= 5000
    assert type(priced.total_fen) is int


@given(arrears=st.integers(min_value=0, max_value=10**10), days=st.integers(min_value=-5, max_value=3650),
       rounding=st.sampled_from(["fen_half_up", "jiao_up"]))
def test_late_fee_is_integer_simple_interest(arrears: int, days: int, rounding: str) -> None:
    fee = late_fee(arrears, 5, days, rounding)
    assert type(fee) is int
    if days <= 0:
        assert fee == 0
    else:
        assert fee == round_fen(arrears * 5 * days, 10000, rounding)


def test_rounding_rules_by_hand() -> None:
    assert premium(695700, 980, "fen_half_up") == 68179  # 68178.6
    assert premium(3528300, 50, "fen_half_up") == 17642  # 17641.5 rounds half up
    assert premium(746001, 2000, "jiao_up") == 149210  # 149200.2 -> next jiao
    assert premium(746000, 2000, "jiao_up") == 149200  # already whole jiao
    assert late_fee(1932882, 5, 17, "fen_half_up") == 16429  # 16429.497


class TestQuotePropertyOverHttp:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    async def test_http_totals_match_lines(self, svc: Any, data: Any) -> None:
        region = data.draw(st.sampled_from(["110105", "310104", "120101", "320102"]))
        band = (await svc.client.get(f"/contribution/v1/policies/{region}")).json()
        base = data.draw(st.integers(min_value=band["base_lower_fen"], max_value=band["base_upper_fen"]))
        months = data.draw(st.lists(st.sampled_from([f"2026-{m:02d}" for m in range(1, 13)]), min_size=1, max_size=6, unique=True))
        r = await svc.client.post(Q, json=flexible(months, base=base, region=region), headers=svc.headers(citizen()))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total_fen"] == sum(x["amount_fen"] for x in body["lines"] if x["payer"] != "government")
        for x in body["lines"]:
            assert all(type(x[k]) is int for k in ("base_fen", "rate_bp", "amount_fen"))
