"""Certification reminders: due (30 days before the deadline) and overdue, sent once through the sandbox."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.review.reminders import ReviewReminderSend, find_due
from tests.helpers import citizen
from tests.reminders_world import MessageWorld, message_world
from tests.review.conftest import Feed, idn

# Awarded 2025-05-01 in Beijing (certified every 12 months): due by 2026-05-01, due from 2026-04-01.
AWARD = date(2025, 5, 1)
PENSIONER = idn(7)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
async def world(svc: Any) -> Any:
    w = await message_world(svc, ReviewReminderSend)
    yield w
    await w.sandbox.aclose()


def who(platform: str = "wechat") -> dict[str, Any]:
    return citizen(PENSIONER, "王大爷", level=2, platform=platform)


async def subscribe(svc: Any, kind: str, platform: str = "wechat") -> Any:
    r = await svc.client.post(
        "/review/v1/me/reminders", json={"kind": kind},
        headers=svc.headers(who(platform), **{"Idempotency-Key": str(uuid.uuid4())}),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def send_rows(svc: Any) -> list[ReviewReminderSend]:
    async with svc.db.sessionmaker() as s:
        return list((await s.execute(select(ReviewReminderSend))).scalars())


async def test_due_is_sent_once_thirty_days_before(svc: Any, feed: Feed, world: MessageWorld) -> None:
    await feed.award(PENSIONER, from_date=AWARD)
    sub = await subscribe(svc, "certification_due")
    assert await find_due(svc.app) == 0  # 2026-03-10: not yet due
    svc.clock.set(at(date(2026, 3, 31)))
    assert await find_due(svc.app) == 0
    svc.clock.set(at(date(2026, 4, 1)))
    assert await find_due(svc.app) == 1
    assert await find_due(svc.app) == 0  # used: never again
    assert await world.send_pass() == 1
    world.restart()
    assert await find_due(svc.app) == 0
    assert await world.send_pass() == 0

    sent = await world.sent(touser=who()["sub"])
    assert len(sent) == 1
    msg = sent[0]
    assert msg["template_id"] == "wx-tmpl-certification-due"
    assert msg["data"] == {
        "thing1": {"value": "养老金领取资格认证"}, "date2": {"value": "2026年5月1日"},
        "thing3": {"value": "请在截止日前完成认证"},
    }
    assert PENSIONER not in str(msg) and PENSIONER[-4:] not in str(msg)
    listed = (await svc.client.get("/review/v1/me/reminders", headers=svc.headers(who()))).json()["items"]
    assert [(i["id"], i["status"], i["send_status"]) for i in listed] == [(sub["id"], "used", "sent")]


async def test_overdue_on_alipay_and_cancelled_due(svc: Any, feed: Feed, world: MessageWorld) -> None:
    await feed.award(PENSIONER, from_date=AWARD)
    due = await subscribe(svc, "certification_due", platform="alipay")
    await subscribe(svc, "certification_overdue", platform="alipay")
    r = await svc.client.delete(f"/review/v1/me/reminders/{due['id']}", headers=svc.headers(who("alipay")))
    assert r.status_code == 204
    svc.clock.set(at(date(2026, 4, 20)))
    assert await find_due(svc.app) == 0  # the due one was cancelled, the overdue one is not due yet
    svc.clock.set(at(date(2026, 5, 2)))
    assert await find_due(svc.app) == 1
    assert await world.send_pass() == 1
    assert await world.send_pass() == 0
    sent = await world.sent(platform="alipay")
    assert len(sent) == 1 and sent[0]["template_id"] == "ali-tmpl-certification-overdue"
    assert sent[0]["to_user_id"] == who("alipay")["sub"]
    assert sent[0]["data"]["keyword2"] == {"value": "2026年5月1日"}
    assert [r.status for r in await send_rows(svc)] == ["sent"]


async def test_no_pension_no_message(svc: Any, feed: Feed, world: MessageWorld) -> None:
    await subscribe(svc, "certification_overdue")
    svc.clock.set(at(date(2027, 1, 1)))
    assert await find_due(svc.app) == 0
    assert await world.send_pass() == 0
    assert await world.sent() == []
