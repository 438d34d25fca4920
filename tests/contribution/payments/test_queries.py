"""Asking before closing: a lost notification is healed by a query; a payment is closed at the platform first."""

from __future__ import annotations

import httpx
import pytest

from services.contribution.payments.jobs import close_payments_once
from services.contribution.payments.queries import query_open_payments_once
from tests.contribution.payments.conftest import PayWorld
from tests.contribution.payments.money_back import (
    declaration,
    drop_notifications,
    opened,
    outcomes,
    pay_at_platform,
    payment,
    records_of,
)

CHANNELS = ["alipay", "wechat"]


def platform_order(world: PayWorld, p: dict[str, object]) -> dict[str, object]:
    if p["channel"] == "alipay":
        return world.platform.alipay_trades[str(p["trade_no"])]
    [order] = [o for (_m, no), o in world.platform.wechat_orders.items() if no == p["out_trade_no"]]
    return order


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_lost_notification_is_healed_by_a_query(world: PayWorld, channel: str) -> None:
    drop_notifications(world, channel)
    p = await opened(world, channel)
    await pay_at_platform(world, p)
    assert platform_order(world, p).get("dropped") is True
    assert (await payment(world, p["id"])).status == "open"
    # Not yet: a notification may still come.
    world.svc.clock.advance(seconds=59)
    assert await query_open_payments_once(world.svc.app) == 0
    assert (await payment(world, p["id"])).query_attempts == 0
    world.svc.clock.advance(seconds=2)
    assert await query_open_payments_once(world.svc.app) == 1
    paid = await payment(world, p["id"])
    assert paid.status == "paid" and paid.platform_trade_no and paid.certificate_code
    assert (await declaration(world, p["declaration_id"])).status == "paid"
    assert await records_of(world, p["id"]) == 6
    assert await outcomes(world, p["id"]) == [("credited", "query")]
    # The notification, when it finally comes, is a duplicate.
    world.platform.notify_rules.clear()
    order = platform_order(world, p)
    if channel == "alipay":
        body, headers = world.platform.alipay_notification(order)
        r = await world.client.post("/contribution/v1/notify/alipay", content=body, headers=headers)
        assert r.text == "success"
    else:
        body, headers = world.platform.wechat_notification(order)
        r = await world.client.post("/contribution/v1/notify/wechatpay", content=body, headers=headers)
        assert r.status_code == 204
    assert [o for o, _ in await outcomes(world, p["id"])] == ["credited", "duplicate"]
    assert await records_of(world, p["id"]) == 6


@pytest.mark.parametrize("channel", CHANNELS)
async def test_an_unpaid_payment_is_asked_again_with_doubling_waits(world: PayWorld, channel: str) -> None:
    p = await opened(world, channel)
    world.svc.clock.advance(seconds=61)
    assert await query_open_payments_once(world.svc.app) == 0
    first = await payment(world, p["id"])
    assert first.status == "open" and first.query_attempts == 1
    world.svc.clock.advance(seconds=59)
    await query_open_payments_once(world.svc.app)
    assert (await payment(world, p["id"])).query_attempts == 1  # waits 60 s
    world.svc.clock.advance(seconds=2)
    await query_open_payments_once(world.svc.app)
    assert (await payment(world, p["id"])).query_attempts == 2
    world.svc.clock.advance(seconds=100)
    await query_open_payments_once(world.svc.app)
    assert (await payment(world, p["id"])).query_attempts == 2  # then 120 s
    world.svc.clock.advance(seconds=21)
    await query_open_payments_once(world.svc.app)
    assert (await payment(world, p["id"])).query_attempts == 3
    assert await outcomes(world, p["id"]) == []


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_payment_past_its_time_is_closed_at_the_platform_before_it_is_freed(world: PayWorld, channel: str) -> None:
    p = await opened(world, channel)
    world.svc.clock.advance(minutes=31)
    assert await close_payments_once(world.svc.app) == 1
    closed = await payment(world, p["id"])
    assert closed.status == "closed" and closed.open_declaration_id is None
    order = platform_order(world, p)
    assert order["trade_status" if channel == "alipay" else "trade_state"] in ("TRADE_CLOSED", "CLOSED")
    # The person can no longer pay the order we let go of.
    await pay_at_platform(world, p)
    assert order.get("notify_attempts", 0) == 0
    assert (await payment(world, p["id"])).status == "closed"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_paid_meanwhile_is_credited_instead_of_closed(world: PayWorld, channel: str) -> None:
    drop_notifications(world, channel)
    p = await opened(world, channel)
    world.svc.clock.advance(minutes=29)
    await pay_at_platform(world, p)
    world.svc.clock.advance(minutes=2)
    assert await close_payments_once(world.svc.app) == 0
    paid = await payment(world, p["id"])
    assert paid.status == "paid" and paid.flag is None
    assert (await declaration(world, p["declaration_id"])).status == "paid"
    assert await outcomes(world, p["id"]) == [("credited", "query")]


async def test_a_platform_away_keeps_the_payment_open(world: PayWorld) -> None:
    p = await opened(world, "alipay")

    def away(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("unreachable", request=request)

    platforms = world.svc.app.state.payment_platforms
    sandbox, platforms._client = platforms._client, httpx.AsyncClient(transport=httpx.MockTransport(away))
    world.svc.clock.advance(minutes=31)
    assert await close_payments_once(world.svc.app) == 0
    assert (await payment(world, p["id"])).status == "open"
    platforms._client = sandbox
    assert await close_payments_once(world.svc.app) == 1
    assert (await payment(world, p["id"])).status == "closed"


async def test_dropping_by_order_and_delaying_through_the_sandbox_routes(world: PayWorld) -> None:
    p1 = await opened(world, "alipay")
    r = await world.sandbox.post("/sandbox/notifications/rules", json={"target": p1["out_trade_no"], "drop": True})
    assert r.status_code == 200
    await pay_at_platform(world, p1)
    assert (await payment(world, p1["id"])).status == "open"
    r = await world.sandbox.post("/sandbox/notifications/rules", json={"target": p1["out_trade_no"], "clear": True})
    assert r.json()["rules"] == {}
    await world.sandbox.post("/sandbox/notifications/rules", json={"target": "alipay", "delay_seconds": 0.01})
    world.svc.clock.advance(seconds=61)
    assert await query_open_payments_once(world.svc.app) == 1
    assert (await payment(world, p1["id"])).status == "paid"
