"""Card service fixtures: a card app on a frozen clock, the registration read model, and flows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.card.models import Card
from services.card.readmodel import HANDLERS
from services.common.clock import FrozenClock
from services.common.events import CloudEvent
from services.common.pii import cipher, id_hash, mask_id_number
from services.contracts import registration as reg
from tests.helpers import channel, citizen, make_id_number, staff

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
CARD_NO = "J12345678"


class CardFlow:
    """Drives the card service the way its callers do."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.client = svc.client

    # principals -------------------------------------------------------------------

    def now_epoch(self) -> int:
        return int(self.svc.clock.now().timestamp())

    def citizen(self, id_number: str, name: str = "张三", **kw: Any) -> dict[str, Any]:
        kw.setdefault("auth_time", self.now_epoch())
        # The platform user id is opaque: it must not echo the id number (it lands in audit rows).
        kw.setdefault("sub", f"user-{id_hash(id_number)[:12]}")
        return citizen(id_number, name, **kw)

    def h(self, prn: dict[str, Any] | None, **extra: str) -> dict[str, str]:
        return self.svc.headers(prn, **extra)

    # registration's events --------------------------------------------------------

    async def deliver(self, type_: str, data: Any) -> None:
        event = CloudEvent(
            id=str(uuid.uuid4()), source="/socialsec/registration", type=type_, time=self.svc.clock.now(),
            data=data.model_dump(mode="json"),
        )
        async with self.svc.db.sessionmaker() as s, s.begin():
            await HANDLERS[type_](s, event)

    def person_ref(self, id_number: str, name: str = "张三") -> dict[str, Any]:
        return {
            "person_id": f"p-{id_hash(id_number)[:12]}", "id_hash": id_hash(id_number), "id_masked": mask_id_number(id_number),
            "id_number_enc": cipher().encrypt(id_number), "name": name, "birth_date": date(1990, 1, 1), "sex": "male",
        }

    async def enrol(self, id_number: str, *, region: str = "110105", name: str = "张三", enrolment_id: str | None = None) -> str:
        eid = enrolment_id or f"e-{uuid.uuid4().hex[:12]}"
        await self.deliver(reg.PERSON_ENROLLED, reg.PersonEnrolled(
            **self.person_ref(id_number, name), enrolment_id=eid, category="flexible", region_code=region,
            insurance_types=["pension", "medical"], start_month="2026-01",
        ))
        return eid

    # card steps ---------------------------------------------------------------------

    async def apply(self, id_number: str, name: str = "张三") -> dict[str, Any]:
        r = await self.client.post("/card/v1/me/applications", headers=self.h(self.citizen(id_number, name, level=2)))
        assert r.status_code == 201, r.text
        return r.json()

    async def issue(self, card_id: str, card_no: str = CARD_NO, bank: str = "中国工商银行") -> dict[str, Any]:
        r = await self.client.post(
            f"/card/v1/cards/{card_id}/issuance", json={"card_no": card_no, "bank": bank},
            headers=self.h(staff("operator")),
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def activate(self, card_no: str, id_number: str, name: str = "张三", by: Any = None) -> Any:
        prn = by or channel("bank", "B001")
        return await self.client.post(
            "/card/v1/activations", json={"card_no": card_no, "id_number": id_number, "name": name}, headers=self.h(prn)
        )

    async def active_card(self, id_number: str, *, region: str = "110105", card_no: str = CARD_NO, name: str = "张三") -> dict[str, Any]:
        await self.enrol(id_number, region=region, name=name)
        card = await self.apply(id_number, name)
        await self.issue(card["id"], card_no)
        r = await self.activate(card_no, id_number, name)
        assert r.status_code == 200, r.text
        return r.json()

    async def change_pin(self, id_number: str, old: str, new: str, **kw: Any) -> Any:
        return await self.client.put(
            "/card/v1/me/card/pin", json={"old_pin": old, "new_pin": new}, headers=self.h(self.citizen(id_number, **kw))
        )

    async def my_card(self, id_number: str, **kw: Any) -> Any:
        return await self.client.get("/card/v1/me/card", headers=self.h(self.citizen(id_number, **kw)))

    async def card_row(self, card_id: str) -> Card:
        async with self.svc.db.sessionmaker() as s:
            return (await s.execute(select(Card).where(Card.id == card_id))).scalar_one()


@pytest.fixture
async def svc(make_service: Any) -> Any:
    # Cheap argon2 parameters keep the suite fast; production uses the defaults.
    return await make_service(
        "card", clock=FrozenClock(START), pin_hash_time_cost=1, pin_hash_memory_kib=64, pin_hash_parallelism=1
    )


@pytest.fixture
def flow(svc: Any) -> CardFlow:
    return CardFlow(svc)


@pytest.fixture
def idn() -> str:
    """The holder's id number: 110105199001010013 style, last six digits its initial PIN."""
    return make_id_number("110105", "19900101", "001")
