"""Pensioner qualification certification (资格认证): state from dates, certify, suspend, resume, sweep."""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock, aware
from services.common.identifiers import month_from_index, month_index, month_of
from services.common.pii import id_hash
from services.common.principal import Principal
from services.review.errors import AlreadySuspended, PensionerNotFound, RuleNotFound, SuspensionMonthInvalid
from services.review.events import (
    OUTBOX,
    PENSION_RESUMED,
    PENSION_SUSPENDED,
    PensionResumed,
    PensionSuspended,
)
from services.review.models import Certification, Pensioner, ReviewRule, StateTransition, Suspension
from services.review.rules import rule_in_force
from services.review.schemas import (
    CertificationMethod,
    CertificationOut,
    CertificationState,
    CertificationStatus,
    StaffSuspensionReason,
    SuspensionOut,
    SuspensionReason,
    SweepOut,
)

DUE_WINDOW_DAYS = 30  # "due" starts this many days before the deadline
SWEEP_BATCH = 500


def add_months(d: date, months: int) -> date:
    """The same day `months` later (the month's last day when it has no such day)."""
    idx = d.year * 12 + d.month - 1 + months
    y, m = divmod(idx, 12)
    last = calendar.monthrange(y, m + 1)[1]
    return date(y, m + 1, min(d.day, last))


@dataclass(frozen=True)
class Schedule:
    """The dates a pensioner's next certification turns on."""

    due_from: date
    due_by: date
    suspend_after: date

    def state(self, today: date, suspended: bool) -> CertificationState:
        if suspended or today > self.suspend_after:
            return CertificationState.suspended
        if today > self.due_by:
            return CertificationState.overdue
        if today >= self.due_from:
            return CertificationState.due
        return CertificationState.valid


def schedule_of(p: Pensioner, rule: ReviewRule) -> Schedule:
    """Due dates from the last certification (or the award) and the regional interval and grace."""
    months = rule.resident_certification_months if p.scheme == "resident" else rule.certification_months
    due_by = add_months(p.last_certified_on or p.from_date, months)
    return Schedule(
        due_from=due_by - timedelta(days=DUE_WINDOW_DAYS),
        due_by=due_by,
        suspend_after=due_by + timedelta(days=rule.grace_days),
    )


def suspension_out(s: Suspension) -> SuspensionOut:
    return SuspensionOut(
        id=s.id, reason=s.reason, from_month=s.from_month, created_at=aware(s.created_at),
        resumed_from_month=s.resumed_from_month, back_pay_months=s.back_pay_months,
    )


async def _open_suspension(session: AsyncSession, person_id: str) -> Suspension | None:
    return (
        await session.execute(select(Suspension).where(Suspension.open_key == person_id))
    ).scalar_one_or_none()


