"""Who is enrolled where, from registration's events; new bases from review's approvals.

Handlers run in the consumer's transaction with its inbox, so each event is
applied once; they are also written to be harmless when an event is replayed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import CloudEvent, Handler
from services.common.identifiers import month_from_index, month_index, month_of
from services.contracts import registration as reg
from services.contracts import review as rev
from services.contribution.models import EmployeeBase, KnownEmployer, KnownEnrolment, KnownPerson


async def _person(session: AsyncSession, person_id: str, id_hash: str, id_masked: str | None = None) -> KnownPerson:
    row = await session.get(KnownPerson, person_id)
    if row is None:
        row = KnownPerson(person_id=person_id, id_hash=id_hash, id_masked=id_masked)
        session.add(row)
        await session.flush()
    return row


async def on_employer_registered(session: AsyncSession, event: CloudEvent) -> None:
    """A unit registered: remember its region and work-injury class."""
    data = reg.EmployerRegistered.model_validate(event.data)
    row = await session.get(KnownEmployer, data.credit_code)
    if row is None:
        session.add(KnownEmployer(
            credit_code=data.credit_code, name=data.name, region_code=data.region_code,
            work_injury_class=data.work_injury_class, registered_on=data.registered_on,
        ))
    else:
        row.name, row.region_code, row.work_injury_class = data.name, data.region_code, data.work_injury_class


async def on_person_enrolled(session: AsyncSession, event: CloudEvent) -> None:
    """An enrolment opened (employee, flexible or resident)."""
    data = reg.PersonEnrolled.model_validate(event.data)
    await _person(session, data.person_id, data.id_hash, data.id_masked)
    if data.employer is not None and await session.get(KnownEmployer, data.employer.credit_code) is None:
        session.add(KnownEmployer(
            credit_code=data.employer.credit_code, name=data.employer.name, region_code=data.employer.region_code,
            work_injury_class=data.employer.work_injury_class,
        ))
    row = await session.get(KnownEnrolment, data.enrolment_id)
    if row is None:
        session.add(KnownEnrolment(
            enrolment_id=data.enrolment_id, person_id=data.person_id, id_hash=data.id_hash, category=str(data.category),
            region_code=data.region_code, insurance_types=[str(i) for i in data.insurance_types],
            start_month=data.start_month, credit_code=data.employer.credit_code if data.employer else None,
            monthly_wage_fen=data.monthly_wage_fen,
        ))
    await session.flush()


async def _end(session: AsyncSession, enrolment_id: str, last_month: str) -> None:
    row = await session.get(KnownEnrolment, enrolment_id)
    if row is not None and (row.end_month is None or month_index(last_month) < month_index(row.end_month)):
        row.end_month = last_month


async def on_person_separated(session: AsyncSession, event: CloudEvent) -> None:
    """Employment ended: the employee enrolment covers months up to the last one."""
    data = reg.PersonSeparated.model_validate(event.data)
    await _end(session, data.enrolment_id, data.last_month)


async def on_enrolment_ended(session: AsyncSession, event: CloudEvent) -> None:
    """An enrolment ended from a month."""
    data = reg.EnrolmentEnded.model_validate(event.data)
    await _end(session, data.enrolment_id, data.end_month)


async def on_pension_awarded(session: AsyncSession, event: CloudEvent) -> None:
    """The person is a pensioner: every open enrolment ends the month before the award."""
    data = reg.PensionAwarded.model_validate(event.data)
    person = await _person(session, data.person_id, data.id_hash, data.id_masked)
    person.pensioner_from = data.from_date
    last = month_from_index(month_index(month_of(data.from_date)) - 1)
    rows = (await session.execute(select(KnownEnrolment).where(KnownEnrolment.id_hash == data.id_hash))).scalars().all()
    for row in rows:
        if row.enrolment_id in data.ended_enrolment_ids or row.end_month is None:
            if row.end_month is None or month_index(last) < month_index(row.end_month):
                row.end_month = last


async def on_annual_declaration_approved(session: AsyncSession, event: CloudEvent) -> None:
    """The approved wages, clamped by review, become the employees' bases from the new period."""
    data = rev.AnnualDeclarationApproved.model_validate(event.data)
    for line in data.lines:
        existing = (
            await session.execute(
                select(EmployeeBase).where(
                    EmployeeBase.credit_code == data.credit_code, EmployeeBase.id_hash == line.id_hash,
                    EmployeeBase.effective_from == data.effective_from,
                )
            )
        ).scalar_one_or_none()
        if existing is None:
            session.add(EmployeeBase(
                credit_code=data.credit_code, id_hash=line.id_hash, effective_from=data.effective_from,
                base_fen=line.new_base_fen, avg_monthly_wage_fen=line.avg_monthly_wage_fen,
                source_id=data.declaration_id,
            ))
        else:
            existing.base_fen = line.new_base_fen
            existing.avg_monthly_wage_fen = line.avg_monthly_wage_fen
            existing.source_id = data.declaration_id
    await session.flush()


REGISTRATION_HANDLERS: dict[str, Handler] = {
    reg.EMPLOYER_REGISTERED: on_employer_registered,
    reg.PERSON_ENROLLED: on_person_enrolled,
    reg.PERSON_SEPARATED: on_person_separated,
    reg.ENROLMENT_ENDED: on_enrolment_ended,
    reg.PENSION_AWARDED: on_pension_awarded,
}

REVIEW_HANDLERS: dict[str, Handler] = {
    rev.ANNUAL_DECLARATION_APPROVED: on_annual_declaration_approved,
}
