"""Certification reminders on the platforms: due within 30 days (`certification_due`) and overdue.

A scheduled pass looks at every active subscription of these kinds: when the
subscriber's pension certification is due (from 30 days before `due_by`) or overdue
(after `due_by`), the subscription is used and its message written in the same
transaction (`services.common.reminders`); the sending job delivers it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
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
    shanghai_date,
)
from services.review.certification.service import schedule_of
from services.review.errors import RuleNotFound
from services.review.models import Base, Pensioner
from services.review.rules import rule_in_force

KINDS = {
    "certification_due": "the yearly pension certification is due (sent 30 days before the deadline)",
    "certification_overdue": "the certification deadline has passed (payment will be suspended after the grace)",
}


class ReviewReminder(ReminderMixin, Base):
    """A pensioner's one-time subscription to a certification reminder."""


class ReviewReminderSend(ReminderSendMixin, Base):
    """A certification reminder message to send."""


router = reminder_router(prefix="/review/v1", tag="certification", kinds=KINDS, reminder=ReviewReminder,
                         send=ReviewReminderSend)
reminder_sending = reminder_sender(ReviewReminderSend)


async def find_due(app: FastAPI) -> int:
    """One pass: use the subscriptions whose certification is due or overdue today."""
    today = app.state.clock.today()

    async def due(session: AsyncSession, row: Any) -> Message | None:
        p = (await session.execute(select(Pensioner).where(Pensioner.id_hash == row.person_key))).scalar_one_or_none()
        if p is None:
            return None
        try:
            rule = await rule_in_force(session=session, region_code=p.region_code, on=today)
        except RuleNotFound:
            return None
        sched = schedule_of(p, rule)
        if row.kind == "certification_due" and today >= sched.due_from:
            tip = "请在截止日前完成认证" if today <= sched.due_by else "已逾期，请尽快完成认证"
        elif row.kind == "certification_overdue" and today > sched.due_by:
            tip = "已逾期，请尽快认证以免暂停发放"
        else:
            return None
        return message(
            "pages/certification/index",
            ("thing1", "养老金领取资格认证"),
            ("date2", shanghai_date(sched.due_by)),
            ("thing3", tip),
        )

    return await due_pass(app, reminder=ReviewReminder, send=ReviewReminderSend, kinds=list(KINDS), due=due)


reminder_due = reminder_due_job("certification reminders", find_due)
