"""The read model fed by registration's real feed, review's approvals, and concurrent declarations."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.events import FeedConsumer
from services.common.pii import id_hash
from services.contracts import registration as reg
from services.contribution.models import DeclaredMonth, KnownEnrolment, KnownPerson
from services.contribution.readmodel import REGISTRATION_HANDLERS
from tests.contribution.conftest import ALICE, BOB, NOW, UNIT, enrol_self, feed, person_ref, rows
from tests.helpers import citizen, employer, staff


class TestRegistrationFeed:
    async def test_enrolments_from_registration_make_declarations_possible(self, make_service: Any) -> None:
        registration = await make_service("registration", clock=FrozenClock(NOW))
        contribution = await make_service("contribution", clock=FrozenClock(NOW))
        unit = registration.headers(employer(UNIT))
        r = await registration.client.post("/registration/v1/employers", headers=unit, json={
            "credit_code": UNIT, "name": "北京示例科技有限公司", "region_code": "110105", "address": "北京市朝阳区示例路1号",
            "contact": "王五 13800000000", "work_injury_class": 2})
        assert r.status_code == 201, r.text
        r = await registration.client.post(f"/registration/v1/employers/{UNIT}/employees", headers=unit, json={
            "id_number": BOB, "name": "李四", "hire_date": "2026-01-05", "monthly_wage_fen": 1000000,
            "insurance_types": ["pension", "medical", "unemployment", "work_injury", "maternity"]})
        assert r.status_code == 201, r.text
        r = await registration.client.post("/registration/v1/me/enrolments", headers=registration.headers(citizen(ALICE)), json={
            "category": "flexible", "region_code": "110105", "household_region_code": "110105",
            "insurance_types": ["pension", "medical"], "start_month": "2026-01"})
        assert r.status_code == 201, r.text

        consumer = FeedConsumer(
            producer="registration", base_url="http://registration", db=contribution.db, handlers=REGISTRATION_HANDLERS,
            token=contribution.app.state.internal_token, client=registration.client,
        )
        applied = 0
        for _ in range(200):
            # On PostgreSQL the feed holds back rows until every older transaction in the cluster has
            # finished (so none is ever skipped): another busy client can delay them a little.
            applied += await consumer.drain()
            if applied >= 3:
                break
            await asyncio.sleep(0.05)
        assert applied >= 3
        assert await consumer.drain() == 0  # nothing applied twice

        enrolments = await rows(contribution, select(KnownEnrolment).order_by(KnownEnrolment.category))
        assert [(e.category, e.id_hash, e.start_month, e.credit_code) for e in enrolments] == [
            ("employee", id_hash(BOB), "2026-01", UNIT), ("flexible", id_hash(ALICE), "2026-01", None)]

        r = await contribution.client.post(f"/contribution/v1/employers/{UNIT}/declarations", json={"month": "2026-02"},
                                           headers=contribution.headers(employer(UNIT)))
        assert r.status_code == 201, r.text
        wi = [x for x in r.json()["lines"] if x["insurance"] == "work_injury"]
        assert [(x["rate_bp"], x["amount_fen"]) for x in wi] == [(40, 4000)]  # class 2: 0.4% of 1000000
        assert r.json()["late_fee"]["days_late"] == 23  # 2026-03-10 is 23 days after 2026-02-15
        r = await contribution.client.post("/contribution/v1/me/declarations", headers=contribution.headers(citizen(ALICE)),
                                           json={"category": "flexible", "region_code": "110105", "base_fen": 695700,
                                                 "months": ["2026-01", "2026-02"]})
        assert r.status_code == 201, r.text

    async def test_pension_award_ends_enrolments(self, svc: Any) -> None:
        enrolment = await enrol_self(svc, ALICE, start_month="2026-01")
        await feed(svc, reg.PENSION_AWARDED, reg.PensionAwarded(
            **person_ref(ALICE), from_date=date(2026, 3, 1), region_code="110105", scheme="employee",
            ended_enrolment_ids=[enrolment],
        ))
        row = (await rows(svc, select(KnownEnrolment)))[0]
        assert row.end_month == "2026-02"
        person = (await rows(svc, select(KnownPerson)))[0]
        assert person.pensioner_from == date(2026, 3, 1)
        body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]}
        r = await svc.client.post("/contribution/v1/me/declarations", json=body, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "not_enrolled"

    async def test_enrolment_ended_by_the_person(self, svc: Any) -> None:
        enrolment = await enrol_self(svc, ALICE, start_month="2026-01")
        await feed(svc, reg.ENROLMENT_ENDED, reg.EnrolmentEnded(
            person_id=person_ref(ALICE)["person_id"], id_hash=id_hash(ALICE), enrolment_id=enrolment, category="flexible",
            region_code="110105", end_month="2026-03", reason="self",
        ))
        body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03", "2026-04"]}
        r = await svc.client.post("/contribution/v1/me/declarations", json=body, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["months"] == ["2026-04"]


class TestConcurrentDeclarations:
    async def test_two_declarations_of_one_month_at_once_one_wins(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]}

        async def go(key: str) -> Any:
            return await svc.client.post("/contribution/v1/me/declarations", json=body,
                                         headers=svc.headers(citizen(ALICE), **{"Idempotency-Key": key}))

        results = await asyncio.gather(*(go(f"k{i}") for i in range(4)))
        assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
        assert len(await rows(svc, select(DeclaredMonth))) == 2

    async def test_staff_may_not_declare_for_citizens(self, svc: Any) -> None:
        body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]}
        r = await svc.client.post("/contribution/v1/me/declarations", json=body, headers=svc.headers(staff("admin")))
        assert r.status_code == 403
