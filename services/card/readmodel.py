"""Who is enrolled and who draws a pension, from registration's events (read model)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.card.models import Enrolment, Person
from services.common.events import CloudEvent
from services.contracts.registration import (
    ENROLMENT_ENDED,
    PENSION_AWARDED,
    PERSON_ENROLLED,
    PERSON_SEPARATED,
    EnrolmentEnded,
    PensionAwarded,
    PersonEnrolled,
    PersonSeparated,
)


def _at(event: CloudEvent) -> datetime:
    return event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)


async def _person(session: AsyncSession, *, id_hash: str, person_id: str, at: datetime) -> Person:
    person = await session.get(Person, id_hash)
    if person is None:
        person = Person(id_hash=id_hash, person_id=person_id, pensioner=False, updated_at=at)
        session.add(person)
    return person


async def on_person_enrolled(session: AsyncSession, event: CloudEvent) -> None:
    """An enrolment opened: the person may apply for a card."""
    data = PersonEnrolled.model_validate(event.data)
    at = _at(event)
    person = await _person(session, id_hash=data.id_hash, person_id=data.person_id, at=at)
    person.region_code = data.region_code
    person.updated_at = at
    enrolment = await session.get(Enrolment, data.enrolment_id)
    if enrolment is None:
        session.add(Enrolment(
            enrolment_id=data.enrolment_id, id_hash=data.id_hash, category=str(data.category),
            region_code=data.region_code, start_month=data.start_month, open=True, updated_at=at,
        ))
    await session.flush()


async def _close(session: AsyncSession, enrolment_id: str, *, end_month: str | None, at: datetime) -> None:
    await session.execute(
        update(Enrolment).where(Enrolment.enrolment_id == enrolment_id).values(open=False, end_month=end_month, updated_at=at)
    )


async def on_person_separated(session: AsyncSession, event: CloudEvent) -> None:
    """Employment ended: the employee enrolment is no longer open."""
    data = PersonSeparated.model_validate(event.data)
    await _close(session, data.enrolment_id, end_month=data.last_month, at=_at(event))


async def on_enrolment_ended(session: AsyncSession, event: CloudEvent) -> None:
    """An enrolment ended."""
    data = EnrolmentEnded.model_validate(event.data)
    await _close(session, data.enrolment_id, end_month=data.end_month, at=_at(event))


async def on_pension_awarded(session: AsyncSession, event: CloudEvent) -> None:
    """A pensioner keeps (and may apply for) a card: pension and medical use it."""
    data = PensionAwarded.model_validate(event.data)
    at = _at(event)
    person = await _person(session, id_hash=data.id_hash, person_id=data.person_id, at=at)
    person.pensioner = True
    person.pension_from = data.from_date
    person.region_code = data.region_code
    person.updated_at = at
    for enrolment_id in data.ended_enrolment_ids:
        await _close(session, enrolment_id, end_month=None, at=at)
    await session.flush()


HANDLERS = {
    PERSON_ENROLLED: on_person_enrolled,
    PERSON_SEPARATED: on_person_separated,
    ENROLMENT_ENDED: on_enrolment_ended,
    PENSION_AWARDED: on_pension_awarded,
}
