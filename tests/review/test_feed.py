"""The review read models fed from registration's real event feed (in-process), exactly once."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from services.common.events import FeedConsumer
from services.review.models import Employer, Pensioner, RosterEntry
from services.review.readmodel import CONSUMERS
from tests.helpers import employer, staff
from tests.review.conftest import CC, START, idn


async def drain_all(consumer: FeedConsumer, expected: int) -> int:
    """Drain until `expected` events were applied.

    On PostgreSQL the feed serves only events older than the cluster-wide snapshot horizon, so a
    transaction still open in another database of the same server (a parallel test run) delays
    them for a moment; they are never skipped.
    """
    import asyncio
    import time

    total = 0
    deadline = time.monotonic() + 20
    while total < expected and time.monotonic() < deadline:
        total += await consumer.drain()
        if total < expected:
            await asyncio.sleep(0.05)
    return total


class TestRegistrationFeed:
    async def test_employer_employees_separation_and_pension_award(self, svc, make_service):
        from services.common.clock import FrozenClock

        reg = await make_service("registration", clock=FrozenClock(START))
        h = reg.headers(employer(CC))
        r = await reg.client.post("/registration/v1/employers", headers=h, json={
            "credit_code": CC, "name": "北京示例科技有限公司", "region_code": "110105", "address": "朝阳区示例路1号",
            "contact": "李经办 13800000000", "work_injury_class": 2,
        })
        assert r.status_code == 201, r.text
        people = {}
        for n, name in ((1, "张三"), (2, "李四")):
            r = await reg.client.post(f"/registration/v1/employers/{CC}/employees", headers=h, json={
                "id_number": idn(n, birth="19650101"), "name": name, "hire_date": "2025-02-03",
                "monthly_wage_fen": 1_200_000, "insurance_types": ["pension", "medical", "unemployment", "work_injury"],
            })
            assert r.status_code == 201, r.text
            people[n] = r.json()["person_id"]
        r = await reg.client.post(f"/registration/v1/employers/{CC}/employees/{people[2]}/separation", headers=h,
                                  json={"separation_date": "2025-09-30", "reason": "合同到期"})
        assert r.status_code == 200, r.text
        r = await reg.client.post(f"/registration/v1/persons/{people[1]}/pension-award",
                                  headers=reg.headers(staff("operator")), json={"from_date": "2026-01-01"})
        assert r.status_code in (200, 201), r.text

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=reg.app), base_url="http://registration") as c:
            consumer = FeedConsumer(
                producer="registration", base_url="http://registration", db=svc.db,
                handlers=CONSUMERS["registration"], token=svc.app.state.internal_token, client=c,
            )
            applied = await drain_all(consumer, expected=7)
            assert applied == 7
            assert await consumer.drain() == 0  # nothing applied twice

        async with svc.db.sessionmaker() as s:
            emp = await s.get(Employer, CC)
            assert (emp.name, emp.region_code) == ("北京示例科技有限公司", "110105")
            roster = {r.person_id: r for r in (await s.execute(select(RosterEntry))).scalars()}
            pensioner = await s.get(Pensioner, people[1])
        assert roster[people[1]].start_month == "2025-02"
        assert roster[people[1]].last_month is not None  # the pension award ended the employment enrolment
        assert roster[people[2]].last_month == "2025-09"
        assert roster[people[2]].monthly_wage_fen == 1_200_000
        assert (pensioner.from_date.isoformat(), pensioner.scheme, pensioner.region_code) == ("2026-01-01", "employee", "110105")

        me = svc.headers({"kind": "citizen", "sub": "u1", "id_number": idn(1, birth="19650101"), "name": "张三",
                          "realname_level": 1, "auth_method": "sms", "auth_time": int(START.timestamp())})
        r = await svc.client.get("/review/v1/me/certification", headers=me)
        assert (r.json()["state"], r.json()["due_by"]) == ("valid", "2027-01-01")
        r = await svc.client.get(f"/review/v1/employers/{CC}/annual-declarations/2025/roster", headers=svc.headers(employer(CC)))
        assert sorted(i["name"] for i in r.json()["items"]) == ["张三", "李四"]


class TestContributionFeed:
    async def test_seeded_policies_give_the_bands(self, svc, make_service):
        from services.common.clock import FrozenClock
        from services.review.models import Band

        contrib = await make_service("contribution", clock=FrozenClock(START))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=contrib.app), base_url="http://contribution") as c:
            consumer = FeedConsumer(
                producer="contribution", base_url="http://contribution", db=svc.db,
                handlers=CONSUMERS["contribution"], token=svc.app.state.internal_token, client=c,
            )
            async with contrib.db.sessionmaker() as s:
                from sqlalchemy import func

                from services.common.models import OutboxEvent
                published = (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar()
            assert published > 0
            assert await drain_all(consumer, expected=published) == published
        async with svc.db.sessionmaker() as s:
            bands = {(b.region_code, b.effective_from): (b.base_lower_fen, b.base_upper_fen)
                     for b in (await s.execute(select(Band))).scalars()}
        assert bands[("110000", "2025-07")] == (695_700, 3_528_300)
        # The band of the year declared in 2026 for Beijing (bases from 2026-07).
        from services.review.rules import band_in_force

        async with svc.db.sessionmaker() as s:
            band = await band_in_force(session=s, region_code="110105", month="2026-07")
        assert (band.region_code, band.base_lower_fen) == ("110000", 695_700)
