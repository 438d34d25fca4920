"""Persons and enrolments: the rules shared by every way of enrolling (identity, the
one-open-enrolment rule, opening and ending with their events and history)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.enums import Category, Insurance
from services.common.identifiers import (
    id_number_info,
    month_from_index,
    month_index,
    normalize_id_number,
)
from services.common.pii import cipher, id_hash, mask_id_number
from services.common.principal import Principal
from services.registration import events as ev
from services.registration.errors import (
    EmployeeAlreadyEnrolled,
    EnrolmentConflict,
    InsuranceNotAllowed,
    NameMismatch,
    PersonNotFound,
    RealnameIdentityInvalid,
)
from services.registration.events import OUTBOX
from services.registration.models import (
    ChangeKind,
    EndReason,
    Enrolment,
    EnrolmentStatus,
    Person,
    PersonChange,
)
from services.registration.schemas import (
    EmployerBrief,
    EnrolmentOut,
    EnrolmentRef,
)

# Insurance types each category may hold.
ALLOWED_TYPES: dict[Category, frozenset[Insurance]] = {
    Category.employee: frozenset(Insurance),
    Category.flexible: frozenset({Insurance.pension, Insurance.medical}),
    Category.resident: frozenset({Insurance.pension, Insurance.medical}),
}
# A person holds at most one open enrolment per scheme (one pension, one basic medical).
EXCLUSIVE_TYPES = (Insurance.pension, Insurance.medical)


def new_id() -> str:
    """A fresh opaque public id."""
    return str(uuid.uuid4())


def previous_month(month: str) -> str:
    """The month before YYYY-MM."""
    return month_from_index(month_index(month) - 1)


def next_month(month: str) -> str:
    """The month after YYYY-MM."""
    return month_from_index(month_index(month) + 1)


# ---- persons ------------------------------------------------------------------------


def citizen_id_number(principal: Principal) -> str:
    """The caller's id number from the real-name token, normalized; refused if the platform sent a malformed one."""
    try:
        return normalize_id_number(principal.id_number or "")
    except ValueError:
        raise RealnameIdentityInvalid() from None


def citizen_name(principal: Principal) -> str:
    """The caller's verified name from the real-name token."""
    name = (principal.name or "").strip()
    if not name or len(name) > 50:
        raise RealnameIdentityInvalid()
    return name


async def person_by_id_number(*, session: AsyncSession, id_number: str, lock: bool = False) -> Person | None:
    """The person with this id number (looked up by its keyed hash), if registered."""
    stmt = select(Person).where(Person.id_hash == id_hash(id_number))
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def person_by_public_id(*, session: AsyncSession, person_id: str, lock: bool = False) -> Person:
    """The person with this public id; 404 otherwise."""
    stmt = select(Person).where(Person.id == person_id)
    if lock:
        stmt = stmt.with_for_update()
    person = (await session.execute(stmt)).scalar_one_or_none()
    if person is None:
        raise PersonNotFound()
    return person


def new_person(*, id_number: str, name: str, now: datetime, hashed: str | None = None) -> Person:
    """A person first seen now (not yet added to the session)."""
    info = id_number_info(id_number)
    return Person(
        id=new_id(), id_hash=hashed or id_hash(id_number), id_number=id_number, id_masked=mask_id_number(id_number),
        name=name, birth_date=info.birth_date, sex=info.sex, created_at=now, updated_at=now,
    )


async def get_or_create_person(
    *, session: AsyncSession, id_number: str, name: str, now: datetime, name_verified: bool
) -> Person:
    """The person with this id number, created on first sight (race-safe on the hash's unique index).

    A name from a platform real-name token (`name_verified`) updates the record; a
    typed name that differs from the record is refused.
    """
    person = await person_by_id_number(session=session, id_number=id_number, lock=True)
    if person is None:
        candidate = new_person(id_number=id_number, name=name, now=now)
        try:
            async with session.begin_nested():
                session.add(candidate)
                await session.flush()
            return candidate
        except IntegrityError:
            person = await person_by_id_number(session=session, id_number=id_number, lock=True)
            assert person is not None
    if person.name != name:
        if not name_verified:
            raise NameMismatch(
                detail_zh="姓名与该身份证号码已登记的姓名不一致",
                detail_en="The name differs from the name registered for this id number",
                errors=[{"field": "name", "code": "name_mismatch", "message_zh": "姓名不一致", "message_en": "name differs"}],
            )
        person.name = name
        person.updated_at = now
    return person


