"""Employer monthly declarations, late fees (art. 86) and staff assessments at 110% (art. 62)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from services.common.models import AuditEntry, OutboxEvent
from services.common.pii import id_hash
from services.contracts import registration as reg
from services.contribution.models import ContributionRecord
from tests.contribution.conftest import (
    ALICE,
    BOB,
    CAROL,
    OTHER_UNIT,
    UNIT,
    feed,
    hire,
    pay,
    register_unit,
    rows,
)
from tests.helpers import citizen, employer, staff


def url(cc: str = UNIT) -> str:
    return f"/contribution/v1/employers/{cc}/declarations"


async def three_employees(svc: Any) -> list[dict[str, Any]]:
    """Below, inside and above the Beijing band (695700..3528300)."""
    await register_unit(svc, work_injury_class=1)
    return [await hire(svc, ALICE, 500000), await hire(svc, BOB, 1000000), await hire(svc, CAROL, 4000000)]


class TestEmployerDeclaration:
    async def test_anonymous_wrong_principal_and_other_unit(self, svc: Any) -> None:
        body = {"month": "2026-03"}
        assert (await svc.client.post(url(), json=body)).status_code == 401
        r = await svc.client.post(url(), json=body, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await svc.client.post(url(), json=body, headers=svc.headers(employer(OTHER_UNIT)))
        assert r.status_code == 403 and r.json()["code"] == "not_own_employer"

    async def test_unregistered_unit_future_month_and_bad_input(self, svc: Any) -> None:
        h = svc.headers(employer(UNIT))
        r = await svc.client.post(url(), json={"month": "2026-03"}, headers=h)
        assert r.status_code == 404 and r.json()["code"] == "employer_not_registered"
        await three_employees(svc)
        r = await svc.client.post(url(), json={"month": "2026-04"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "month_not_declarable"
        for body in ({"month": "2026-13"}, {}, {"month": "2026-03", "person_ids": []}, {"month": "2026-03", "x": 1}):
            assert (await svc.client.post(url(), json=body, headers=h)).status_code == 422
        r = await svc.client.post(url(), json={"month": "2026-03", "person_ids": ["nobody"]}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "no_active_employees"

    async def test_three_employees_clamped_to_the_band(self, svc: Any) -> None:
        await three_employees(svc)
        r = await svc.client.post(url(), json={"month": "2026-03"}, headers=svc.headers(employer(UNIT)))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "awaiting_payment" and body["source"] == "employer"
        by_base: dict[int, int] = {}
        for x in body["lines"]:
            by_base[x["base_fen"]] = by_base.get(x["base_fen"], 0) + x["amount_fen"]
        # Below the band -> lower 695700, above -> upper 3528300. Per person: pension 16%+8%, medical 9.8%+2%,
        # unemployment 0.5%+0.5%, work injury class 1 0.2% (employer), each rounded half up to the fen;
        # plus Beijing's fixed 3 CNY medical levy for the employee (DOMAIN.md), a line of its own at rate 0.
        assert by_base == {695700: 257710, 1000000: 370300, 3528300: 1305772}
        alice = [x for x in body["lines"] if x["base_fen"] == 695700]
        assert [(x["insurance"], x["payer"], x["rate_bp"], x["amount_fen"]) for x in alice] == [
            ("pension", "employer", 1600, 111312), ("pension", "employee", 800, 55656),
            ("medical", "employer", 980, 68179), ("medical", "employee", 200, 13914), ("medical", "employee", 0, 300),
            ("unemployment", "employer", 50, 3479), ("unemployment", "employee", 50, 3479),
            ("work_injury", "employer", 20, 1391),
        ]
        assert body["total_fen"] == 1933782
        assert body["late_fee"]["days_late"] == 0 and body["late_fee"]["amount_fen"] == 0
        assert all(x["person_id"] for x in body["lines"])
        r = await svc.client.post(url(), json={"month": "2026-03"}, headers=svc.headers(employer(UNIT)))
        assert r.status_code == 409 and r.json()["code"] == "month_already_declared"
        got = await svc.client.get(f"{url()}/{body['id']}", headers=svc.headers(employer(UNIT)))
        assert got.status_code == 200 and got.json()["total_fen"] == 1933782
        assert (await svc.client.get(f"{url()}/{body['id']}", headers=svc.headers(staff("operator")))).status_code == 200
        assert (await svc.client.get(f"{url(OTHER_UNIT)}/{body['id']}", headers=svc.headers(staff()))).status_code == 404
        assert (await svc.client.get(f"{url(OTHER_UNIT)}/{body['id']}", headers=svc.headers(employer(UNIT)))).status_code == 403
        listing = await svc.client.get(url(), headers=svc.headers(employer(UNIT)))
        assert listing.status_code == 200 and [i["id"] for i in listing.json()["items"]] == [body["id"]]
        assert (await svc.client.get(url(), headers=svc.headers(employer(OTHER_UNIT)))).status_code == 403
        assert (await svc.client.get(url(OTHER_UNIT), headers=svc.headers(staff()))).json()["items"] == []
        assert (await svc.client.get(url(), headers=svc.headers(citizen(ALICE)))).status_code == 403

    async def test_late_declaration_17_days_after_the_deadline(self, svc: Any) -> None:
        await three_employees(svc)
        svc.clock.set(datetime(2026, 3, 4, 2, 0, tzinfo=UTC))  # 2026-03-04 in Shanghai; 2026-02 was due by 02-15
        r = await svc.client.post(url(), json={"month": "2026-02"}, headers=svc.headers(employer(UNIT)))
        assert r.status_code == 201, r.text
        body = r.json()
        # 1933782 x 0.0005 x 17 = 16437.147 -> 16437
        assert body["late_fee"] == {"deadline": "2026-02-15", "days_late": 17, "arrears_fen": 1933782,
                                    "rate_per_10000_per_day": 5, "amount_fen": 16437}
        assert body["total_fen"] == 1933782 + 16437
        # Priced for today: payable until midnight in Shanghai, then the fee has grown and the unit declares again.
        assert body["expires_at"].startswith("2026-03-04T16:00:00")

    async def test_an_on_time_declaration_cannot_outlive_its_deadline(self, svc: Any) -> None:
        await three_employees(svc)
        svc.clock.set(datetime(2026, 3, 15, 6, 0, tzinfo=UTC))  # 14:00 on the deadline day
        body = (await svc.client.post(url(), json={"month": "2026-03"}, headers=svc.headers(employer(UNIT)))).json()
        assert body["late_fee"]["amount_fen"] == 0
        assert body["expires_at"].startswith("2026-03-15T16:00:00")  # midnight 03-16 in Shanghai

    async def test_only_listed_and_active_employees(self, svc: Any) -> None:
        people = await three_employees(svc)
        await feed(svc, reg.PERSON_SEPARATED, reg.PersonSeparated(
            person_id=people[2]["person_id"], id_hash=people[2]["id_hash"], enrolment_id=people[2]["enrolment_id"],
            employer_credit_code=UNIT, separation_date=datetime(2026, 2, 20).date(), last_month="2026-02",
        ))
        r = await svc.client.post(url(), json={"month": "2026-03", "person_ids": [people[0]["person_id"]]},
                                  headers=svc.headers(employer(UNIT)))
        assert r.status_code == 201 and r.json()["total_fen"] == 257710
        r = await svc.client.post(url(), json={"month": "2026-03", "person_ids": [people[2]["person_id"]]},
                                  headers=svc.headers(employer(UNIT)))
        assert r.status_code == 422 and r.json()["code"] == "no_active_employees"

    async def test_paid_employer_declaration_writes_the_employees_records(self, svc: Any) -> None:
        await three_employees(svc)
        decl = (await svc.client.post(url(), json={"month": "2026-03"}, headers=svc.headers(employer(UNIT)))).json()
        paid = await pay(svc, decl["id"])
        assert paid.paid_by == "employer"
        recs = await rows(svc, select(ContributionRecord).where(ContributionRecord.person_key == id_hash(ALICE)))
        assert sum(r.amount_fen for r in recs) == 257710 and {r.paid_by for r in recs} == {"employer"}
        ev = (await rows(svc, select(OutboxEvent).where(OutboxEvent.type == "contribution.declaration.paid.v1")))[0]
        assert ev.data["credit_code"] == UNIT and ev.data["person_id_hash"] is None

    async def test_approved_annual_bases_apply_from_their_month(self, svc: Any) -> None:
        from services.contracts import review as rev

        await three_employees(svc)
        await feed(svc, rev.ANNUAL_DECLARATION_APPROVED, rev.AnnualDeclarationApproved(
            declaration_id="ad-1", credit_code=UNIT, year=2025, region_code="110105", effective_from="2026-03",
            lines=[rev.ApprovedLine(id_hash=id_hash(BOB), avg_monthly_wage_fen=1200000, new_base_fen=1200000)],
        ))
        svc.clock.set(datetime(2026, 3, 4, 2, 0, tzinfo=UTC))
        feb = (await svc.client.post(url(), json={"month": "2026-02"}, headers=svc.headers(employer(UNIT)))).json()
        assert 1000000 in {x["base_fen"] for x in feb["lines"]}
        mar = (await svc.client.post(url(), json={"month": "2026-03"}, headers=svc.headers(employer(UNIT)))).json()
        assert 1200000 in {x["base_fen"] for x in mar["lines"]} and 1000000 not in {x["base_fen"] for x in mar["lines"]}


class TestAssessment:
    def url(self, cc: str = UNIT) -> str:
        return f"/contribution/v1/employers/{cc}/assessments"

    async def test_anonymous_and_wrong_principal(self, svc: Any) -> None:
        body = {"month": "2026-02", "reason": "未按期申报"}
        assert (await svc.client.post(self.url(), json=body)).status_code == 401
        r = await svc.client.post(self.url(), json=body, headers=svc.headers(employer(UNIT)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await svc.client.post(self.url(), json=body, headers=svc.headers(staff("reviewer")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"

    async def test_bad_input_and_no_previous_month(self, svc: Any) -> None:
        h = svc.headers(staff("operator"))
        for body in ({"month": "2026-02"}, {"month": "2026-02", "reason": ""}, {"month": "2026-2", "reason": "x"}):
            assert (await svc.client.post(self.url(), json=body, headers=h)).status_code == 422
        r = await svc.client.post(self.url(), json={"month": "2026-02", "reason": "x"}, headers=h)
        assert r.status_code == 404 and r.json()["code"] == "employer_not_registered"
        await three_employees(svc)
        r = await svc.client.post(self.url(), json={"month": "2026-02", "reason": "x"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "no_previous_declaration"
        r = await svc.client.post(self.url(), json={"month": "2026-03", "reason": "x"}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "month_not_declarable"  # not due before 03-15

    async def test_assessed_at_110_percent_of_the_previous_month(self, svc: Any) -> None:
        await three_employees(svc)
        svc.clock.set(datetime(2026, 1, 10, 2, 0, tzinfo=UTC))
        jan = (await svc.client.post(url(), json={"month": "2026-01"}, headers=svc.headers(employer(UNIT)))).json()
        await pay(svc, jan["id"])
        svc.clock.set(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
        r = await svc.client.post(self.url(), json={"month": "2026-02", "reason": "未按期申报"},
                                  headers=svc.headers(staff("operator")))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["source"] == "assessment" and body["status"] == "awaiting_payment" and body["months"] == ["2026-02"]
        first = next(x for x in body["lines"] if x["base_fen"] == 765270)  # 695700 x 110%
        assert (first["insurance"], first["payer"], first["amount_fen"]) == ("pension", "employer", 122443)  # 111312 x 1.1 = 122443.2
        assert body["total_fen"] == sum(x["amount_fen"] for x in body["lines"])
        assert abs(body["total_fen"] - 1933782 * 11 // 10) <= len(body["lines"])
        ev = (await rows(svc, select(OutboxEvent).where(OutboxEvent.type == "contribution.employer.assessed.v1")))[0]
        assert ev.data == {"credit_code": UNIT, "month": "2026-02", "assessed_total_fen": body["total_fen"],
                           "previous_total_fen": 1933782}
        audit = (await rows(svc, select(AuditEntry)))[0]
        assert (audit.action, audit.target_id, audit.reason, audit.actor) == ("employer.assessed", UNIT, "未按期申报", "staff:S1001")
        # The employer now owes it: a declaration of its own for the month is refused, and it may read the assessment.
        r = await svc.client.post(url(), json={"month": "2026-02"}, headers=svc.headers(employer(UNIT)))
        assert r.status_code == 409 and r.json()["code"] == "month_already_declared"
        got = await svc.client.get(f"{url()}/{body['id']}", headers=svc.headers(employer(UNIT)))
        assert got.status_code == 200 and got.json()["source"] == "assessment"
        assert (await pay(svc, body["id"])).paid_by == "employer"