async def pensioner_by_id_number(*, session: AsyncSession, id_number: str | None, lock: bool = False) -> Pensioner:
    """The caller's own pension award (404 pensioner_not_found)."""
    if not id_number:
        raise PensionerNotFound()
    q = select(Pensioner).where(Pensioner.id_hash == id_hash(id_number))
    row = (await session.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
    if row is None:
        raise PensionerNotFound()
    return row


async def pensioner_by_person_id(*, session: AsyncSession, person_id: str, lock: bool = False) -> Pensioner:
    """A pensioner by person id (404 pensioner_not_found)."""
    q = select(Pensioner).where(Pensioner.person_id == person_id)
    row = (await session.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
    if row is None:
        raise PensionerNotFound()
    return row


async def status_of(*, session: AsyncSession, clock: Clock, pensioner: Pensioner) -> CertificationStatus:
    """The state the dates give today (read-only: the sweep records transitions)."""
    today = clock.today()
    rule = await rule_in_force(session=session, region_code=pensioner.region_code, on=today)
    sched = schedule_of(pensioner, rule)
    open_s = await _open_suspension(session, pensioner.person_id)
    return _status(pensioner, sched, sched.state(today, open_s is not None), open_s)


def _status(p: Pensioner, sched: Schedule, state: CertificationState, open_s: Suspension | None) -> CertificationStatus:
    return CertificationStatus(
        person_id=p.person_id, name=p.name, id_number_masked=p.id_masked, region_code=p.region_code,
        scheme=p.scheme, pension_from=p.from_date, state=state, last_certified_on=p.last_certified_on,
        due_by=sched.due_by, due_from=sched.due_from, suspend_after=sched.suspend_after,
        suspension=suspension_out(open_s) if open_s else None,
    )


async def _suspend(
    session: AsyncSession, clock: Clock, p: Pensioner, *, reason: str, from_month: str, created_by: str,
    detail: str | None = None,
) -> Suspension | None:
    """Open a suspension and emit its event; None when one is already open (the database decides)."""
    s = Suspension(
        id=str(uuid.uuid4()), person_id=p.person_id, open_key=p.person_id, reason=reason, detail=detail,
        from_month=from_month, created_by=created_by, created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(s)
            await session.flush()
    except IntegrityError:
        return None
    OUTBOX.emit(
        session, type=PENSION_SUSPENDED, subject=p.person_id, time=clock.now(),
        data=PensionSuspended(person_id=p.person_id, id_hash=p.id_hash, from_month=from_month, reason=reason),
    )
    return s


def _transition(session: AsyncSession, clock: Clock, p: Pensioner, to: CertificationState, due_by: date, cause: str) -> bool:
    if p.recorded_state == to:
        return False
    session.add(StateTransition(
        person_id=p.person_id, from_state=p.recorded_state, to_state=str(to), due_by=due_by, at=clock.now(), cause=cause,
    ))
    p.recorded_state = str(to)
    p.updated_at = clock.now()
    return True


async def settle(
    *, session: AsyncSession, clock: Clock, pensioner: Pensioner, rule: ReviewRule, open_s: Suspension | None, cause: str
) -> tuple[CertificationState, Suspension | None, bool, bool]:
    """Record the state the dates give; suspend past the grace. (state, open suspension, moved, suspended now)."""
    today = clock.today()
    sched = schedule_of(pensioner, rule)
    state = sched.state(today, open_s is not None)
    suspended_now = False
    if state == CertificationState.suspended and open_s is None:
        # Months that began before the suspension were paid; it takes effect from the next whole month.
        first_day = sched.suspend_after + timedelta(days=1)
        from_month = month_of(first_day) if first_day.day == 1 else month_from_index(month_index(month_of(first_day)) + 1)
        open_s = await _suspend(
            session, clock, pensioner, reason=SuspensionReason.overdue_certification, from_month=from_month,
            created_by="sweep",
        )
        if open_s is None:  # opened concurrently
            open_s = await _open_suspension(session, pensioner.person_id)
        else:
            suspended_now = True
    moved = _transition(session, clock, pensioner, state, sched.due_by, cause)
    return state, open_s, moved, suspended_now


async def certify(
    *, session: AsyncSession, clock: Clock, pensioner: Pensioner, method: CertificationMethod, actor: Principal,
    evidence: str | None = None, certified_on: date | None = None,
) -> CertificationOut:
    """Record a certification; a suspended pension resumes from next month (back pay unless imprisonment)."""
    today = clock.today()
    rule = await rule_in_force(session=session, region_code=pensioner.region_code, on=today)
    open_s = await _open_suspension(session, pensioner.person_id)
    _, open_s, _, _ = await settle(
        session=session, clock=clock, pensioner=pensioner, rule=rule, open_s=open_s, cause="certification",
    )
    on = certified_on or today
    cert = Certification(
        id=str(uuid.uuid4()), person_id=pensioner.person_id, method=str(method), certified_on=on,
        evidence=evidence, actor=actor.actor_id, created_at=clock.now(),
    )
    session.add(cert)
    if pensioner.last_certified_on is None or on > pensioner.last_certified_on:
        pensioner.last_certified_on = on
    resumed = None
    if open_s is not None:
        current = month_index(clock.current_month())
        resume_from = month_from_index(current + 1)
        if open_s.reason == StaffSuspensionReason.imprisonment:
            back_pay: list[str] = []
        else:
            back_pay = [month_from_index(i) for i in range(month_index(open_s.from_month), current + 1)]
        open_s.open_key = None
        open_s.resumed_from_month = resume_from
        open_s.back_pay_months = back_pay
        open_s.resumed_at = clock.now()
        OUTBOX.emit(
            session, type=PENSION_RESUMED, subject=pensioner.person_id, time=clock.now(),
            data=PensionResumed(
                person_id=pensioner.person_id, id_hash=pensioner.id_hash, from_month=resume_from,
                back_pay_months=back_pay, certified_on=on,
            ),
        )
        resumed = suspension_out(open_s)
    sched = schedule_of(pensioner, rule)
    state = sched.state(today, False)
    _transition(session, clock, pensioner, state, sched.due_by, "certification")
    await session.flush()
    return CertificationOut(
        id=cert.id, person_id=pensioner.person_id, method=method, certified_on=on, resumed=resumed,
        status=_status(pensioner, sched, state, None),
    )


async def staff_suspend(
    *, session: AsyncSession, clock: Clock, pensioner: Pensioner, actor: Principal, reason: StaffSuspensionReason,
    detail: str | None, from_month: str | None,
) -> SuspensionOut:
    """Suspend a pension for a reason (audited); 409 when it is already suspended."""
    month = from_month or clock.current_month()
    earliest, latest = month_of(pensioner.from_date), month_from_index(month_index(clock.current_month()) + 1)
    if not earliest <= month <= latest:
        raise SuspensionMonthInvalid(
            detail_zh=f"暂停起始月应在 {earliest} 至 {latest} 之间", detail_en=f"The first suspended month is {earliest} to {latest}",
            params={"earliest": earliest, "latest": latest},
        )
    s = await _suspend(
        session, clock, pensioner, reason=str(reason), from_month=month, created_by=actor.actor_id, detail=detail,
    )
    if s is None:
        existing = await _open_suspension(session, pensioner.person_id)
        raise AlreadySuspended(params={"suspension_id": existing.id if existing else None})
    rule = await rule_in_force(session=session, region_code=pensioner.region_code, on=clock.today())
    _transition(session, clock, pensioner, CertificationState.suspended, schedule_of(pensioner, rule).due_by, str(reason))
    record_audit(
        session, actor=actor, action="pension.suspend", target_type="pensioner", target_id=pensioner.person_id,
        at=clock.now(), reason=str(reason), details={"from_month": month, "detail": detail, "suspension_id": s.id},
    )
    await session.flush()
    return suspension_out(s)


async def sweep(
    *, session: AsyncSession, clock: Clock, commit_each_batch: bool = False
) -> SweepOut:
    """Record every pensioner's state transitions and suspend past the grace (idempotent).

    The scheduled job commits after each batch so a large table is never locked as a whole; a
    staff-triggered sweep runs in its request's transaction.
    """
    today = clock.today()
    rules: dict[str, ReviewRule | None] = {}
    examined = transitions = suspended = 0
    after = ""
    while True:
        batch = (
            await session.execute(
                select(Pensioner).where(Pensioner.person_id > after).order_by(Pensioner.person_id)
                .limit(SWEEP_BATCH).with_for_update()
            )
        ).scalars().all()
        if not batch:
            break
        after = batch[-1].person_id
        ids = [p.person_id for p in batch]
        opens = {
            s.person_id: s
            for s in (await session.execute(select(Suspension).where(Suspension.open_key.in_(ids)))).scalars()
        }
        for p in batch:
            examined += 1
            if p.region_code not in rules:
                try:
                    rules[p.region_code] = await rule_in_force(session=session, region_code=p.region_code, on=today)
                except RuleNotFound:  # a region without rules is skipped, not fatal to the sweep
                    rules[p.region_code] = None
            rule = rules[p.region_code]
            if rule is None:
                continue
            _, _, moved, now_suspended = await settle(
                session=session, clock=clock, pensioner=p, rule=rule, open_s=opens.get(p.person_id), cause="sweep",
            )
            transitions += int(moved)
            suspended += int(now_suspended)
        await session.flush()
        if commit_each_batch:
            await session.commit()
    return SweepOut(run_at=clock.now(), today=today, examined=examined, transitions=transitions, suspended=suspended)
