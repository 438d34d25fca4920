"""A person's profile, staff reading and finding a person, and the pension award."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.enums import Category, Insurance
from services.common.identifiers import id_number_info, month_of
from services.common.pii import mask_id_number
from services.common.principal import Principal, StaffRoleRequired
from services.registration import events as ev
from services.registration.errors import (
    PensionFromDateInvalid,
    PensionRegionUnknown,
    PersonIsPensioner,
    PersonNotFound,
)
from services.registration.events import OUTBOX
from services.registration.models import ChangeKind, Employer, EndReason, Enrolment, Person, PersonChange
from services.registration.schemas import (
    EnrolmentOut,
    HistoryEntry,
    PensionAwardIn,
    PensionAwardOut,
    PensionScheme,
    PersonProfile,
    StaffPersonView,
)
from services.registration.service import (
    add_change,
    citizen_id_number,
    end_enrolment,
    enrolment_out,
    open_enrolments,
    person_by_id_number,
    person_by_public_id,
    person_ref,
    previous_month,
)

# The profile shows the latest entries of a person's history.
HISTORY_LIMIT = 200


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
