"""Read models fed by registration's and contribution's events (applied once each, via the inbox)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.enums import Category
from services.common.events import CloudEvent
from services.contracts.contribution import POLICY_PUBLISHED, PolicyPublished
from services.contracts.registration import (
    EMPLOYER_REGISTERED,
    ENROLMENT_ENDED,
    PENSION_AWARDED,
    PERSON_ENROLLED,
    PERSON_SEPARATED,
    EmployerRegistered,
    EnrolmentEnded,
    PensionAwarded,
    PersonEnrolled,
    PersonSeparated,
)
from services.review.models import Band, Employer, Pensioner, RosterEntry
from services.review.schemas import CertificationState


async def on_employer_registered(session: AsyncSession, event: CloudEvent) -> None:
    """A unit registered: keep its name and region."""
    e = EmployerRegistered.model_validate(event.data)
    row = await session.get(Employer, e.credit_code)
    if row is None:
        session.add(Employer(credit_code=e.credit_code, name=e.name, region_code=e.region_code, registered_on=e.registered_on))
    else:
        row.name, row.region_code = e.name, e.region_code


async def on_person_enrolled(session: AsyncSession, event: CloudEvent) -> None:
    """An employee enrolment joins the employer's roster."""
    e = PersonEnrolled.model_validate(event.data)
    if e.category != Category.employee or e.employer is None:
        return
    row = (await session.execute(select(RosterEntry).where(RosterEntry.enrolment_id == e.enrolment_id))).scalar_one_or_none()
    if row is None:
        row = RosterEntry(enrolment_id=e.enrolment_id)
        session.add(row)
    row.credit_code = e.employer.credit_code
    row.person_id = e.person_id
    row.id_hash = e.id_hash
    row.id_masked = e.id_masked
    row.id_number_enc = e.id_number_enc
    row.name = e.name
    row.hire_date = e.hire_date
    row.start_month = e.start_month
    row.monthly_wage_fen = e.monthly_wage_fen
    if await session.get(Employer, e.employer.credit_code) is None:
        # The roster may arrive before the registration event was seen (it is in the same feed, earlier).
        session.add(Employer(
            credit_code=e.employer.credit_code, name=e.employer.name, region_code=e.employer.region_code,
            registered_on=e.hire_date or aware(event.time).date(),
        ))


async def _end(session: AsyncSession, enrolment_id: str, last_month: str) -> None:
    row = (await session.execute(select(RosterEntry).where(RosterEntry.enrolment_id == enrolment_id))).scalar_one_or_none()
    if row is not None and (row.last_month is None or last_month < row.last_month):
        row.last_month = last_month


async def on_person_separated(session: AsyncSession, event: CloudEvent) -> None:
    """Employment ended: the roster entry ends with its last month."""
    e = PersonSeparated.model_validate(event.data)
    await _end(session, e.enrolment_id, e.last_month)


async def on_enrolment_ended(session: AsyncSession, event: CloudEvent) -> None:
    """An employee enrolment ended another way (pension award, ...)."""
    e = EnrolmentEnded.model_validate(event.data)
    if e.category == Category.employee:
        await _end(session, e.enrolment_id, e.end_month)


async def on_pension_awarded(session: AsyncSession, event: CloudEvent) -> None:
    """A pension award: the person must certify from now on."""
    e = PensionAwarded.model_validate(event.data)
    row = await session.get(Pensioner, e.person_id)
    if row is None:
        session.add(Pensioner(
            person_id=e.person_id, id_hash=e.id_hash, id_masked=e.id_masked, name=e.name, region_code=e.region_code,
            scheme=str(e.scheme), from_date=e.from_date, recorded_state=str(CertificationState.valid),
            updated_at=aware(event.time),
        ))
    else:
        row.region_code, row.scheme, row.from_date, row.name = e.region_code, str(e.scheme), e.from_date, e.name


async def on_policy_published(session: AsyncSession, event: CloudEvent) -> None:
    """A dated contribution policy: keep its base band."""
    e = PolicyPublished.model_validate(event.data)
    row = (
        await session.execute(
            select(Band).where(Band.region_code == e.region_code, Band.effective_from == e.effective_from)
        )
    ).scalar_one_or_none()
    if row is None:
        row = Band(region_code=e.region_code, effective_from=e.effective_from)
        session.add(row)
    row.effective_to = e.effective_to
    row.avg_wage_fen = e.avg_wage_fen
    row.base_lower_fen = e.base_lower_fen
    row.base_upper_fen = e.base_upper_fen


CONSUMERS = {
    "registration": {
        EMPLOYER_REGISTERED: on_employer_registered,
        PERSON_ENROLLED: on_person_enrolled,
        PERSON_SEPARATED: on_person_separated,
        ENROLMENT_ENDED: on_enrolment_ended,
        PENSION_AWARDED: on_pension_awarded,
    },
    "contribution": {POLICY_PUBLISHED: on_policy_published},
}