def person_ref(person: Person) -> ev.PersonRef:
    """The person fields every person event carries (keyed hash, masked and encrypted id)."""
    return ev.PersonRef(
        person_id=person.id, id_hash=person.id_hash, id_masked=person.id_masked,
        id_number_enc=cipher().encrypt(person.id_number), name=person.name, birth_date=person.birth_date,
        sex=person.sex,
    )


def add_change(session: AsyncSession, *, person_id: str, at: datetime, change: ChangeKind, **fields: object) -> None:
    """Append an entry to the person's history."""
    session.add(PersonChange(person_id=person_id, at=at, change=str(change), **fields))


# ---- enrolments ------------------------------------------------------------------------


def check_insurance_types(category: Category, types: Sequence[Insurance]) -> list[str]:
    """The types as stored; 422 for a duplicate or a type the category may not hold."""
    if len(set(types)) != len(types):
        raise InsuranceNotAllowed(
            detail_zh="险种重复", detail_en="An insurance type is listed twice",
            errors=[{"field": "insurance_types", "code": "duplicate", "message_zh": "险种重复", "message_en": "duplicate"}],
        )
    wrong = [t for t in types if t not in ALLOWED_TYPES[category]]
    if wrong:
        raise InsuranceNotAllowed(
            params={"category": str(category), "allowed": sorted(ALLOWED_TYPES[category]), "refused": sorted(wrong)},
            errors=[{"field": "insurance_types", "code": "insurance_type_not_allowed",
                     "message_zh": "该类别不能参加：" + "、".join(wrong), "message_en": "not allowed: " + ", ".join(wrong)}],
        )
    return [str(t) for t in types]


def shares_scheme(types_a: Iterable[str], types_b: Iterable[str]) -> bool:
    """True when two enrolments hold the same exclusive scheme (pension or medical)."""
    return bool(set(types_a) & set(types_b) & {str(t) for t in EXCLUSIVE_TYPES})


def open_keys(enrolment: Enrolment) -> None:
    """Set the unique open-keys that let the database refuse a second open enrolment."""
    types = set(enrolment.insurance_types)
    enrolment.open_pension_key = enrolment.person_id if Insurance.pension in types else None
    enrolment.open_medical_key = enrolment.person_id if Insurance.medical in types else None
    if enrolment.category == Category.employee and enrolment.employer_credit_code:
        enrolment.open_employment_key = f"{enrolment.person_id}:{enrolment.employer_credit_code}"


def enrolment_ref(enrolment: Enrolment) -> dict[str, object]:
    """How a refusal names an enrolment."""
    return EnrolmentRef(
        id=enrolment.id, category=Category(enrolment.category), region_code=enrolment.region_code,
        start_month=enrolment.start_month, employer_credit_code=enrolment.employer_credit_code,
    ).model_dump(mode="json")


def conflict(open_one: Enrolment) -> EnrolmentConflict:
    """409 naming the open enrolment that stands in the way."""
    return EnrolmentConflict(
        detail_zh=f"已有未终止的{open_one.category}参保登记（地区 {open_one.region_code}）",
        detail_en=f"An open {open_one.category} enrolment exists in region {open_one.region_code}",
        params={"open_enrolment": enrolment_ref(open_one)},
    )


async def open_enrolments(*, session: AsyncSession, person_id: str, lock: bool = False) -> list[Enrolment]:
    """The person's open enrolments, oldest first."""
    stmt = (
        select(Enrolment)
        .where(Enrolment.person_id == person_id, Enrolment.status == EnrolmentStatus.active)
        .order_by(Enrolment.seq)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.execute(stmt)).scalars().all())


async def insert_enrolment(*, session: AsyncSession, enrolment: Enrolment) -> None:
    """Insert an open enrolment; the unique open-keys turn a concurrent twin into 409."""
    open_keys(enrolment)
    try:
        async with session.begin_nested():
            session.add(enrolment)
            await session.flush()
    except IntegrityError:
        others = await open_enrolments(session=session, person_id=enrolment.person_id)
        for other in others:
            if other.open_employment_key and other.open_employment_key == enrolment.open_employment_key:
                raise EmployeeAlreadyEnrolled(params={"enrolment_id": other.id, "person_id": other.person_id}) from None
        for other in others:
            if shares_scheme(other.insurance_types, enrolment.insurance_types):
                raise conflict(other) from None
        raise


