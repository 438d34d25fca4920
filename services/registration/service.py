"""Persons and enrolments: the rules shared by every way of enrolling, self-enrolment,
ending it, the pension award and the person's profile."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.enums import Category, Insurance
from services.common.events import Outbox
from services.common.identifiers import (
    id_number_info,
    month_from_index,
    month_index,
    month_of,
    normalize_id_number,
)
from services.common.pii import cipher, id_hash, mask_id_number
from services.common.principal import Principal, StaffRoleRequired
from services.registration import events as ev
from services.registration.errors import (
    EmployeeAlreadyEnrolled,
    EndMonthOutOfRange,
    EnrolmentAlreadyEnded,
    EnrolmentConflict,
    EnrolmentNotFound,
    EnrolmentNotSelf,
    HouseholdRegionRequired,
    InsuranceNotAllowed,
    NameMismatch,
    PensionFromDateInvalid,
    PensionRegionUnknown,
    PersonIsPensioner,
    PersonNotFound,
    RealnameIdentityInvalid,
    StartMonthOutOfRange,
    StartMonthOverlaps,
)
from services.registration.models import (
    ChangeKind,
    Employer,
    EndReason,
    Enrolment,
    EnrolmentStatus,
    Person,
    PersonChange,
)
from services.registration.rules import check_household
from services.registration.schemas import (
    EmployerBrief,
    EndEnrolmentIn,
    EnrolmentOut,
    EnrolmentRef,
    HistoryEntry,
    PensionAwardIn,
    PensionAwardOut,
    PensionScheme,
    PersonProfile,
    SelfEnrolmentIn,
    StaffPersonView,
)

OUTBOX = Outbox("registration")

# Insurance types each category may hold.
ALLOWED_TYPES: dict[Category, frozenset[Insurance]] = {
    Category.employee: frozenset(Insurance),
    Category.flexible: frozenset({Insurance.pension, Insurance.medical}),
    Category.resident: frozenset({Insurance.pension, Insurance.medical}),
}
# A person holds at most one open enrolment per scheme (one pension, one basic medical).
EXCLUSIVE_TYPES = (Insurance.pension, Insurance.medical)
HISTORY_LIMIT = 200


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


async def get_or_create_person(
    *, session: AsyncSession, id_number: str, name: str, now: datetime, name_verified: bool
) -> Person:
    """The person with this id number, created on first sight (race-safe on the hash's unique index).

    A name from a platform real-name token (`name_verified`) updates the record; a
    typed name that differs from the record is refused.
    """
    person = await person_by_id_number(session=session, id_number=id_number, lock=True)
    if person is None:
        info = id_number_info(id_number)
        candidate = Person(
            id=new_id(), id_hash=id_hash(id_number), id_number=id_number, id_masked=mask_id_number(id_number),
            name=name, birth_date=info.birth_date, sex=info.sex, created_at=now, updated_at=now,
        )
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


# ---- self-enrolment ---------------------------------------------------------------------


async def enrol_self(*, session: AsyncSession, clock: Clock, principal: Principal, body: SelfEnrolmentIn) -> EnrolmentOut:
    """自主参保: a citizen enrols as flexible or resident; identity from the token only."""
    id_number = citizen_id_number(principal)
    category = Category(body.category)
    types = check_insurance_types(category, body.insurance_types)
    today, current = clock.today(), clock.current_month()
    if category == Category.flexible and body.household_region_code is None:
        raise HouseholdRegionRequired(
            errors=[{"field": "household_region_code", "code": "missing", "message_zh": "必填", "message_en": "required"}],
        )
    earliest_this_year = f"{today.year:04d}-01"
    if not (earliest_this_year <= body.start_month <= current):
        raise StartMonthOutOfRange(params={"earliest_start_month": earliest_this_year, "latest_start_month": current})
    now = clock.now()
    person = await get_or_create_person(
        session=session, id_number=id_number, name=citizen_name(principal), now=now, name_verified=True,
    )
    if person.pensioner_from is not None:
        raise PersonIsPensioner(params={"pensioner_from": person.pensioner_from.isoformat()})
    for other in await open_enrolments(session=session, person_id=person.id):
        if shares_scheme(other.insurance_types, types):
            raise conflict(other)
    free_from = await earliest_free_month(session=session, person_id=person.id, types=types)
    if free_from and body.start_month < free_from:
        raise StartMonthOverlaps(
            detail_zh=f"起始月份最早为 {free_from}", detail_en=f"The earliest start month is {free_from}",
            params={"earliest_start_month": free_from},
        )
    if category == Category.flexible:
        assert body.household_region_code is not None
        await check_household(
            session=session, region_code=body.region_code, household_region_code=body.household_region_code, on=today,
        )
    enrolment = Enrolment(
        id=new_id(), person_id=person.id, category=str(category), status=EnrolmentStatus.active,
        region_code=body.region_code, household_region_code=body.household_region_code, insurance_types=types,
        start_month=body.start_month, registered_on=today, created_at=now, created_by=principal.actor_id,
        late=False, late_days=0,
    )
    await insert_enrolment(session=session, enrolment=enrolment)
    emit_enrolled(session, person=person, enrolment=enrolment, now=now)
    return enrolment_out(enrolment)


async def end_self_enrolment(
    *, session: AsyncSession, clock: Clock, principal: Principal, enrolment_id: str, body: EndEnrolmentIn,
) -> EnrolmentOut:
    """停保: the citizen stops a flexible or resident enrolment after `end_month`."""
    person = await person_by_id_number(session=session, id_number=citizen_id_number(principal))
    enrolment = None
    if person is not None:
        enrolment = (
            await session.execute(
                select(Enrolment).where(Enrolment.id == enrolment_id, Enrolment.person_id == person.id).with_for_update()
            )
        ).scalar_one_or_none()
    if person is None or enrolment is None:
        raise EnrolmentNotFound()
    if enrolment.category == Category.employee:
        raise EnrolmentNotSelf()
    if enrolment.status != EnrolmentStatus.active:
        raise EnrolmentAlreadyEnded(params={"end_month": enrolment.end_month})
    current = clock.current_month()
    # Months before last month may already be paid: they can no longer be given up.
    earliest = max(previous_month(enrolment.start_month), previous_month(current))
    if not (earliest <= body.end_month <= current):
        raise EndMonthOutOfRange(
            detail_zh=f"终止月份应在 {earliest} 至 {current} 之间",
            detail_en=f"The end month must be between {earliest} and {current}",
            params={"earliest_end_month": earliest, "latest_end_month": current},
        )
    end_enrolment(session, person=person, enrolment=enrolment, end_month=body.end_month, reason=EndReason.self,
                  now=clock.now())
    return enrolment_out(enrolment)


# ---- pension award ---------------------------------------------------------------------------


async def award_pension(
    *, session: AsyncSession, clock: Clock, principal: Principal, person_id: str, body: PensionAwardIn,
) -> PensionAwardOut:
    """待遇核定: the person becomes a pensioner from `from_date`; every open enrolment ends (audited)."""
    person = await person_by_public_id(session=session, person_id=person_id, lock=True)
    if person.pensioner_from is not None:
        raise PersonIsPensioner(params={"pensioner_from": person.pensioner_from.isoformat()})
    today = clock.today()
    if body.from_date <= person.birth_date or body.from_date > today + timedelta(days=90):
        raise PensionFromDateInvalid(
            detail_zh="养老金起始日期须晚于出生日期，且最多提前90天",
            detail_en="The from-date must be after the birth date and at most 90 days ahead",
            params={"latest_from_date": (today + timedelta(days=90)).isoformat()},
        )
    history = (
        await session.execute(select(Enrolment).where(Enrolment.person_id == person.id).order_by(Enrolment.seq.desc()))
    ).scalars().all()
    last = next((e for e in history if Insurance.pension in e.insurance_types), None)
    region_code = body.region_code or (last.region_code if last else None)
    if region_code is None:
        raise PensionRegionUnknown(
            errors=[{"field": "region_code", "code": "missing", "message_zh": "必填", "message_en": "required"}],
        )
    if body.scheme is not None:
        scheme = body.scheme
    else:
        scheme = PensionScheme.resident if last and last.category == Category.resident else PensionScheme.employee
    now = clock.now()
    # Contributions stop with the month before the pension starts.
    end_month = previous_month(month_of(body.from_date))
    ended = await open_enrolments(session=session, person_id=person.id, lock=True)
    for enrolment in ended:
        end_enrolment(session, person=person, enrolment=enrolment, end_month=end_month,
                      reason=EndReason.pension_award, now=now)
    person.pensioner_from = body.from_date
    person.pension_region_code = region_code
    person.pension_scheme = str(scheme)
    person.updated_at = now
    data = ev.PensionAwarded(
        **dict(person_ref(person)), from_date=body.from_date, region_code=region_code, scheme=Category(str(scheme)),
        ended_enrolment_ids=[e.id for e in ended],
    )
    OUTBOX.emit(session, type=ev.PENSION_AWARDED, subject=person.id, data=data, time=now)
    add_change(session, person_id=person.id, at=now, change=ChangeKind.pension_awarded, region_code=region_code,
               on_date=body.from_date, reason=body.reason)
    record_audit(
        session, actor=principal, action="person.pension_award", target_type="person", target_id=person.id, at=now,
        reason=body.reason,
        details={"from_date": body.from_date.isoformat(), "region_code": region_code, "scheme": str(scheme),
                 "ended_enrolment_ids": [e.id for e in ended]},
    )
    await session.flush()
    employer_names = await _employer_names(session, ended)
    return PensionAwardOut(
        id=person.id, person_id=person.id, pensioner=True, pensioner_from=body.from_date, region_code=region_code,
        scheme=scheme, ended_enrolments=[enrolment_out(e, employer_names.get(e.employer_credit_code or "")) for e in ended],
    )


# ---- profiles ------------------------------------------------------------------------------


async def _employer_names(session: AsyncSession, enrolments: Sequence[Enrolment]) -> dict[str, str]:
    codes = {e.employer_credit_code for e in enrolments if e.employer_credit_code}
    if not codes:
        return {}
    rows = (await session.execute(select(Employer.credit_code, Employer.name).where(Employer.credit_code.in_(codes)))).all()
    return {code: name for code, name in rows}


async def _profile_parts(session: AsyncSession, person: Person) -> tuple[list[EnrolmentOut], list[HistoryEntry]]:
    enrolments = (
        await session.execute(select(Enrolment).where(Enrolment.person_id == person.id).order_by(Enrolment.seq))
    ).scalars().all()
    names = await _employer_names(session, enrolments)
    changes = (
        await session.execute(
            select(PersonChange).where(PersonChange.person_id == person.id)
            .order_by(PersonChange.seq.desc()).limit(HISTORY_LIMIT)
        )
    ).scalars().all()
    history = [
        HistoryEntry(
            at=c.at, change=ChangeKind(c.change), enrolment_id=c.enrolment_id,
            category=Category(c.category) if c.category else None, region_code=c.region_code,
            employer_credit_code=c.employer_credit_code, month=c.month, on_date=c.on_date, reason=c.reason,
        )
        for c in reversed(changes)
    ]
    return [enrolment_out(e, names.get(e.employer_credit_code or "")) for e in enrolments], history


async def my_profile(*, session: AsyncSession, principal: Principal) -> PersonProfile:
    """The caller's insured profile; an unregistered citizen sees what the id says and no enrolments."""
    id_number = citizen_id_number(principal)
    person = await person_by_id_number(session=session, id_number=id_number)
    if person is None:
        info = id_number_info(id_number)
        return PersonProfile(
            person_id=None, registered=False, id_number_masked=mask_id_number(id_number) or "",
            name=principal.name or "", birth_date=info.birth_date, sex=info.sex, pensioner=False,
            enrolments=[], history=[],
        )
    enrolments, history = await _profile_parts(session, person)
    return PersonProfile(
        person_id=person.id, registered=True, id_number_masked=person.id_masked, name=person.name,
        birth_date=person.birth_date, sex=person.sex, pensioner=person.pensioner_from is not None,
        pensioner_from=person.pensioner_from, enrolments=enrolments, history=history,
    )


async def staff_lookup(*, session: AsyncSession, id_number: str) -> StaffPersonView:
    """A person found by id number, masked (staff at a window or on the 12333 line)."""
    person = await person_by_id_number(session=session, id_number=id_number)
    if person is None:
        raise PersonNotFound()
    return await _staff_view(session, person, id_number=None)


async def staff_person_view(
    *, session: AsyncSession, clock: Clock, principal: Principal, person_id: str, unmasked: bool, reason: str | None,
) -> StaffPersonView:
    """A person as staff see it; the full id number only for operators (and admins), audited."""
    if unmasked and not principal.has_role("operator"):
        raise StaffRoleRequired(params={"roles": ["operator"]})
    person = await person_by_public_id(session=session, person_id=person_id)
    if unmasked:
        record_audit(session, actor=principal, action="person.read_unmasked", target_type="person",
                     target_id=person.id, at=clock.now(), reason=reason)
    return await _staff_view(session, person, id_number=person.id_number if unmasked else None)


async def _staff_view(session: AsyncSession, person: Person, *, id_number: str | None) -> StaffPersonView:
    enrolments, history = await _profile_parts(session, person)
    return StaffPersonView(
        person_id=person.id, registered=True, id_number_masked=person.id_masked, name=person.name,
        birth_date=person.birth_date, sex=person.sex, pensioner=person.pensioner_from is not None,
        pensioner_from=person.pensioner_from, enrolments=enrolments, history=history,
        id_number=id_number,
    )

