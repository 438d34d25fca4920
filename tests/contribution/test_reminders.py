"""Contribution reminders: a confirmed declaration about to expire, a flexible month due; sent once via the sandbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.contribution.reminders import ContributionReminderSend, find_due
from tests.contribution.conftest import ALICE, BOB, enrol_self, pay
from tests.helpers import citizen
from tests.reminders_world import MessageWorld, message_world

D = "/contribution/v1/me/declarations"


@pytest.fixture
async def world(svc: Any) -> Any:
    w = await message_world(svc, ContributionReminderSend)
    yield w
    await w.sandbox.aclose()


async def subscribe(svc: Any, who: str, kind: str, platform: str = "wechat") -> dict[str, Any]:
    r = await svc.client.post(
        "/contribution/v1/me/reminders", json={"kind": kind},
        headers=svc.headers(citizen(who, platform=platform), **{"Idempotency-Key": str(uuid.uuid4())}),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def confirmed_declaration(svc: Any, who: str, months: list[str]) -> dict[str, Any]:
    body = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": months}
    r = await svc.client.post(D, json=body, headers=svc.headers(citizen(who)))
    assert r.status_code == 201, r.text
    decl = r.json()
    r = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=svc.headers(citizen(who)))
    assert r.status_code == 200 and r.json()["status"] == "awaiting_payment", r.text
    return r.json()


async def send_rows(svc: Any) -> list[ContributionReminderSend]:
    async with svc.db.sessionmaker() as s:
        return list((await s.execute(select(ContributionReminderSend))).scalars())


async def test_declaration_expiring_is_sent_once_without_amount(svc: Any, world: MessageWorld) -> None:
    await enrol_self(svc, ALICE)
    await subscribe(svc, ALICE, "declaration_expiring")
    assert await find_due(svc.app) == 0  # no declaration yet
    decl = await confirmed_declaration(svc, ALICE, ["2026-02", "2026-03"])
    assert await find_due(svc.app) == 0  # expires in 24 hours: not yet "about to"
    svc.clock.set(svc.clock.now() + timedelta(hours=18, minutes=1))
    assert await find_due(svc.app) == 1
    assert await find_due(svc.app) == 0
    assert await world.send_pass() == 1
    world.restart()
    assert await world.send_pass() == 0

    assert [(r.status, r.last_error) for r in await send_rows(svc)] == [("sent", None)]
    sent = await world.sent(touser=citizen(ALICE, platform="wechat")["sub"])
    assert len(sent) == 1
    data = sent[0]["data"]
    assert sent[0]["template_id"] == "wx-tmpl-declaration-expiring"
    assert data["character_string2"] == {"value": "2026-02~2026-03"}
    assert data["time3"] == {"value": "2026年3月11日 10:00"}
    text = str(sent[0])
    assert ALICE not in text and str(decl["total_fen"]) not in text and "¥" not in text and "元" not in text


async def test_flexible_month_due_once_and_not_when_paid(svc: Any, world: MessageWorld) -> None:
    await enrol_self(svc, ALICE)
    await enrol_self(svc, BOB)
    await subscribe(svc, ALICE, "flexible_payment_due", platform="alipay")
    await subscribe(svc, BOB, "flexible_payment_due")
    paid = await confirmed_declaration(svc, BOB, ["2026-03"])
    await pay(svc, paid["id"])
    assert await find_due(svc.app) == 0  # 2026-03-10: before the 20th
    svc.clock.set(datetime(2026, 3, 20, 1, 0, tzinfo=UTC))  # 09:00 on the 20th in Shanghai
    assert await find_due(svc.app) == 1  # Alice only: Bob has paid March
    assert await world.send_pass() == 1
    svc.clock.set(datetime(2026, 3, 25, 1, 0, tzinfo=UTC))
    assert await find_due(svc.app) == 0
    assert await world.send_pass() == 0
    sent = await world.sent()
    assert len(sent) == 1 and sent[0]["platform"] == "alipay"
    assert sent[0]["to_user_id"] == citizen(ALICE, platform="alipay")["sub"]
    assert sent[0]["data"]["keyword2"] == {"value": "2026-03"} and sent[0]["data"]["keyword3"] == {"value": "2026年3月31日"}
    assert [r.status for r in await send_rows(svc)] == ["sent"]


async def test_unsubscribed_sends_nothing(svc: Any, world: MessageWorld) -> None:
    await enrol_self(svc, ALICE)
    sub = await subscribe(svc, ALICE, "flexible_payment_due")
    r = await svc.client.delete(f"/contribution/v1/me/reminders/{sub['id']}", headers=svc.headers(citizen(ALICE)))
    assert r.status_code == 204
    svc.clock.set(datetime(2026, 3, 21, 1, 0, tzinfo=UTC))
    assert await find_due(svc.app) == 0
    assert await world.send_pass() == 0
    assert await world.sent() == []
    r = await svc.client.delete(f"/contribution/v1/me/reminders/{sub['id']}", headers=svc.headers(citizen(ALICE)))
    assert r.status_code == 204  # cancelling again changes nothing


async def test_platform_refusal_is_recorded_not_retried(svc: Any, world: MessageWorld) -> None:
    """A template the platform does not know: failed for good, never sent, never retried."""
    world.settings.reminder_templates = {"flexible_payment_due": {"wechat": "wx-tmpl-unknown"}}
    await enrol_self(svc, ALICE)
    await subscribe(svc, ALICE, "flexible_payment_due")
    svc.clock.set(datetime(2026, 3, 21, 1, 0, tzinfo=UTC))
    assert await find_due(svc.app) == 1
    assert await world.send_pass() == 1
    (row,) = await send_rows(svc)
    assert row.status == "failed" and row.last_error is not None and "40037" in row.last_error
    svc.clock.set(datetime(2026, 3, 22, 1, 0, tzinfo=UTC))
    assert await world.send_pass() == 0
    assert await world.sent() == []


async def test_platform_down_is_retried_with_backoff(svc: Any, world: MessageWorld) -> None:
    import httpx

    from services.common.reminders import MessagePlatforms

    await enrol_self(svc, ALICE)
    await subscribe(svc, ALICE, "flexible_payment_due")
    svc.clock.set(datetime(2026, 3, 21, 1, 0, tzinfo=UTC))
    assert await find_due(svc.app) == 1

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    down = httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="http://sandbox")
    svc.app.state.message_platforms = MessagePlatforms(world.settings, svc.app.state.common, client=down)
    assert await world.send_pass() == 1
    (row,) = await send_rows(svc)
    assert row.status == "pending" and row.attempts == 1
    assert row.next_attempt_at.replace(tzinfo=UTC) == svc.clock.now() + timedelta(seconds=30)
    world.restart()  # the platform is back
    assert await world.send_pass() == 0  # not before its time
    svc.clock.set(svc.clock.now() + timedelta(seconds=31))
    assert await world.send_pass() == 1
    assert len(await world.sent()) == 1
    (row,) = await send_rows(svc)
    assert row.status == "sent" and row.attempts == 2
    await down.aclose()


async def test_the_platform_call_holds_no_database_connection(svc: Any, world: MessageWorld) -> None:
    import httpx

    from services.common.reminders import MessagePlatforms

    await enrol_self(svc, ALICE)
    await subscribe(svc, ALICE, "flexible_payment_due")
    svc.clock.set(datetime(2026, 3, 21, 1, 0, tzinfo=UTC))
    assert await find_due(svc.app) == 1
    in_use: list[int] = []

    async def forward(request: httpx.Request) -> httpx.Response:
        in_use.append(svc.db.engine.sync_engine.pool.checkedout())
        answer = await world.sandbox.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())

    watched = httpx.AsyncClient(transport=httpx.MockTransport(forward), base_url="http://sandbox")
    svc.app.state.message_platforms = MessagePlatforms(world.settings, svc.app.state.common, client=watched)
    assert await world.send_pass() == 1
    assert len(in_use) == 2 and set(in_use) == {0}  # the access token, then the message
    assert len(await world.sent()) == 1
    await watched.aclose()
