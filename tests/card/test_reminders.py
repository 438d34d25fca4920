"""Card reminders: card made and PIN locked, sent once through the sandbox's message APIs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.card.reminders import CardReminderSend
from services.common.reminders import send_one
from tests.card.conftest import CARD_NO, CardFlow
from tests.helpers import make_id_number
from tests.reminders_world import MessageWorld, message_world


@pytest.fixture
async def world(svc: Any) -> Any:
    w = await message_world(svc, CardReminderSend)
    yield w
    await w.sandbox.aclose()


async def subscribe(flow: CardFlow, idn: str, kind: str, platform: str = "wechat") -> Any:
    return await flow.client.post(
        "/card/v1/me/reminders", json={"kind": kind},
        headers=flow.h(flow.citizen(idn, platform=platform), **{"Idempotency-Key": str(uuid.uuid4())}),
    )


async def sends(flow: CardFlow) -> list[CardReminderSend]:
    async with flow.svc.db.sessionmaker() as s:
        return list((await s.execute(select(CardReminderSend))).scalars())


async def lock_pin(flow: CardFlow, idn: str, platform: str = "wechat") -> None:
    for _ in range(10):
        r = await flow.change_pin(idn, "000000", "135790", platform=platform)
        if r.json().get("pin_locked") is True or r.json().get("code") == "pin_locked":
            return
    raise AssertionError("the PIN never locked")


async def test_card_made_is_sent_once_with_no_id_number(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    r = await subscribe(flow, idn, "card_made")
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["kind"] == "card_made" and sub["status"] == "active" and sub["platform"] == "wechat"
    again = await subscribe(flow, idn, "card_made")
    assert again.status_code == 200 and again.json()["id"] == sub["id"]

    await flow.enrol(idn)
    card = await flow.apply(idn)
    await flow.issue(card["id"])
    assert [s.status for s in await sends(flow)] == ["pending"]
    assert await world.send_pass() == 1
    assert await world.send_pass() == 0
    world.restart()
    assert await world.send_pass() == 0

    openid = flow.citizen(idn)["sub"]
    sent = await world.sent(touser=openid)
    assert len(sent) == 1
    msg = sent[0]
    assert msg["template_id"] == "wx-tmpl-card-made" and msg["page"] == "pages/card/index"
    assert msg["data"]["character_string2"]["value"] == "J******78"
    text = str(msg)
    assert idn not in text and idn[-6:] not in text and CARD_NO not in text

    listed = (await flow.client.get("/card/v1/me/reminders", headers=flow.h(flow.citizen(idn)))).json()["items"]
    assert [(i["status"], i["send_status"]) for i in listed] == [("used", "sent")]


async def test_crash_after_claim_never_sends_twice(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    assert (await subscribe(flow, idn, "card_made")).status_code == 201
    await flow.enrol(idn)
    card = await flow.apply(idn)
    await flow.issue(card["id"])
    (row,) = await sends(flow)

    class Crash(Exception):
        pass

    async def crash() -> None:
        raise Crash()

    with pytest.raises(Crash):  # the process dies after the claim committed, before (or during) the call
        await send_one(flow.svc.app, CardReminderSend, row.id, platforms=flow.svc.app.state.message_platforms,
                       settings=world.settings, after_claim=crash)
    world.restart()
    assert await world.send_pass() == 0
    flow.svc.clock.set(flow.svc.clock.now() + timedelta(minutes=10))
    assert await world.send_pass() == 1  # marked unknown after the lease, not sent
    assert await world.send_pass() == 0
    assert [s.status for s in await sends(flow)] == ["unknown"]
    assert await world.sent() == []


async def test_pending_row_after_restart_is_sent_once(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    """The row committed, the process stopped before the job ran: the next process sends it once."""
    assert (await subscribe(flow, idn, "card_made", platform="alipay")).status_code == 201
    await flow.enrol(idn)
    card = await flow.apply(idn)
    await flow.issue(card["id"])
    world.restart()
    assert await world.send_pass() == 1
    world.restart()
    assert await world.send_pass() == 0
    sent = await world.sent(to_user_id=flow.citizen(idn, platform="alipay")["sub"])
    assert len(sent) == 1 and sent[0]["platform"] == "alipay" and sent[0]["template_id"] == "ali-tmpl-card-made"
    assert sent[0]["data"]["keyword2"]["value"] == "J******78"


async def test_pin_locked_on_alipay(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    await flow.active_card(idn)
    assert (await subscribe(flow, idn, "card_locked", platform="alipay")).status_code == 201
    await lock_pin(flow, idn, platform="alipay")
    assert await world.send_pass() == 1
    sent = await world.sent(template="ali-tmpl-card-locked")
    assert len(sent) == 1 and sent[0]["data"]["keyword1"]["value"] == "社保卡密码已锁定"
    assert idn not in str(sent[0])


async def test_unsubscribed_sends_nothing(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    await flow.active_card(idn)
    sub = (await subscribe(flow, idn, "card_locked")).json()
    r = await flow.client.delete(f"/card/v1/me/reminders/{sub['id']}", headers=flow.h(flow.citizen(idn)))
    assert r.status_code == 204
    await lock_pin(flow, idn)
    assert await sends(flow) == []
    assert await world.send_pass() == 0
    assert await world.sent() == []
    listed = (await flow.client.get("/card/v1/me/reminders", headers=flow.h(flow.citizen(idn)))).json()["items"]
    assert [i["status"] for i in listed] == ["cancelled"]


async def test_refusals(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    r = await subscribe(flow, idn, "certification_due")
    assert r.status_code == 422 and r.json()["code"] == "reminder_kind_unknown"
    other = await flow.client.post(
        "/card/v1/me/reminders", json={"kind": "card_made"},
        headers=flow.h({**flow.citizen(idn), "platform": "partner"}),
    )
    assert other.status_code == 409 and other.json()["code"] == "reminder_platform_unsupported"
    sub = (await subscribe(flow, idn, "card_made")).json()
    stranger = flow.citizen(make_id_number("110105", "19850505", "013"))
    r = await flow.client.delete(f"/card/v1/me/reminders/{sub['id']}", headers=flow.h(stranger))
    assert r.status_code == 404


async def test_subscribing_twice_at_once_keeps_one(flow: CardFlow, world: MessageWorld, idn: str) -> None:
    import asyncio

    answers = await asyncio.gather(*(subscribe(flow, idn, "card_made") for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
