"""Contribution fixtures: the service on a frozen clock, and the read model fed as registration would."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.common.clock import FrozenClock
from services.common.events import CloudEvent
from services.common.pii import id_hash, mask_id_number
from services.contracts import registration as reg
from services.contribution import readmodel
from services.contribution.declarations.crediting import mark_declaration_paid
from tests.helpers import make_credit_code, make_id_number

# 2026-03-10 10:00 in Shanghai: the current month is 2026-03.
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)

ALICE = make_id_number("110105", "19900101", "001")
BOB = make_id_number("110105", "19850505", "013")
CAROL = make_id_number("310101", "19920202", "022")
UNIT = make_credit_code("91110105MA0000001")
OTHER_UNIT = make_credit_code("91110105MA0000003")
AGENCY = make_credit_code("91110105MA0000002")


@pytest.fixture
async def svc(make_service: Any) -> Any:
    return await make_service("contribution", clock=FrozenClock(NOW))


async def feed(svc: Any, type_: str, data: Any) -> None:
    """Apply one registration event to the read model, as the feed consumer would."""
    handlers = {**readmodel.REGISTRATION_HANDLERS, **readmodel.REVIEW_HANDLERS}
    event = CloudEvent(id=str(uuid.uuid4()), source="/socialsec/registration", type=type_, time=NOW,
                       data=data.model_dump(mode="json"))
    async with svc.db.sessionmaker() as session, session.begin():
        await handlers[type_](session, event)


def person_ref(id_number: str, person_id: str | None = None) -> dict[str, Any]:
    return {
        "person_id": person_id or str(uuid.uuid5(uuid.NAMESPACE_OID, id_number)),
        "id_hash": id_hash(id_number), "id_masked": mask_id_number(id_number), "id_number_enc": "x",
        "name": "张三", "birth_date": date(1990, 1, 1), "sex": "male",
    }


async def enrol_self(svc: Any, id_number: str, *, category: str = "flexible", region_code: str = "110105",
                     start_month: str = "2026-01", insurance_types: list[str] | None = None) -> str:
    """A citizen's own enrolment (flexible or resident); its id."""
    enrolment_id = str(uuid.uuid4())
    await feed(svc, reg.PERSON_ENROLLED, reg.PersonEnrolled(
        **person_ref(id_number), enrolment_id=enrolment_id, category=category, region_code=region_code,
        insurance_types=insurance_types or (["pension", "medical"] if category == "flexible" else ["pension"]),
        start_month=start_month, household_region_code=region_code if category == "flexible" else None,
    ))
    return enrolment_id


async def register_unit(svc: Any, credit_code: str = UNIT, *, region_code: str = "110105", work_injury_class: int = 1) -> None:
    await feed(svc, reg.EMPLOYER_REGISTERED, reg.EmployerRegistered(
        credit_code=credit_code, name="北京示例科技有限公司", region_code=region_code,
        work_injury_class=work_injury_class, registered_on=date(2020, 1, 1),
    ))


async def hire(svc: Any, id_number: str, wage_fen: int, *, credit_code: str = UNIT, start_month: str = "2025-01",
               region_code: str = "110105", work_injury_class: int = 1) -> dict[str, Any]:
    """An employee enrolled by the unit; the person reference."""
    ref = person_ref(id_number)
    enrolment_id = str(uuid.uuid4())
    await feed(svc, reg.PERSON_ENROLLED, reg.PersonEnrolled(
        **ref, enrolment_id=enrolment_id, category="employee", region_code=region_code,
        insurance_types=["pension", "medical", "unemployment", "work_injury", "maternity"], start_month=start_month,
        employer=reg.EmployerRef(credit_code=credit_code, name="单位", region_code=region_code,
                                 work_injury_class=work_injury_class),
        hire_date=date(int(start_month[:4]), int(start_month[5:]), 1), monthly_wage_fen=wage_fen,
    ))
    return {**ref, "enrolment_id": enrolment_id}


async def pay(svc: Any, declaration_id: str, payment_id: str = "pay-1", channel: str = "alipay") -> Any:
    """Credit a payment as the payment channels do."""
    async with svc.db.sessionmaker() as session, session.begin():
        return await mark_declaration_paid(session=session, declaration_id=declaration_id, payment_id=payment_id,
                                           channel=channel, paid_at=svc.clock.now())


async def rows(svc: Any, stmt: Any) -> list[Any]:
    async with svc.db.sessionmaker() as session:
        return list((await session.execute(stmt)).scalars().all())


def ts() -> float:
    return NOW.timestamp()