def emit_enrolled(session: AsyncSession, *, person: Person, enrolment: Enrolment, now: datetime,
                  employer: ev.EmployerRef | None = None) -> None:
    """The enrolled event and the history entry, in the enrolment's transaction."""
    data = ev.PersonEnrolled(
        **dict(person_ref(person)),
        enrolment_id=enrolment.id, category=Category(enrolment.category), region_code=enrolment.region_code,
        insurance_types=[Insurance(t) for t in enrolment.insurance_types], start_month=enrolment.start_month,
        employer=employer, hire_date=enrolment.hire_date, monthly_wage_fen=enrolment.monthly_wage_fen,
        late=enrolment.late, late_days=enrolment.late_days, household_region_code=enrolment.household_region_code,
    )
    OUTBOX.emit(session, type=ev.PERSON_ENROLLED, subject=person.id, data=data, time=now)
    add_change(
        session, person_id=person.id, at=now, change=ChangeKind.enrolled, enrolment_id=enrolment.id,
        category=enrolment.category, region_code=enrolment.region_code,
        employer_credit_code=enrolment.employer_credit_code, month=enrolment.start_month, on_date=enrolment.hire_date,
    )


def end_enrolment(
    session: AsyncSession, *, person: Person, enrolment: Enrolment, end_month: str, reason: EndReason, now: datetime,
) -> None:
    """Close an open enrolment after `end_month`, free its open-keys, record and announce it."""
    enrolment.status = EnrolmentStatus.ended
    enrolment.end_month = end_month
    enrolment.end_reason = str(reason)
    enrolment.ended_at = now
    enrolment.open_pension_key = None
    enrolment.open_medical_key = None
    enrolment.open_employment_key = None
    data = ev.EnrolmentEnded(
        person_id=person.id, id_hash=person.id_hash, enrolment_id=enrolment.id,
        category=Category(enrolment.category), region_code=enrolment.region_code, end_month=end_month,
        reason=str(reason),
    )
    OUTBOX.emit(session, type=ev.ENROLMENT_ENDED, subject=person.id, data=data, time=now)
    add_change(
        session, person_id=person.id, at=now, change=ChangeKind.enrolment_ended, enrolment_id=enrolment.id,
        category=enrolment.category, region_code=enrolment.region_code,
        employer_credit_code=enrolment.employer_credit_code, month=end_month, reason=str(reason),
    )


def enrolment_out(enrolment: Enrolment, employer_name: str | None = None) -> EnrolmentOut:
    """The public shape of an enrolment."""
    employer = None
    if enrolment.employer_credit_code:
        employer = EmployerBrief(credit_code=enrolment.employer_credit_code, name=employer_name or "")
    return EnrolmentOut(
        id=enrolment.id, person_id=enrolment.person_id, category=Category(enrolment.category),
        status=EnrolmentStatus(enrolment.status), region_code=enrolment.region_code,
        household_region_code=enrolment.household_region_code,
        insurance_types=[Insurance(t) for t in enrolment.insurance_types], start_month=enrolment.start_month,
        end_month=enrolment.end_month, end_reason=EndReason(enrolment.end_reason) if enrolment.end_reason else None,
        employer=employer, hire_date=enrolment.hire_date, separation_date=enrolment.separation_date,
        monthly_wage_fen=enrolment.monthly_wage_fen, late=enrolment.late, late_days=enrolment.late_days,
        registered_on=enrolment.registered_on,
    )


async def earliest_free_month(*, session: AsyncSession, person_id: str, types: Sequence[str]) -> str | None:
    """The first month after every month already covered for the same scheme by an ended enrolment."""
    rows = (
        await session.execute(
            select(Enrolment).where(Enrolment.person_id == person_id, Enrolment.status == EnrolmentStatus.ended)
        )
    ).scalars().all()
    last: str | None = None
    for row in rows:
        # An enrolment ended before its start month covered nothing.
        if row.end_month is None or row.end_month < row.start_month or not shares_scheme(row.insurance_types, types):
            continue
        if last is None or row.end_month > last:
            last = row.end_month
    return next_month(last) if last else None
