"""养老金测算: GET /contribution/v1/me/pension-estimate.

Sources of the vectors:

- Retirement months: Decision of the NPC Standing Committee on gradually raising the statutory
  retirement age (2024-09-13, in force 2025-01-01) and the State Council's Measures it approves,
  art. 1 (men and women originally 55: one month per 4 months, to 63 and 58; women originally 50:
  one month per 2 months, to 55), and its comparison tables (附件1-3, e.g. a man born 1965-01
  retires 2025-02 at 60 years 1 month). The further rows are those published with the
  "js 版退休年龄计算器, 与电子社保卡小程序的计算结果一致" (blog.csdn.net/qq_22385935/article/details/142263821),
  checked against the tables' rule.
- Minimum years: the Measures art. 2 (15 years, +6 months a year from 2030, 20 from 2039).
- Divisors: State Council Guofa [2005] No. 38, annex "个人账户养老金计发月数表".
- Pension formula, worked examples: basic pension 11082 x (1 + 0.6) / 2 x 40 x 1% = 3546.24 CNY and
  account pension 100000 / 139 = 719.42 CNY (http://69saqjz.icu/xofoc); 200000 / 139 = 1438.85 CNY
  (https://www.qzlndx.org/aged_891427).
- Account interest for months held in the year: "未存满全年的，根据实际存储的月份数乘以年记账利率的十二分之一计算利息"
  (https://fsxiangtie.com/baoxian/10423768t2.html), the 1997 rule's 1.083 x 1/2 on an even year.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import update

from services.contracts import registration as reg
from services.contribution.models import KnownPerson
from services.contribution.pension.rules import (
    DIVISORS,
    account_pension_fen,
    basic_pension_fen,
    divisor_for,
    grow_account,
    statutory_retirement,
)
from services.contribution.policies.pricing import required_pension_months
from tests.contribution.conftest import ALICE, UNIT, enrol_self, feed, hire, pay, register_unit
from tests.contribution.test_policies import policy_body
from tests.helpers import agency, citizen, employer, make_id_number, staff

E = "/contribution/v1/me/pension-estimate"
D = "/contribution/v1/me/declarations"

# (birth month, original age, retirement month, age years, extra months)
RETIREMENT_VECTORS = [
    ("1964-12", 60, "2024-12", 60, 0),  # before the decision: unchanged
    ("1965-01", 60, "2025-02", 60, 1),  # table 1, first row
    ("1965-04", 60, "2025-05", 60, 1),
    ("1965-05", 60, "2025-07", 60, 2),
    ("1966-01", 60, "2026-05", 60, 4),
    ("1975-06", 60, "2038-02", 62, 8),
    ("1976-08", 60, "2039-07", 62, 11),
    ("1976-09", 60, "2039-09", 63, 0),  # table 1: from 1976-09 on, 63
    ("1988-09", 60, "2051-09", 63, 0),
    ("1970-01", 55, "2025-02", 55, 1),  # table 2
    ("1970-06", 55, "2025-08", 55, 2),
    ("1970-09", 55, "2025-12", 55, 3),
    ("1971-06", 55, "2026-11", 55, 5),
    ("1981-09", 55, "2039-09", 58, 0),
    ("1988-09", 55, "2046-09", 58, 0),
    ("1974-12", 50, "2024-12", 50, 0),  # table 3
    ("1975-01", 50, "2025-02", 50, 1),
    ("1975-06", 50, "2025-09", 50, 3),
    ("1976-06", 50, "2027-03", 50, 9),
    ("1977-01", 50, "2028-02", 51, 1),
    ("1984-10", 50, "2039-09", 54, 11),
    ("1984-11", 50, "2039-11", 55, 0),  # table 3: from 1984-11 on, 55
]


class TestRules:
    @pytest.mark.parametrize(("born", "original", "month", "years", "extra"), RETIREMENT_VECTORS)
    def test_retirement_month(self, born: str, original: int, month: str, years: int, extra: int) -> None:
        r = statutory_retirement(date(int(born[:4]), int(born[5:]), 15), original_age_years=original)
        assert (r.month, r.age_years, r.age_months % 12) == (month, years, extra)

    def test_minimum_years(self) -> None:
        assert [required_pension_months(y) for y in (2025, 2029, 2030, 2031, 2038, 2039, 2050)] == [
            180, 180, 186, 192, 234, 240, 240]

    def test_divisors(self) -> None:
        assert {a: DIVISORS[a] for a in range(50, 64)} == {
            50: 195, 51: 190, 52: 185, 53: 180, 54: 175, 55: 170, 56: 164, 57: 158, 58: 152, 59: 145,
            60: 139, 61: 132, 62: 125, 63: 117}
        assert divisor_for(60 * 12 + 11) == 139 and divisor_for(63 * 12) == 117 and divisor_for(52 * 12 + 9) == 185

    def test_published_worked_examples(self) -> None:
        assert basic_pension_fen(avg_wage_fen=1108200, average_index=Fraction(6, 10), months=480) == 354624
        assert account_pension_fen(balance_fen=10_000_000, divisor=139) == 71942
        assert account_pension_fen(balance_fen=20_000_000, divisor=139) == 143885

    def test_interest_for_the_months_held(self) -> None:
        # 1000 fen credited each month of 2024 at 2.62%: sum of 1000 x 2.62% x (13 - m)/12 = 170.3 -> 170
        credits = {2024 * 12 + m: 1000 for m in range(12)}
        grown = grow_account(credits=credits, rates={"2024": 262}, until_index=2025 * 12)
        assert grown.balance_fen == 12170 and grown.years_with_rate == {2024: 262}
        # The next year: the whole balance for a year at 3.97% = 483.149 -> 483; 2026 has no rate.
        grown = grow_account(credits=credits, rates={"2024": 262, "2025": 397}, until_index=2026 * 12 + 6)
        assert grown.balance_fen == 12170 + 483 and grown.years_without_rate == [2026]


def man_born(birth: str) -> str:
    return make_id_number("110105", birth, "011")


def woman_born(birth: str) -> str:
    return make_id_number("110105", birth, "022")


async def flexible_paid(svc: Any, id_number: str, months: list[str], base_fen: int = 695700) -> None:
    h = svc.headers(citizen(id_number))
    r = await svc.client.post(D, json={"category": "flexible", "region_code": "110105", "base_fen": base_fen,
                                       "months": months}, headers=h)
    assert r.status_code == 201, r.text
    await svc.client.post(f"{D}/{r.json()['id']}/confirm", headers=h)
    await pay(svc, r.json()["id"], payment_id=f"p-{months[0]}-{id_number[-4:]}")


def assumption(body: dict[str, Any], code: str) -> dict[str, Any]:
    return next(a for a in body["assumptions"] if a["code"] == code)


class TestPensionEstimate:
    async def test_anonymous_wrong_principal_and_level(self, svc: Any) -> None:
        assert (await svc.client.get(E)).status_code == 401
        for principal in (employer(UNIT), agency(UNIT), staff("admin")):
            r = await svc.client.get(E, headers=svc.headers(principal))
            assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await svc.client.get(E, headers=svc.headers(citizen(ALICE, level=1)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_bad_input(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        for value in ("manager", "", "WORKER", "１"):
            r = await svc.client.get(E, params={"female_post": value}, headers=svc.headers(citizen(ALICE)))
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")

    async def test_not_enrolled_and_pensioner(self, svc: Any) -> None:
        r = await svc.client.get(E, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "not_enrolled"
        await enrol_self(svc, ALICE, insurance_types=["medical"])
        r = await svc.client.get(E, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "not_enrolled"  # no pension insurance
        await enrol_self(svc, ALICE)
        async with svc.db.sessionmaker() as session, session.begin():
            await session.execute(update(KnownPerson).values(pensioner_from=date(2026, 1, 1)))
        r = await svc.client.get(E, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 409 and r.json()["code"] == "person_is_pensioner"

    async def test_flexible_man_born_1990(self, svc: Any) -> None:
        # Born 1990-01: 63 from 1976-09 on -> retires 2053-01; 20 years needed in 2053.
        await enrol_self(svc, ALICE, start_month="2026-01")
        await flexible_paid(svc, ALICE, ["2026-01", "2026-02", "2026-03"])
        r = await svc.client.get(E, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["category"], body["sex"], body["birth_month"]) == ("flexible", "male", "1990-01")
        assert body["retirement"] == {"basis": "male", "original_age_years": 60, "original_month": "2050-01",
                                      "delay_months": 36, "age_years": 63, "age_extra_months": 0, "month": "2053-01"}
        assert (body["minimum_months_required"], body["months_paid"], body["months_needed"]) == (240, 3, 237)
        # Paid 2026-01..03; 2026-04..2052-12 assumed at the same base: 321 months; 324 in all.
        assert body["months_projected"] == 321 and body["eligible_at_retirement"] is True
        est = body["estimate"]
        # index 695700/1176100 every month: basic = (1176100 + 695700)/2 x 27 years x 1% = 252693
        assert est["average_wage_fen"] == 1176100 and est["average_index"] == "0.5915"
        assert (est["contribution_months"], est["basic_pension_fen"]) == (324, 252693)
        # 8% of 695700 = 55656 a month, no rate published after 2024: 324 x 55656; divisor at 63: 117
        assert est["account_balance_fen"] == 324 * 55656 and est["divisor"] == 117
        assert est["account_pension_fen"] == 154124  # 18032544 / 117 = 154124.3
        assert est["monthly_pension_fen"] == 252693 + 154124
        codes = [a["code"] for a in body["assumptions"]]
        assert codes == ["retirement_age_rule", "minimum_years", "future_contributions", "average_wage",
                         "account_interest", "divisor"]
        assert assumption(body, "average_wage")["value"] == {"avg_wage_fen": 1176100, "policy_region_code": "110000",
                                                             "policy_effective_from": "2025-07"}
        assert assumption(body, "account_interest")["value"]["years_without_rate"] == list(range(2026, 2053))
        assert assumption(body, "future_contributions")["value"] == {"months": 321, "base_fen": 695700,
                                                                     "from": "2026-04", "to": "2052-12"}
        assert "年" in assumption(body, "minimum_years")["text"]
        en = (await svc.client.get(E, headers={**svc.headers(citizen(ALICE)), "Accept-Language": "en"})).json()
        assert en["assumptions"][0]["text"].startswith("Men: originally 60")
        cadre = (await svc.client.get(E, params={"female_post": "cadre"}, headers=svc.headers(citizen(ALICE)))).json()
        assert cadre["retirement"]["month"] == "2053-01" and assumption(cadre, "female_post_ignored")["value"] == "cadre"

    async def test_interest_where_the_policy_holds_rates(self, svc: Any) -> None:
        # Staff publish a 2026 rate of 2%: the three months paid earn 2% x (13 - m)/12 in 2026, and the
        # projected months of 2026 (April to December) their months held too.
        body = policy_body(avg_wage_fen=1176100, base_lower_fen=695700, base_upper_fen=3528300,
                           frequencies=["monthly"], account_interest_rates={"2026": 200})
        r = await svc.client.put("/contribution/v1/policies/110000/2025-07", json=body, headers=svc.headers(staff("admin")))
        assert r.status_code == 200, r.text
        await enrol_self(svc, ALICE, start_month="2026-01")
        await flexible_paid(svc, ALICE, ["2026-01", "2026-02", "2026-03"])
        out = (await svc.client.get(E, headers=svc.headers(citizen(ALICE)))).json()
        # 55656 x 2% x (12 + 11 + ... + 1)/12 = 55656 x 0.02 x 6.5 = 7235.28 -> 7235
        assert out["estimate"]["account_balance_fen"] == 324 * 55656 + 7235
        assert assumption(out, "account_interest")["value"]["rates_bp"] == {"2026": 200}

    async def test_female_employee_worker_or_cadre(self, svc: Any) -> None:
        carol = woman_born("19800615")
        await register_unit(svc)
        await hire(svc, carol, 1000000, start_month="2026-01")
        h = svc.headers(citizen(carol))
        body = (await svc.client.get(E, headers=h)).json()
        # Worker (50): born 1980-06 -> 65 months after 1975-01 -> 33 months later: 2033-03 at 52 years 9 months.
        assert body["retirement"]["basis"] == "female_worker" and body["retirement"]["month"] == "2033-03"
        assert (body["retirement"]["age_years"], body["retirement"]["age_extra_months"]) == (52, 9)
        assert body["minimum_months_required"] == 204  # 2033: 15 years + 4 x 6 months
        assert body["estimate"]["divisor"] == 185 and body["months_paid"] == 0
        # Nothing paid yet: the registered wage 10,000 CNY is assumed from now (2026-03) to 2033-02.
        assert body["months_projected"] == 84 and body["eligible_at_retirement"] is False
        assert assumption(body, "future_contributions")["value"]["base_fen"] == 1000000
        cadre = (await svc.client.get(E, params={"female_post": "cadre"}, headers=h)).json()
        assert cadre["retirement"]["basis"] == "female_cadre" and cadre["retirement"]["month"] == "2038-02"
        assert cadre["estimate"]["divisor"] == 158 and cadre["minimum_months_required"] == 234

    async def test_employer_paid_months_count(self, svc: Any) -> None:
        dave = man_born("19650301")  # original 2025-03, one month later: 2025-04, past, so nothing is projected
        await register_unit(svc)
        await hire(svc, dave, 1000000, start_month="2026-01")
        svc.clock.set(svc.clock.now().replace(month=1, day=10))
        jan = (await svc.client.post(f"/contribution/v1/employers/{UNIT}/declarations", json={"month": "2026-01"},
                                     headers=svc.headers(employer(UNIT)))).json()
        await pay(svc, jan["id"], payment_id="p-jan")
        body = (await svc.client.get(E, headers=svc.headers(citizen(dave)))).json()
        assert body["retirement"]["month"] == "2025-04" and body["months_paid"] == 1
        assert body["months_projected"] == 0 and body["months_needed"] == 179
        est = body["estimate"]
        # 1 month at index 1000000/1176100; 8% of 1000000 credited: 80000; divisor at 60: 139
        assert est["average_index"] == "0.8503" and est["account_balance_fen"] == 80000
        assert est["account_pension_fen"] == 576  # 80000 / 139 = 575.5 -> 576
        assert est["basic_pension_fen"] == 907  # 1176100 x (1 + 0.85027)/2 x 1/12 x 1% = 907.07
        assert assumption(body, "future_contributions")["value"] is None

    async def test_flexible_woman_defaults_to_55(self, svc: Any) -> None:
        erin = woman_born("19800615")
        await enrol_self(svc, erin, start_month="2026-01")
        body = (await svc.client.get(E, headers=svc.headers(citizen(erin)))).json()
        assert body["retirement"]["basis"] == "female_cadre" and body["retirement"]["month"] == "2038-02"
        assert "55" in assumption(body, "retirement_age_rule")["text"]
        worker = (await svc.client.get(E, params={"female_post": "worker"}, headers=svc.headers(citizen(erin)))).json()
        assert worker["retirement"]["month"] == "2033-03"

    async def test_resident(self, svc: Any) -> None:
        # A resident born 1970-05 draws at 60 (2030-05): the decision does not move residents' age.
        frank = man_born("19700520")
        await enrol_self(svc, frank, category="resident", start_month="2026-01")
        h = svc.headers(citizen(frank))
        decl = (await svc.client.post(D, json={"category": "resident", "region_code": "110105", "grade_fen": 100000,
                                               "year": 2026}, headers=h)).json()
        await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)
        await pay(svc, decl["id"], payment_id="p-res")
        body = (await svc.client.get(E, headers=h)).json()
        assert body["category"] == "resident" and body["retirement"]["basis"] == "resident"
        assert body["retirement"]["month"] == "2030-05" and body["retirement"]["delay_months"] == 0
        assert (body["minimum_months_required"], body["months_paid"], body["months_needed"]) == (180, 12, 168)
        assert body["months_projected"] == 36 and body["eligible_at_retirement"] is False  # 2027-2029
        est = body["estimate"]
        # 4 years of 1000 CNY and the 60 CNY subsidy in the account; no rates after 2024; 92400 basic (sample)
        assert est["account_balance_fen"] == 4 * 106000 and est["divisor"] == 139
        assert est["account_pension_fen"] == 3050  # 424000 / 139 = 3050.4
        assert est["basic_pension_fen"] == 92400 and est["monthly_pension_fen"] == 95450
        assert est["average_wage_fen"] is None and est["average_index"] is None
        assert assumption(body, "resident_basic_pension")["value"] == 92400

    async def test_separated_employee_then_flexible(self, svc: Any) -> None:
        # The open enrolment decides the category: a man who left his unit and pays as flexible.
        await register_unit(svc)
        ref = await hire(svc, ALICE, 1000000, start_month="2025-06")
        await feed(svc, reg.PERSON_SEPARATED, reg.PersonSeparated(
            person_id=ref["person_id"], id_hash=ref["id_hash"], enrolment_id=ref["enrolment_id"], employer_credit_code=UNIT,
            separation_date=date(2025, 12, 31), last_month="2025-12",
        ))
        await enrol_self(svc, ALICE, start_month="2026-01")
        body = (await svc.client.get(E, headers=svc.headers(citizen(ALICE)))).json()
        assert body["category"] == "flexible" and body["months_paid"] == 0
        assert assumption(body, "future_contributions")["value"]["base_fen"] == 695700  # today's lower band
