"""What never leaves the service (PINs, raw id numbers in logs) and the registration feed wiring."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
from sqlalchemy import select

from services.card.models import Enrolment, Person
from services.card.readmodel import HANDLERS
from services.common.events import FeedConsumer, Outbox
from services.contracts import registration as reg
from tests.card.conftest import CARD_NO
from tests.helpers import channel


async def test_logs_hold_no_pin_and_no_raw_id_number(flow: Any, idn: str, caplog: Any, capsys: Any) -> None:
    caplog.set_level(logging.DEBUG)
    card = await flow.active_card(idn)
    await flow.change_pin(idn, "999990", "285714")  # a wrong try
    await flow.change_pin(idn, "010010", "111111")  # a weak one
    assert (await flow.change_pin(idn, "010010", "285714")).status_code == 200
    await flow.client.post(f"/card/v1/cards/{card['id']}/pin-reset", json={"new_pin": "302917"}, headers=flow.h(flow.citizen(idn)))
    await flow.activate(CARD_NO, idn, "李四", by=channel("bank", "B2"))
    await flow.client.post("/card/v1/me/applications", content=b"{bad", headers=flow.h(flow.citizen(idn), **{"content-type": "application/json"}))
    # The messages as logged, and the message fields of the JSON lines the service's handler wrote
    # (whole lines also carry timestamps, whose microseconds may spell any six digits).
    messages = [r.getMessage() for r in caplog.records]
    out = capsys.readouterr()
    for line in (out.out + out.err).splitlines():
        if line.startswith("{"):
            messages.append(str(json.loads(line).get("message")))
    everything = "\n".join(messages)
    assert caplog.records, "the service logs its requests"
    for secret in (idn, "010010", "285714", "302917", "999990", "111111"):
        assert secret not in everything, secret


async def test_registration_feed_builds_the_read_model(flow: Any, make_service: Any, idn: str) -> None:
    registration = await make_service("registration")
    person = flow.person_ref(idn)
    async with registration.db.sessionmaker() as s, s.begin():
        Outbox("registration").emit(s, type=reg.PERSON_ENROLLED, data=reg.PersonEnrolled(
            **person, enrolment_id="e-1", category="employee", region_code="120101",
            insurance_types=["pension", "medical", "unemployment", "work_injury"], start_month="2026-03",
        ))
    consumer = FeedConsumer(
        producer="registration", base_url="http://registration", db=flow.svc.db, handlers=HANDLERS,
        token=flow.svc.app.state.internal_token,
        client=httpx.AsyncClient(transport=httpx.ASGITransport(app=registration.app), base_url="http://registration"),
    )
    # On PostgreSQL the feed holds back events while any older transaction of the cluster is
    # still open (transaction ids are cluster-wide), so wait for other work to finish.
    applied = 0
    for _ in range(300):
        applied += await consumer.drain()
        if applied:
            break
        await asyncio.sleep(0.1)
    assert applied == 1
    assert await consumer.drain() == 0
    async with flow.svc.db.sessionmaker() as s:
        assert (await s.get(Person, person["id_hash"])).region_code == "120101"
        assert (await s.execute(select(Enrolment.open).where(Enrolment.enrolment_id == "e-1"))).scalar_one() is True
    card = await flow.apply(idn)
    assert card["region_code"] == "120101"
    await consumer.aclose()
