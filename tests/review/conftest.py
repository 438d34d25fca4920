"""Review service fixtures: an app on a frozen clock and its read models fed with producers' events."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.events import CloudEvent
from services.common.models import AuditEntry, OutboxEvent
from services.common.pii import cipher, id_hash, mask_id_number
from services.contracts import registration as reg
from services.contribution import events as contrib
from services.review.readmodel import CONSUMERS
from tests.helpers import make_credit_code, make_id_number

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
CC = make_credit_code("91110105MA0000001")
OTHER_CC = make_credit_code("91110105MA0000009")


def person_uuid(id_number: str) -> str:
    """The person id registration would have given (a UUID), stable per id number."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, id_number))


class Feed:
    """Feeds the review read models the events registration and contribution publish."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.n = 0

    async def apply(self, producer: str, type_: str, data: Any) -> None:
        self.n += 1
        event = CloudEvent(
            id=str(uuid.uuid4()), source=f"/socialsec/{producer}", type=type_, time=self.svc.clock.now(),
            data=data.model_dump(mode="json"),
        )
        async with self.svc.db.sessionmaker() as s:
            await CONSUMERS[producer][type_](s, event)
            await s.commit()

    def person(self, id_number: str, name: str, person_id: str | None = None) -> dict[str, Any]:
        return {
            "person_id": person_id or person_uuid(id_number),
            "id_hash": id_hash(id_number),
            "id_masked": mask_id_number(id_number),
            "id_number_enc": cipher().encrypt(id_number),
            "name": name,
            "birth_date": date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14])),
            "sex": "male" if int(id_number[16]) % 2 else "female",
        }

    async def award(
        self, id_number: str, name: str = "王大爷", *, from_date: date, region: str = "110105",
        scheme: str = "employee",
    ) -> str:
        p = self.person(id_number, name)
        await self.apply("registration", reg.PENSION_AWARDED, reg.PensionAwarded(
            **p, from_date=from_date, region_code=region, scheme=scheme,
        ))
        return p["person_id"]

    async def employer(self, credit_code: str = CC, name: str = "北京示例科技有限公司", region: str = "110105") -> None:
        await self.apply("registration", reg.EMPLOYER_REGISTERED, reg.EmployerRegistered(
            credit_code=credit_code, name=name, region_code=region, work_injury_class=1,
            registered_on=date(2020, 1, 1),
        ))

    async def enrol(
        self, id_number: str, name: str, *, wage: int = 1_000_000, credit_code: str = CC,
        start_month: str = "2024-01", region: str = "110105", person_id: str | None = None,
    ) -> str:
        p = self.person(id_number, name, person_id)
        enrolment_id = f"E-{uuid.uuid4().hex[:12]}"
        await self.apply("registration", reg.PERSON_ENROLLED, reg.PersonEnrolled(
            **p, enrolment_id=enrolment_id, category="employee", region_code=region,
            insurance_types=["pension", "medical"], start_month=start_month,
            employer=reg.EmployerRef(credit_code=credit_code, name="北京示例科技有限公司", region_code=region,
                                     work_injury_class=1),
            hire_date=date(int(start_month[:4]), int(start_month[5:]), 1), monthly_wage_fen=wage,
        ))
        return enrolment_id

    async def separate(self, id_number: str, enrolment_id: str, last_month: str, credit_code: str = CC) -> None:
        await self.apply("registration", reg.PERSON_SEPARATED, reg.PersonSeparated(
            person_id=person_uuid(id_number), id_hash=id_hash(id_number), enrolment_id=enrolment_id,
            employer_credit_code=credit_code, separation_date=date(int(last_month[:4]), int(last_month[5:]), 28),
            last_month=last_month,
        ))

    async def policy(self, region: str = "110000", effective_from: str = "2025-07", effective_to: str | None = None,
                     lower: int = 695_700, upper: int = 3_528_300) -> None:
        await self.apply("contribution", contrib.POLICY_PUBLISHED, contrib.PolicyPublished(
            region_code=region, effective_from=effective_from, effective_to=effective_to, avg_wage_fen=1_159_500,
            base_lower_fen=lower, base_upper_fen=upper,
        ))


async def outbox(svc: Any, type_: str | None = None) -> list[OutboxEvent]:
    async with svc.db.sessionmaker() as s:
        q = select(OutboxEvent).order_by(OutboxEvent.seq)
        if type_:
            q = q.where(OutboxEvent.type == type_)
        return list((await s.execute(q)).scalars())


async def audits(svc: Any, action: str | None = None) -> list[AuditEntry]:
    async with svc.db.sessionmaker() as s:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            q = q.where(AuditEntry.action == action)
        return list((await s.execute(q)).scalars())


@pytest.fixture
async def svc(make_service: Any) -> Any:
    return await make_service("review", clock=FrozenClock(START))


@pytest.fixture
def feed(svc: Any) -> Feed:
    return Feed(svc)


def idn(seq: int, birth: str = "19550101", region: str = "110105") -> str:
    """A valid id number per sequence."""
    return make_id_number(region, birth, f"{seq:03d}")


def many_id_numbers(n: int, region: str = "110105") -> list[str]:
    """n distinct valid id numbers (1,000 sequences per birth date)."""
    from datetime import timedelta

    born = date(1960, 1, 1)
    return [
        make_id_number(region, (born + timedelta(days=i // 1000)).strftime("%Y%m%d"), f"{i % 1000:03d}")
        for i in range(n)
    ]
