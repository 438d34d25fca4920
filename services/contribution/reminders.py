"""Contribution reminders on the platforms: a confirmed declaration about to expire, a flexible month due.

A scheduled pass looks at every active subscription of these kinds:

- `declaration_expiring`: the subscriber has a confirmed declaration (awaiting
  payment) whose time ends within SOCIALSEC_REMINDER_DECLARATION_EXPIRING_HOURS;
- `flexible_payment_due`: the subscriber has an open flexible enrolment covering this
  month, the month is not paid yet, and today is on or after
  SOCIALSEC_REMINDER_FLEXIBLE_DUE_DAY.

When due, the subscription is used and its message written in the same transaction
(`services.common.reminders`); the sending job delivers it. The messages name the
months and times only: no amount, no id number.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.reminders import (
    Message,
    ReminderMixin,
    ReminderSendMixin,
    due_pass,
    message,
    reminder_due_job,
    reminder_router,
    reminder_sender,
    reminder_settings_of,
    shanghai_date,
    shanghai_time,
)
from services.contribution.models import (
    Base,
    ContributionRecord,
    Declaration,
    DeclarationStatus,
    KnownEnrolment,
)

KINDS = {
    "declaration_expiring": "a confirmed declaration is about to expire unpaid",
    "flexible_payment_due": "this month's flexible-employee contribution is due and unpaid",
}


class ContributionReminder(ReminderMixin, Base):
    """A person's one-time subscription to a contribution reminder."""


class ContributionReminderSend(ReminderSendMixin, Base):
    """A contribution reminder message to send."""


router = reminder_router(prefix="/contribution/v1", tag="contribution", kinds=KINDS, reminder=ContributionReminder,
                         send=ContributionReminderSend)
reminder_sending = reminder_sender(ContributionReminderSend)


def months_text(months: list[Any]) -> str:
    """`2026-01~2026-03`, or the one month."""
    ordered = sorted(str(m) for m in months)
    if not ordered:
        return "-"
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}~{ordered[-1]}"


async def find_due(app: FastAPI) -> int:
    """One pass: use the subscriptions whose reminder is due now."""
    settings = reminder_settings_of(app)
    clock = app.state.clock
    now = clock.now()
    today: date = clock.today()
    month = today.strftime("%Y-%m")
    horizon = now + timedelta(hours=settings.reminder_declaration_expiring_hours)

    async def expiring(session: AsyncSession, person_key: str) -> Message | None:
        decl = (await session.execute(
            select(Declaration).where(
                Declaration.person_key == person_key, Declaration.status == DeclarationStatus.awaiting_payment,
                Declaration.expires_at > now, Declaration.expires_at <= horizon,
            ).order_by(Declaration.expires_at, Declaration.id).limit(1)
        )).scalar_one_or_none()
        if decl is None or decl.expires_at is None:
            return None
        return message(
            "pages/declarations/index",
            ("thing1", "社保缴费申报即将失效"),
            ("character_string2", months_text(decl.months)),
            ("time3", shanghai_time(decl.expires_at)),
            ("thing4", "请尽快缴费，失效后需重新申报"),
        )

    async def flexible_due(session: AsyncSession, person_key: str) -> Message | None:
        if today.day < settings.reminder_flexible_due_day:
            return None
        enrolment = (await session.execute(
            select(KnownEnrolment.enrolment_id).where(
                KnownEnrolment.id_hash == person_key, KnownEnrolment.category == "flexible",
                KnownEnrolment.start_month <= month,
                or_(KnownEnrolment.end_month.is_(None), KnownEnrolment.end_month >= month),
            ).limit(1)
        )).scalar_one_or_none()
        if enrolment is None:
            return None
        paid = (await session.execute(
            select(ContributionRecord.id).where(
                ContributionRecord.person_key == person_key, ContributionRecord.period == month,
            ).limit(1)
        )).scalar_one_or_none()
        if paid is not None:
            return None
        last_day = date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
        return message(
            "pages/declarations/index",
            ("thing1", "灵活就业人员月度缴费"),
            ("character_string2", month),
            ("date3", shanghai_date(last_day)),
            ("thing4", "本月社保费尚未缴纳，请按时缴费"),
        )

    async def due(session: AsyncSession, row: Any) -> Message | None:
        if row.kind == "declaration_expiring":
            return await expiring(session, row.person_key)
        return await flexible_due(session, row.person_key)

    return await due_pass(app, reminder=ContributionReminder, send=ContributionReminderSend, kinds=list(KINDS), due=due)


reminder_due = reminder_due_job("contribution reminders", find_due)
