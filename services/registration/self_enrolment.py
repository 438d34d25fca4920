"""Self-enrolment (自主参保): a citizen enrols as flexible or resident, and stops it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock
from services.common.enums import Category
from services.common.principal import Principal
from services.registration.errors import (
    EndMonthOutOfRange,
    EnrolmentAlreadyEnded,
    EnrolmentNotFound,
    EnrolmentNotSelf,
    HouseholdRegionRequired,
    PersonIsPensioner,
    StartMonthOutOfRange,
    StartMonthOverlaps,
)
from services.registration.models import EndReason, Enrolment, EnrolmentStatus
from services.registration.rules import check_household
from services.registration.schemas import EndEnrolmentIn, EnrolmentOut, SelfEnrolmentIn
from services.registration.service import (
    check_insurance_types,
    citizen_id_number,
    citizen_name,
    conflict,
    earliest_free_month,
    emit_enrolled,
    end_enrolment,
    enrolment_out,
    get_or_create_person,
    insert_enrolment,
    new_id,
    open_enrolments,
    person_by_id_number,
    previous_month,
    shares_scheme,
)

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
