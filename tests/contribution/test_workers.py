"""Several workers (or replicas) of contribution on one database: one feed, one set of jobs, nothing twice.

Two application instances share one database, as two uvicorn workers or two
replicas do. Each runs its own consumer of registration's feed (small batches,
polling without pause, while registration keeps publishing) and its own
scheduled jobs (declaration expiry, payment closing). Every event must be applied
exactly once, every due declaration expired once, and no worker may log an error
(no "database is locked", no duplicate key).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event, func, select

from services.common.clock import FrozenClock
from services.common.events import CloudEvent, FeedConsumer, Handler
from services.common.models import InboxEvent
from services.contracts import registration as reg
from services.contribution.app import create_app, expire_declarations_job
from services.contribution.models import Declaration, DeclaredMonth, KnownEnrolment
from services.contribution.payments.jobs import payment_closer
from services.contribution.readmodel import REGISTRATION_HANDLERS
from services.contribution.settings import Settings
from services.registration.events import OUTBOX
from tests.contribution.conftest import NOW, person_ref
from tests.helpers import citizen, make_id_number

PEOPLE = 40
DECLARANTS = 6


def _committed_applications(handlers: dict[str, Handler], applied: list[str]) -> dict[str, Handler]:
    """The handlers, counting the events whose application was committed."""

    def wrap(handler: Handler) -> Handler:
        async def counted(session: Any, ev: CloudEvent) -> None:
            await handler(session, ev)
            pending = session.info.setdefault("applied", [])
            if not pending:
                def committed(_s: Any) -> None:
                    applied.extend(session.info.pop("applied", []))

                def rolled_back(_s: Any) -> None:
                    session.info.pop("applied", None)

                event.listen(session.sync_session, "after_commit", committed, once=True)
                event.listen(session.sync_session, "after_soft_rollback", rolled_back, once=True)
            pending.append(ev.id)

        return counted

    return {t: wrap(h) for t, h in handlers.items()}


async def _publish(registration: Any, people: list[str]) -> list[str]:
    """Registration enrols each person (one transaction each, as its routes do); the event ids."""
    ids = []
    for id_number in people:
        async with registration.db.sessionmaker() as s, s.begin():
            row = OUTBOX.emit(s, type=reg.PERSON_ENROLLED, subject=str(uuid.uuid4()), time=NOW, data=reg.PersonEnrolled(
                **person_ref(id_number), enrolment_id=str(uuid.uuid4()), category="flexible", region_code="110105",
                insurance_types=["pension", "medical"], start_month="2026-01", household_region_code="110105",
            ))
            ids.append(row.event_id)
        await asyncio.sleep(0)
    return ids


async def _until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what} within {timeout}s"
        await asyncio.sleep(0.05)


async def test_two_workers_share_one_feed_and_the_jobs(make_service: Any, common_settings: Any, caplog: Any) -> None:
    clock = FrozenClock(NOW)
    registration = await make_service("registration", clock=FrozenClock(NOW))
    tuning = {"expiry_interval_seconds": 0.02, "declaration_ttl_minutes": 60}
    first = await make_service("contribution", clock=clock, **tuning)
    settings = Settings(database_url=first.url, migrate_on_start=False, consumers_enabled=False, **tuning)
    second_app = create_app(settings=settings, common=common_settings, clock=clock)
    workers = [first.app, second_app]
    applied: list[str] = []
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    async with LifespanManager(second_app):
        tasks = []
        consumers = []
        for app in workers:
            # Each worker polls with its own client, in batches small enough for the two to race.
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=registration.app), base_url="http://registration")
            c = FeedConsumer(
                producer="registration", base_url="http://registration", db=app.state.db,
                handlers=_committed_applications(REGISTRATION_HANDLERS, applied),
                token=app.state.internal_token, batch_size=3, interval=0.01, client=client,
            )
            consumers.append((c, client))
            tasks.append(asyncio.create_task(c.run(stop)))
            tasks.append(asyncio.create_task(expire_declarations_job(app, stop)))
            tasks.append(asyncio.create_task(payment_closer(app, stop)))
        try:
            people = [make_id_number("110105", "19900101", f"{i:03d}") for i in range(PEOPLE)]
            event_ids = await _publish(registration, people)

            async def all_in_inbox() -> bool:
                async with first.db.sessionmaker() as s:
                    return (await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one() == PEOPLE

            await _until(all_in_inbox, "every event applied")
            # Both workers take requests too: declarations for some of the people, on either worker.
            declared = []
            for i, id_number in enumerate(people[:DECLARANTS]):
                app = workers[i % 2]
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
                    r = await client.post("/contribution/v1/me/declarations", headers=first.headers(citizen(id_number)),
                                          json={"category": "flexible", "region_code": "110105", "base_fen": 695700,
                                                "months": ["2026-02", "2026-03"]})
                    assert r.status_code == 201, r.text
                    declared.append(r.json()["id"])
            clock.advance(minutes=61)  # every declaration is past its time: both workers' expiry jobs see them

            async def all_expired() -> bool:
                async with first.db.sessionmaker() as s:
                    statuses = (await s.execute(select(Declaration.status))).scalars().all()
                    return sorted(statuses) == ["expired"] * DECLARANTS

            await _until(all_expired, "every declaration expired")
            await asyncio.sleep(0.3)  # a few more rounds of both workers' jobs and consumers
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c, client in consumers:
                await c.aclose()
                await client.aclose()

    assert sorted(applied) == sorted(event_ids)  # each event applied once, by one worker or the other
    async with first.db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(KnownEnrolment))).scalar_one() == PEOPLE
        assert (await s.execute(select(func.count()).select_from(DeclaredMonth))).scalar_one() == 0
    expired_by_jobs = sum(int(r.getMessage().split(": ")[1].split()[0]) for r in caplog.records
                          if r.name == "socialsec.jobs" and r.getMessage().startswith("declaration expiry: "))
    assert expired_by_jobs == DECLARANTS  # each declaration expired by exactly one pass of one worker
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []
    assert not any("locked" in r.getMessage() for r in caplog.records)
