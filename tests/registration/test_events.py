"""The registration feed: every event a consumer needs, in order, matching the published schemas."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel

from services.common.clock import FrozenClock, aware
from services.common.events import CloudEvent, FeedConsumer
from services.registration import events as ev
from tests.helpers import employer
from tests.registration.conftest import BASE, CC_A, ID_1, NOW, STAFF_OPERATOR, Reg

SCHEMAS: dict[str, type[BaseModel]] = {
    ev.EMPLOYER_REGISTERED: ev.EmployerRegistered,
    ev.PERSON_ENROLLED: ev.PersonEnrolled,
    ev.PERSON_SEPARATED: ev.PersonSeparated,
    ev.ENROLMENT_ENDED: ev.EnrolmentEnded,
    ev.PENSION_AWARDED: ev.PensionAwarded,
}


async def test_a_consumer_reads_every_event_once_in_order(reg: Reg, make_service: Any) -> None:
    await reg.register_employer(CC_A)
    emp = await reg.enrol(hire_date="2025-06-01")
    await reg.separate(emp["person_id"], date="2026-01-31")
    flex = await reg.enrol_self(start_month="2026-02")
    r = await reg.client.post(f"{BASE}/persons/{emp['person_id']}/pension-award", json={"from_date": "2026-03-01"},
                              headers=reg.h(STAFF_OPERATOR))
    assert r.status_code == 200
    # A refused request writes no event.
    await reg.enrol_self(expect=409)
    r = await reg.client.post(f"{BASE}/employers", headers=reg.h(employer(CC_A)), json={
        "credit_code": CC_A, "name": "x", "region_code": "110105", "address": "x", "contact": "x", "work_injury_class": 1})
    assert r.status_code == 409

    consumer_svc = await make_service("registration", clock=FrozenClock(NOW))
    received: list[tuple[str, BaseModel]] = []

    async def handler(session: Any, event: CloudEvent) -> None:
        received.append((event.type, SCHEMAS[event.type].model_validate(event.data)))
        # (SQLite hands the kernel's feed a naive time; every stored time is UTC.)
        assert event.source == "/socialsec/registration" and aware(event.time) == NOW

    consumer = FeedConsumer(
        producer="registration", base_url="http://registration", db=consumer_svc.db,
        handlers=dict.fromkeys(SCHEMAS, handler), token=reg.svc.app.state.internal_token,
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=reg.svc.app), base_url="http://registration"),
        batch_size=3,
    )
    # On PostgreSQL the feed holds rows back while any older transaction in the cluster is open
    # (other suites sharing the server create databases): poll a little, as the real consumer does.
    applied = 0
    for _ in range(100):
        applied += await consumer.drain()
        if applied >= 7:
            break
        await asyncio.sleep(0.1)
    assert applied == 7
    assert await consumer.drain() == 0, "applied once"
    await consumer.aclose()
    assert [t for t, _ in received] == [
        ev.EMPLOYER_REGISTERED, ev.PERSON_ENROLLED, ev.PERSON_SEPARATED, ev.ENROLMENT_ENDED,
        ev.PERSON_ENROLLED, ev.ENROLMENT_ENDED, ev.PENSION_AWARDED,
    ]
    awarded = received[-1][1]
    assert isinstance(awarded, ev.PensionAwarded)
    assert awarded.ended_enrolment_ids == [flex["id"]] and awarded.scheme == "employee"
    assert ID_1 not in repr([m.model_dump() for _, m in received]), "no plaintext id number on the feed"
