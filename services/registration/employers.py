"""Employers and their employees: unit registration, employee enrolment (with the
art. 58 late flag), separation and the roster."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.enums import Category
from services.common.identifiers import id_number_info, month_of
from services.common.pagination import keyset_page
from services.common.principal import Principal, PrincipalKind, check_own_unit
from services.registration import events as ev
from services.registration.errors import (
    EmployeeAlreadyEnrolled,
    EmployerAlreadyRegistered,
    EmployerNotFound,
    EmploymentNotFound,
    EnrolmentAlreadyEnded,
    HireDateTooFarAhead,
    PersonIsPensioner,
    PersonNotFound,
    SeparationBeforeHire,
    SeparationTooFarAhead,
    UnderWorkingAge,
)
from services.registration.events import OUTBOX
from services.registration.models import (
    ChangeKind,
    Employer,
    EndReason,
    Enrolment,
    EnrolmentStatus,
    Person,
)
from services.registration.schemas import (
    EmployeeIn,
    EmployeeOut,
    EmployerIn,
    EmployerOut,
    RosterPage,
    RosterStatus,
    SeparationIn,
)
from services.registration.service import (
    add_change,
    check_insurance_types,
    conflict,
    emit_enrolled,
    end_enrolment,
    enrolment_out,
    get_or_create_person,
    insert_enrolment,
    new_id,
    open_enrolments,
    person_by_public_id,
    previous_month,
    shares_scheme,
)

# Art. 58: the employer registers within 30 days of the first day of work.
REGISTRATION_DAYS = 30
# How far ahead an employer may announce a hire or a separation.
DAYS_AHEAD = 30
WORKING_AGE = 16


def employer_out(employer: Employer) -> EmployerOut:
    """The public shape of an employer."""
    return EmployerOut(
        id=employer.credit_code, credit_code=employer.credit_code, name=employer.name,
        region_code=employer.region_code, address=employer.address, contact=employer.contact,
        work_injury_class=employer.work_injury_class, registered_on=employer.registered_on,
    )


def employer_ref(employer: Employer) -> ev.EmployerRef:
    return ev.EmployerRef(
        credit_code=employer.credit_code, name=employer.name, region_code=employer.region_code,
        work_injury_class=employer.work_injury_class,
    )


async def register_employer(*, session: AsyncSession, clock: Clock, principal: Principal, body: EmployerIn) -> EmployerOut:
    """单位参保登记: register a unit; its own principal or staff (audited)."""
    check_own_unit(principal, body.credit_code)
    now, today = clock.now(), clock.today()
    employer = Employer(
        credit_code=body.credit_code, name=body.name, region_code=body.region_code, address=body.address,
        contact=body.contact, work_injury_class=body.work_injury_class, registered_on=today, created_at=now,
        created_by=principal.actor_id,
    )
    try:
        async with session.begin_nested():
            session.add(employer)
            await session.flush()
    except IntegrityError:
        raise EmployerAlreadyRegistered(params={"credit_code": body.credit_code}) from None
    OUTBOX.emit(
        session, type=ev.EMPLOYER_REGISTERED, subject=employer.credit_code, time=now,
        data=ev.EmployerRegistered(
            credit_code=employer.credit_code, name=employer.name, region_code=employer.region_code,
            work_injury_class=employer.work_injury_class, registered_on=today,
        ),
    )
    if principal.kind == PrincipalKind.staff:
        record_audit(session, actor=principal, action="employer.register", target_type="employer",
                     target_id=employer.credit_code, at=now, details={"region_code": employer.region_code})
    return employer_out(employer)


async def get_employer(*, session: AsyncSession, credit_code: str) -> Employer:
    """The registered employer; 404 employer_not_found otherwise."""
    employer = await session.get(Employer, credit_code)
    if employer is None:
        raise EmployerNotFound()
    return employer


def employee_out(
    enrolment: Enrolment, employer: Employer, *, name: str, id_masked: str, ended: list[str] | None = None,
) -> EmployeeOut:
    """A roster line."""
    base = enrolment_out(enrolment, employer.name)
    return EmployeeOut(**base.model_dump(), name=name, id_number_masked=id_masked, ended_enrolments=ended or [])


def check_employee(body: EmployeeIn, *, today: date) -> list[str]:
    """The rules of an employee enrolment that need no stored state: the insurance types (as stored), the hire date
    at most 30 days ahead, 16 years old at the hire date."""
    types = check_insurance_types(Category.employee, body.insurance_types)
    if body.hire_date > today + timedelta(days=DAYS_AHEAD):
        raise HireDateTooFarAhead(params={"latest_hire_date": (today + timedelta(days=DAYS_AHEAD)).isoformat()})
    born = id_number_info(body.id_number).birth_date
    hire = body.hire_date
    if hire.year - born.year - ((hire.month, hire.day) < (born.month, born.day)) < WORKING_AGE:
        raise UnderWorkingAge()
    return types


def employee_enrolment(
    *, employer: Employer, person: Person, body: EmployeeIn, types: list[str], today: date, now: datetime,
    principal: Principal,
) -> Enrolment:
    """A new open employee enrolment (late after 30 days, art. 58/84); not yet added to the session."""
    late_days = max((today - body.hire_date).days - REGISTRATION_DAYS, 0)
    return Enrolment(
        id=new_id(), person_id=person.id, category=Category.employee, status=EnrolmentStatus.active,
        region_code=employer.region_code, insurance_types=types, start_month=month_of(body.hire_date),
        employer_credit_code=employer.credit_code, hire_date=body.hire_date, monthly_wage_fen=body.monthly_wage_fen,
        late=late_days > 0, late_days=late_days, registered_on=today, created_at=now, created_by=principal.actor_id,
    )


async def enrol_employee(
    *, session: AsyncSession, clock: Clock, principal: Principal, credit_code: str, body: EmployeeIn,
) -> EmployeeOut:
    """职工参保登记 (增员): the employer enrols an employee; late after 30 days (art. 58/84)."""
    employer = await get_employer(session=session, credit_code=credit_code)
    today, now = clock.today(), clock.now()
    types = check_employee(body, today=today)
    person = await get_or_create_person(
        session=session, id_number=body.id_number, name=body.name, now=now, name_verified=False,
    )
    if person.pensioner_from is not None and "pension" in types:
        raise PersonIsPensioner(params={"pensioner_from": person.pensioner_from.isoformat()})
    open_now = await open_enrolments(session=session, person_id=person.id, lock=True)
    self_enrolments = []
    for other in open_now:
        if other.category == Category.employee and other.employer_credit_code == credit_code:
            raise EmployeeAlreadyEnrolled(params={"enrolment_id": other.id, "person_id": person.id})
    for other in open_now:
        if not shares_scheme(other.insurance_types, types):
            continue
        if other.category == Category.employee:
            raise conflict(other)
        self_enrolments.append(other)
    hire_month = month_of(body.hire_date)
    # The employer takes over: a flexible or resident enrolment of the same scheme ends before the hire month.
    for other in self_enrolments:
        end_enrolment(session, person=person, enrolment=other, end_month=previous_month(hire_month),
                      reason=EndReason.employment, now=now)
    enrolment = employee_enrolment(employer=employer, person=person, body=body, types=types, today=today, now=now,
                                   principal=principal)
    try:
        await insert_enrolment(session=session, enrolment=enrolment)
    except IntegrityError:
        # The same employer enrolled this person a moment ago.
        raise EmployeeAlreadyEnrolled(params={"person_id": person.id}) from None
    emit_enrolled(session, person=person, enrolment=enrolment, now=now, employer=employer_ref(employer))
    return employee_out(enrolment, employer, name=person.name, id_masked=person.id_masked,
                        ended=[e.id for e in self_enrolments])


async def separate_employee(
    *, session: AsyncSession, clock: Clock, principal: Principal, credit_code: str, person_id: str, body: SeparationIn,
) -> EmployeeOut:
    """减员: the employment ends on the separation date; so does its enrolment (with its month)."""
    employer = await get_employer(session=session, credit_code=credit_code)
    try:
        person = await person_by_public_id(session=session, person_id=person_id)
    except PersonNotFound:
        raise EmploymentNotFound() from None
    rows = (
        await session.execute(
            select(Enrolment)
            .where(Enrolment.person_id == person.id, Enrolment.employer_credit_code == credit_code)
            .order_by(Enrolment.seq.desc())
            .with_for_update()
        )
    ).scalars().all()
    enrolment = next((e for e in rows if e.status == EnrolmentStatus.active), None)
    if enrolment is None:
        if rows:
            raise EnrolmentAlreadyEnded(params={"enrolment_id": rows[0].id, "end_month": rows[0].end_month})
        raise EmploymentNotFound()
    assert enrolment.hire_date is not None
    today, now = clock.today(), clock.now()
    if body.separation_date < enrolment.hire_date:
        raise SeparationBeforeHire(params={"hire_date": enrolment.hire_date.isoformat()})
    if body.separation_date > today + timedelta(days=DAYS_AHEAD):
        raise SeparationTooFarAhead(
            params={"latest_separation_date": (today + timedelta(days=DAYS_AHEAD)).isoformat()}
        )
    last_month = month_of(body.separation_date)
    enrolment.separation_date = body.separation_date
    enrolment.separation_reason = body.reason
    OUTBOX.emit(
        session, type=ev.PERSON_SEPARATED, subject=person.id, time=now,
        data=ev.PersonSeparated(
            person_id=person.id, id_hash=person.id_hash, enrolment_id=enrolment.id, employer_credit_code=credit_code,
            separation_date=body.separation_date, last_month=last_month, reason=body.reason,
        ),
    )
    add_change(session, person_id=person.id, at=now, change=ChangeKind.separated, enrolment_id=enrolment.id,
               category=enrolment.category, region_code=enrolment.region_code, employer_credit_code=credit_code,
               month=last_month, on_date=body.separation_date, reason=body.reason)
    end_enrolment(session, person=person, enrolment=enrolment, end_month=last_month, reason=EndReason.separation,
                  now=now)
    return employee_out(enrolment, employer, name=person.name, id_masked=person.id_masked)


async def roster(
    *, session: AsyncSession, credit_code: str, status: RosterStatus | None, limit: int, cursor: str | None,
) -> RosterPage:
    """The employer's employees in registration order, one keyset page at a time."""
    employer = await get_employer(session=session, credit_code=credit_code)
    stmt = (
        select(Enrolment, Person.name, Person.id_masked)
        .join(Person, Person.id == Enrolment.person_id)
        .where(Enrolment.employer_credit_code == credit_code)
    )
    if status is not None:
        stmt = stmt.where(Enrolment.status == str(status))
    page = await keyset_page(session, stmt, keys=[Enrolment.seq], cursor=cursor, limit=limit)
    items = [employee_out(enrolment, employer, name=name, id_masked=masked) for enrolment, name, masked in page.rows]
    return RosterPage(items=items, next_cursor=page.next_cursor)
