"""Refunds: recorded before the platform is asked, never twice, never beyond the payment, uncredited when credited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.contribution.events import PAYMENT_REFUNDED
from services.contribution.payments.refunds import retry_refunds_once
from tests.contribution.payments.conftest import ALICE, PayWorld
from tests.contribution.payments.money_back import (
    audit_actions,
    certificate_revoked,
    declaration,
    events,
    flag_refund_pending,
    opened,
    outcomes,
    pay_at_platform,
    payment,
    records_of,
    refunds_of,
)
from tests.helpers import citizen, staff

CHANNELS = ["alipay", "wechat"]
OPERATOR = staff("operator")
ADMIN = staff("admin", staff_id="S9001")


async def paid(world: PayWorld, channel: str) -> dict[str, Any]:
    p = await opened(world, channel)
    await pay_at_platform(world, p)
    assert (await payment(world, p["id"])).status == "paid"
    return p


async def refund(world: PayWorld, payment_id: str, prn: dict[str, Any] = OPERATOR, key: str | None = None,
                 reason: str = "重复缴费退款") -> httpx.Response:
    return await world.client.post(f"/contribution/v1/staff/payments/{payment_id}/refunds", json={"reason": reason},
                                   headers=world.headers(prn, key or str(uuid.uuid4())))


@pytest.mark.parametrize("channel", CHANNELS)
async def test_operator_refunds_a_payment_flagged_refund_pending(world: PayWorld, channel: str) -> None:
    p = await paid(world, channel)
    await flag_refund_pending(world, p["id"])
    r = await refund(world, p["id"], key="refund-1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["amount_fen"] == 630000 and body["uncredit"] is False and body["out_refund_no"].startswith("RF")
    if channel == "alipay":
        assert body["status"] == "succeeded"  # Alipay answers at once
    else:
        assert body["status"] == "processing"  # WeChat Pay: then its notification
        await world.platform.drain()
    [row] = await refunds_of(world, p["id"])
    assert row.status == "succeeded" and row.out_refund_no == body["out_refund_no"]
    after = await payment(world, p["id"])
    assert after.status == "refunded" and after.refunded_fen == 630000
    assert world.platform.refunds_moved == 1
    # The same key answers the same refund; another key finds nothing left to refund.
    again = await refund(world, p["id"], key="refund-1")
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    more = await refund(world, p["id"])
    assert more.status_code == 409 and more.json()["code"] == "refund_exceeds_payment"
    assert world.platform.refunds_moved == 1
    [event] = await events(world, PAYMENT_REFUNDED)
    assert event["payment_id"] == p["id"] and event["amount_fen"] == 630000 and event["uncredited"] is False
    assert "payment.refund_requested" in await audit_actions(world)
    # The payer sees the refund on the payment.
    d = await world.client.get(f"/contribution/v1/me/declarations/{p['declaration_id']}",
                               headers=world.headers(citizen(ALICE)))
    [shown] = [x for x in d.json()["payments"] if x["id"] == p["id"]]
    assert shown["status"] == "refunded"
    assert [(x["status"], x["amount_fen"]) for x in shown["refunds"]] == [("succeeded", 630000)]
    if channel == "wechat":
        assert ("refund_succeeded", ) == tuple(o for o, _ in (await outcomes(world, p["id"]))[-1:])


@pytest.mark.parametrize("channel", CHANNELS)
async def test_admin_refunds_a_credited_payment_and_its_months_are_uncredited(world: PayWorld, channel: str) -> None:
    p = await paid(world, channel)
    code = (await payment(world, p["id"])).certificate_code
    assert code and await records_of(world, p["id"]) == 6
    r = await refund(world, p["id"], prn=OPERATOR)
    assert r.status_code == 403 and r.json()["code"] == "staff_role_required"
    r = await refund(world, p["id"], prn=ADMIN, reason="申请人撤回")
    assert r.status_code == 201, r.text
    assert r.json()["uncredit"] is True
    await world.platform.drain()
    assert (await payment(world, p["id"])).status == "refunded"
    decl = await declaration(world, p["declaration_id"])
    assert decl.status == "cancelled" and await records_of(world, p["id"]) == 0
    assert await certificate_revoked(world, code)
    [event] = await events(world, PAYMENT_REFUNDED)
    assert event["uncredited"] is True and event["months"] == ["2026-01", "2026-02", "2026-03"]
    actions = await audit_actions(world)
    assert "declaration.uncredited" in actions and "payment.refunded" in actions
    # The months are free: the person may declare them again.
    check = await world.client.get(f"/contribution/v1/certificates/{code}")
    assert check.json()["revoked"] is True


async def test_refusals(world: PayWorld) -> None:
    p = await opened(world, "alipay")
    r = await refund(world, p["id"])
    assert r.status_code == 409 and r.json()["code"] == "payment_not_refundable"
    r = await refund(world, str(uuid.uuid4()))
    assert r.status_code == 404 and r.json()["code"] == "payment_not_found"
    r = await world.client.post(f"/contribution/v1/staff/payments/{p['id']}/refunds", json={"reason": "x"},
                                headers=world.headers(OPERATOR))
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
    r = await refund(world, p["id"], reason="")
    assert r.status_code == 422
    r = await world.client.post(f"/contribution/v1/staff/payments/{p['id']}/refunds", json={"reason": "x"},
                                headers=world.headers(citizen(ALICE), "k"))
    assert r.status_code == 403
    r = await refund(world, p["id"], prn=ADMIN, reason="原因")
    assert r.status_code == 409
    r = await world.client.post(f"/contribution/v1/staff/payments/{p['id']}/refunds", json={"reason": "x"},
                                headers={**world.headers(OPERATOR, "k2"), "Accept-Language": "en"})
    assert r.json()["title"].startswith("This payment cannot be refunded")


class PlatformCrash(BaseException):
    """Stands for the process dying after the platform took the refund, before its answer was recorded."""


def crash_after(world: PayWorld, path_part: str) -> Callable[[], Awaitable[None]]:
    """Calls through to the sandbox; the first one whose path or form names `path_part` crashes after it."""
    platforms = world.svc.app.state.payment_platforms
    sandbox = platforms._client
    state = {"crashed": False}

    async def handle(request: httpx.Request) -> httpx.Response:
        answer = await sandbox.send(httpx.Request(request.method, request.url, headers=request.headers,
                                                  content=request.content))
        content = await answer.aread()
        if not state["crashed"] and (path_part in request.url.path or path_part.encode() in request.content):
            state["crashed"] = True
            raise PlatformCrash()
        return httpx.Response(answer.status_code, headers=answer.headers, content=content)

    platforms._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))

    async def restart() -> None:
        platforms._client = sandbox

    return restart


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_crash_between_the_refund_call_and_its_record_never_refunds_twice(world: PayWorld, channel: str) -> None:
    p = await paid(world, channel)
    await flag_refund_pending(world, p["id"])
    # WeChat Pay's refund notification is lost too: only asking again can settle the refund.
    world.platform.notify_rules["wechat"] = {"drop": True}
    restart = crash_after(world, "alipay.trade.refund" if channel == "alipay" else "/refund/domestic/refunds")
    with pytest.raises(PlatformCrash):
        await refund(world, p["id"], key="crash")
    await world.platform.drain()
    assert world.platform.refunds_moved == 1
    # The refund was recorded, with its number, before the platform was asked.
    [left] = await refunds_of(world, p["id"])
    assert left.status == "processing" and left.attempts == 0
    await restart()
    # The job leaves it while its request may still come back, then asks again with the same number.
    assert await retry_refunds_once(world.svc.app) == 0
    world.svc.clock.advance(seconds=world.settings.platform_timeout_seconds + 61)
    assert await retry_refunds_once(world.svc.app) == 1
    [done] = await refunds_of(world, p["id"])
    assert done.id == left.id and done.out_refund_no == left.out_refund_no and done.status == "succeeded"
    assert world.platform.refunds_moved == 1
    assert (await payment(world, p["id"])).status == "refunded"
    assert len(await events(world, PAYMENT_REFUNDED)) == 1
    # A second request finds nothing left to refund.
    r = await refund(world, p["id"])
    assert r.status_code == 409 and world.platform.refunds_moved == 1


@pytest.mark.parametrize(("outcome", "status"), [("ABNORMAL", "abnormal"), ("CLOSED", "failed")])
async def test_wechat_refunds_that_do_not_succeed(world: PayWorld, outcome: str, status: str) -> None:
    p = await paid(world, "wechat")
    await flag_refund_pending(world, p["id"])
    r = await world.sandbox.post("/sandbox/wechatpay/refund-outcome", json={"status": outcome})
    assert r.status_code == 200
    assert (await refund(world, p["id"])).json()["status"] == "processing"
    await world.platform.drain()
    [row] = await refunds_of(world, p["id"])
    assert row.status == status
    after = await payment(world, p["id"])
    assert after.status == "refund_pending"
    if status == "failed":
        # Nothing moved: the amount may be refunded again.
        assert after.refunded_fen == 0
        world.platform.refund_outcome = "SUCCESS"
        assert (await refund(world, p["id"])).status_code == 201
        await world.platform.drain()
        assert (await payment(world, p["id"])).status == "refunded"
    else:
        assert after.refunded_fen == 630000
        assert (await refund(world, p["id"])).json()["code"] == "refund_exceeds_payment"
    assert await events(world, PAYMENT_REFUNDED) == ([] if status == "abnormal" else [await _one(world)])


async def _one(world: PayWorld) -> dict[str, Any]:
    [e] = await events(world, PAYMENT_REFUNDED)
    return e


async def test_two_refunds_at_once_refund_once(world: PayWorld) -> None:
    p = await paid(world, "alipay")
    await flag_refund_pending(world, p["id"])
    a, b = await asyncio.gather(refund(world, p["id"]), refund(world, p["id"]))
    assert sorted([a.status_code, b.status_code]) == [201, 409]
    assert world.platform.refunds_moved == 1
    assert (await payment(world, p["id"])).refunded_fen == 630000


async def test_a_forged_refund_notification_is_refused(world: PayWorld) -> None:
    p = await paid(world, "wechat")
    await flag_refund_pending(world, p["id"])
    await refund(world, p["id"])
    [row] = await refunds_of(world, p["id"])
    record = next(iter(world.platform.wechat_refunds.values()))
    from sandbox.trades import refund_notification

    body, headers = refund_notification(world.platform, {**record, "status": "SUCCESS"})
    forged = body.replace(b"REFUND.SUCCESS", b"REFUND.CLOSED")
    r = await world.client.post("/contribution/v1/notify/wechatpay/refunds", content=forged, headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    unknown = {**record, "out_refund_no": "RF-NOT-OURS", "status": "SUCCESS"}
    body, headers = refund_notification(world.platform, unknown)
    r = await world.client.post("/contribution/v1/notify/wechatpay/refunds", content=body, headers=headers)
    assert r.status_code == 404
    await world.platform.drain()
    assert (await refunds_of(world, p["id"]))[0].id == row.id
