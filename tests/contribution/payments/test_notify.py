"""Platform notifications: verified, credited exactly once, never dropped, forged ones never count."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from services.common.models import AuditEntry, OutboxEvent
from services.contribution.events import DECLARATION_PAID
from services.contribution.models import ContributionRecord, Declaration, DeclaredMonth
from services.contribution.payments.jobs import close_payments_once, payment_closer
from services.contribution.payments.keys import SANDBOX_PLATFORM_KEY_ID, load_public_key
from services.contribution.payments.models import Certificate, Payment, PaymentNotification
from tests.conftest import KEYS
from tests.contribution.payments import independent as ind
from tests.contribution.payments.conftest import ALICE, PayWorld
from tests.helpers import citizen, staff

APIV3 = (KEYS / "wechatpay-apiv3.key").read_bytes().strip()


async def state(world: PayWorld, payment_id: str) -> dict[str, Any]:
    """What the database says about a payment and its declaration."""
    async with world.svc.db.sessionmaker() as s:
        p = await s.get(Payment, payment_id)
        assert p is not None
        d = await s.get(Declaration, p.declaration_id)
        records = (await s.execute(select(func.count()).select_from(ContributionRecord)
                                   .where(ContributionRecord.payment_id == payment_id))).scalar_one()
        events = (await s.execute(select(func.count()).select_from(OutboxEvent)
                                  .where(OutboxEvent.type == DECLARATION_PAID))).scalar_one()
        certs = (await s.execute(select(func.count()).select_from(Certificate)
                                 .where(Certificate.payment_id == payment_id))).scalar_one()
        outcomes = [n.outcome for n in (await s.execute(
            select(PaymentNotification).order_by(PaymentNotification.id))).scalars().all()]
        alerts = [a.action for a in (await s.execute(select(AuditEntry))).scalars().all()]
    assert d is not None
    return {"payment": p.status, "flag": p.flag, "declaration": d.status, "records": records, "events": events,
            "certificates": certs, "certificate_code": p.certificate_code, "outcomes": outcomes, "alerts": alerts,
            "paid_payment_id": d.paid_payment_id}


# ---- Alipay ------------------------------------------------------------------------------


async def open_alipay(world: PayWorld, **decl: Any) -> dict[str, Any]:
    decl_id = await world.declaration(**decl)
    r = await world.open(decl_id, "alipay")
    assert r.status_code == 201, r.text
    return r.json()


def alipay_fields(p: dict[str, Any], **over: str) -> dict[str, str]:
    fields = {"app_id": "2021000100000001", "seller_id": "2088000000000001", "out_trade_no": p["out_trade_no"],
              "trade_no": p["trade_no"], "trade_status": "TRADE_SUCCESS", "total_amount": "6300.00"}
    fields.update(over)
    return fields


def alipay_signed(p: dict[str, Any], **over: str) -> dict[str, str]:
    return ind.alipay_notification(ind.load_private(KEYS / "alipay-platform.pem"), **alipay_fields(p, **over))


async def post_alipay(world: PayWorld, fields: dict[str, str]) -> Any:
    return await world.client.post("/contribution/v1/notify/alipay", content=ind.form_body(fields),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})


class TestAlipayNotify:
    async def test_valid_notification_credits_once(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        fields = alipay_signed(p)
        r = await post_alipay(world, fields)
        assert r.status_code == 200 and r.text == "success"
        st = await state(world, p["id"])
        assert st["payment"] == "paid" and st["declaration"] == "paid" and st["paid_payment_id"] == p["id"]
        assert st["records"] == 6 and st["events"] == 1 and st["certificates"] == 1 and len(st["certificate_code"]) >= 16
        # The same notification again (Alipay resends): success, nothing more.
        r = await post_alipay(world, fields)
        assert r.text == "success"
        st = await state(world, p["id"])
        assert st["records"] == 6 and st["events"] == 1 and st["outcomes"] == ["credited", "duplicate"]

    async def test_fifty_identical_notifications_at_once_credit_once(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        fields = alipay_signed(p)
        rs = await asyncio.gather(*[post_alipay(world, fields) for _ in range(50)])
        assert [r.text for r in rs] == ["success"] * 50
        st = await state(world, p["id"])
        assert st["records"] == 6 and st["events"] == 1 and st["certificates"] == 1
        assert st["outcomes"].count("credited") == 1 and st["outcomes"].count("duplicate") == 49

    async def test_tampered_field(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        fields = alipay_signed(p)
        fields["out_trade_no"] = "SS000000000000ATTACKER0001"
        r = await post_alipay(world, fields)
        assert r.status_code == 400 and r.text != "success"
        st = await state(world, p["id"])
        assert st["payment"] == "open" and st["records"] == 0 and st["outcomes"] == ["rejected:signature"]

    async def test_signed_with_another_key(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        fields = ind.alipay_notification(ind.new_rsa_key(), **alipay_fields(p))
        assert (await post_alipay(world, fields)).text != "success"
        assert (await state(world, p["id"]))["payment"] == "open"

    async def test_wrong_amount_is_recorded_and_alerted_not_credited(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        r = await post_alipay(world, alipay_signed(p, total_amount="63.00"))
        assert r.text != "success"
        st = await state(world, p["id"])
        assert st["payment"] == "open" and st["records"] == 0
        assert st["outcomes"] == ["amount_mismatch"] and st["alerts"] == ["payment.amount_mismatch"]

    @pytest.mark.parametrize("amount", ["6300", "6300.0", "6300.001", "6.3e3", "-6300.00", "+6300.00", " 6300.00"])
    async def test_amount_strings_parse_exactly(self, world: PayWorld, amount: str) -> None:
        p = await open_alipay(world)
        r = await post_alipay(world, alipay_signed(p, total_amount=amount))
        exact = amount in ("6300", "6300.0")
        assert (r.text == "success") is exact
        assert (await state(world, p["id"]))["payment"] == ("paid" if exact else "open")

    async def test_unknown_order_and_other_app(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        r = await post_alipay(world, alipay_signed(p, out_trade_no="SS26031010000000000000000X"))
        assert r.text != "success"
        r = await post_alipay(world, alipay_signed(p, app_id="2021000999999999"))
        assert r.text != "success"
        r = await post_alipay(world, alipay_signed(p, seller_id="2088999999999999"))
        assert r.text != "success"
        st = await state(world, p["id"])
        assert st["payment"] == "open" and st["outcomes"] == ["unknown_order", "not_ours", "not_ours"]

    async def test_malformed_body(self, world: PayWorld) -> None:
        r = await world.client.post("/contribution/v1/notify/alipay", content=b"\xff\xfe=%%%",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and r.text == "fail"
        r = await world.client.post("/contribution/v1/notify/alipay", content=b"a=1&a=2")
        assert r.text == "fail"
        r = await world.client.post("/contribution/v1/notify/alipay", content=b"x" * 70000)
        assert r.text == "fail"

    async def test_trade_closed(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        assert (await post_alipay(world, alipay_signed(p, trade_status="TRADE_CLOSED"))).text == "success"
        st = await state(world, p["id"])
        assert st["payment"] == "closed" and st["declaration"] == "awaiting_payment"

    async def test_paid_after_we_closed_it_is_still_credited(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        world.svc.clock.advance(minutes=31)
        assert await close_payments_once(world.svc.app) == 1
        assert (await state(world, p["id"]))["payment"] == "closed"
        assert (await post_alipay(world, alipay_signed(p))).text == "success"
        st = await state(world, p["id"])
        assert st["payment"] == "paid" and st["flag"] == "paid_after_close" and st["declaration"] == "paid"
        assert st["records"] == 6 and st["outcomes"] == ["paid_after_close"]

    async def test_second_payment_of_a_paid_declaration_is_flagged_for_refund(self, world: PayWorld) -> None:
        p1 = await open_alipay(world)
        world.svc.clock.advance(minutes=31)
        await close_payments_once(world.svc.app)
        r = await world.open(p1["declaration_id"], "alipay")
        assert r.status_code == 201 and r.json()["id"] != p1["id"]
        p2 = r.json()
        assert (await post_alipay(world, alipay_signed(p2))).text == "success"
        # The person had also paid the first (closed) one: the money is recorded, flagged for refund.
        assert (await post_alipay(world, alipay_signed(p1))).text == "success"
        st1, st2 = await state(world, p1["id"]), await state(world, p2["id"])
        assert st2["payment"] == "paid" and st1["payment"] == "refund_pending" and st1["flag"] == "paid_after_close"
        assert st1["paid_payment_id"] == p2["id"] and st1["records"] == 0 and st2["records"] == 6
        assert "payment.refund_pending" in st1["alerts"]
        # Staff find it among the flagged payments.
        r = await world.client.get("/contribution/v1/payments", params={"status": "refund_pending"},
                                   headers=world.headers(staff("operator")))
        assert r.status_code == 200 and [x["id"] for x in r.json()["items"]] == [p1["id"]]
        assert r.json()["items"][0]["flag"] == "paid_after_close" and r.json()["items"][0]["paid_amount_fen"] == 630000


    async def test_paid_for_a_cancelled_declaration_is_flagged_for_refund(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        async with world.svc.db.sessionmaker() as s, s.begin():
            d = await s.get(Declaration, p["declaration_id"])
            assert d is not None
            d.status = "cancelled"
        assert (await post_alipay(world, alipay_signed(p))).text == "success"
        st = await state(world, p["id"])
        assert st["payment"] == "refund_pending" and st["flag"] == "declaration:declaration_state_conflict"
        assert st["records"] == 0 and st["certificates"] == 0 and st["alerts"] == ["payment.refund_pending"]

    async def test_paid_after_expiry_while_another_declaration_holds_a_month_is_flagged_not_credited(
            self, world: PayWorld) -> None:
        p = await open_alipay(world)
        async with world.svc.db.sessionmaker() as s, s.begin():  # expired, its months freed
            d = await s.get(Declaration, p["declaration_id"])
            assert d is not None
            d.status = "expired"
            await s.execute(delete(DeclaredMonth).where(DeclaredMonth.declaration_id == d.id))
        other = await world.declaration(months=("2026-02",))  # meanwhile February was declared again
        assert (await post_alipay(world, alipay_signed(p))).text == "success"
        st = await state(world, p["id"])
        assert st["payment"] == "refund_pending" and st["flag"] == "declaration:month_already_declared"
        assert st["declaration"] == "expired" and st["records"] == 0 and st["certificates"] == 0
        assert st["alerts"] == ["payment.refund_pending"]
        async with world.svc.db.sessionmaker() as s:
            holders = (await s.execute(select(DeclaredMonth.declaration_id).where(DeclaredMonth.period == "2026-02")
                                       )).scalars().all()
        assert set(holders) == {other}  # February is not counted twice


# ---- WeChat Pay ----------------------------------------------------------------------------


async def open_wechat(world: PayWorld) -> dict[str, Any]:
    decl_id = await world.declaration()
    r = await world.open(decl_id, "wechat")
    assert r.status_code == 201, r.text
    return r.json()


def wechat_signed(world: PayWorld, p: dict[str, Any], *, total: int = 630000, key: Any = None, serial: str | None = None,
                  ts_offset: int = 0, state: str = "SUCCESS") -> tuple[bytes, dict[str, str]]:
    return ind.wechat_notification(
        platform_key=key or ind.load_private(KEYS / "wechatpay-platform.pem"), serial=serial or SANDBOX_PLATFORM_KEY_ID,
        apiv3_key=APIV3, timestamp=int(world.svc.clock.now().timestamp()) + ts_offset,
        transaction=ind.transaction(mchid="1900000001", appid="wx0000000000000001", out_trade_no=p["out_trade_no"],
                                    total=total, state=state),
    )


async def post_wechat(world: PayWorld, signed: tuple[bytes, dict[str, str]]) -> Any:
    body, headers = signed
    return await world.client.post("/contribution/v1/notify/wechatpay", content=body, headers=headers)


class TestWechatNotify:
    async def test_valid_notification_credits_once(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        signed = wechat_signed(world, p)
        r = await post_wechat(world, signed)
        assert r.status_code == 204, r.text
        assert (await post_wechat(world, signed)).status_code == 204
        st = await state(world, p["id"])
        assert st["payment"] == "paid" and st["declaration"] == "paid" and st["records"] == 6 and st["events"] == 1
        assert st["outcomes"] == ["credited", "duplicate"]

    async def test_fifty_identical_notifications_at_once_credit_once(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        signed = wechat_signed(world, p)
        rs = await asyncio.gather(*[post_wechat(world, signed) for _ in range(50)])
        assert {r.status_code for r in rs} == {204}
        st = await state(world, p["id"])
        assert st["records"] == 6 and st["events"] == 1 and st["outcomes"].count("credited") == 1

    async def test_tampered_body(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        body, headers = wechat_signed(world, p)
        r = await post_wechat(world, (body.replace(b'"summary"', b'"Summary"'), headers))
        assert r.status_code == 401 and r.json()["code"] == "FAIL"
        assert (await state(world, p["id"]))["payment"] == "open"

    async def test_wrong_key_and_unknown_serial(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        assert (await post_wechat(world, wechat_signed(world, p, key=ind.new_rsa_key()))).status_code == 401
        r = await post_wechat(world, wechat_signed(world, p, serial="PUB_KEY_ID_9999999999999999999999999999999999"))
        assert r.status_code == 401
        st = await state(world, p["id"])
        assert st["payment"] == "open" and st["outcomes"] == ["rejected:signature", "rejected:unknown_serial"]

    async def test_stale_timestamp(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        r = await post_wechat(world, wechat_signed(world, p, ts_offset=-301))
        assert r.status_code == 401 and r.json() == {"code": "FAIL", "message": "stale"}
        assert (await post_wechat(world, wechat_signed(world, p, ts_offset=-299))).status_code == 204

    async def test_platform_certificate_serial(self, world: PayWorld) -> None:
        key = ind.new_rsa_key()
        cert_pem, serial = ind.self_signed_cert(key)
        p = await open_wechat(world)
        wechat = world.svc.app.state.payment_platforms.wechat
        object.__setattr__(wechat, "platform_keys", {**wechat.platform_keys, serial: load_public_key(cert_pem)})
        assert (await post_wechat(world, wechat_signed(world, p, key=key, serial=serial))).status_code == 204
        assert (await state(world, p["id"]))["payment"] == "paid"

    async def test_wrong_amount_is_recorded_and_alerted(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        r = await post_wechat(world, wechat_signed(world, p, total=1))
        assert r.status_code == 400 and r.json()["code"] == "FAIL"
        st = await state(world, p["id"])
        assert st["payment"] == "open" and st["outcomes"] == ["amount_mismatch"] and st["alerts"] == ["payment.amount_mismatch"]

    async def test_unknown_order(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        r = await post_wechat(world, wechat_signed(world, {**p, "out_trade_no": "SS260310100000FFFFFFFFFFFF"}))
        assert r.status_code == 404 and r.json()["code"] == "FAIL"

    async def test_garbage(self, world: PayWorld) -> None:
        r = await world.client.post("/contribution/v1/notify/wechatpay", content=b"{}")
        assert r.status_code == 401 and r.json()["code"] == "FAIL"


class TestThroughTheSandbox:
    async def test_alipay_pay_and_notify(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        r = await world.sandbox.post(f"/sandbox/alipay/trades/{p['trade_no']}/pay")
        assert r.status_code == 200
        await world.platform.drain()
        trade = (await world.sandbox.get(f"/sandbox/alipay/trades/{p['trade_no']}")).json()
        assert trade["notified"] is True and trade["notify_attempts"] == 1
        st = await state(world, p["id"])
        assert st["payment"] == "paid" and st["declaration"] == "paid"

    async def test_wechat_pay_and_notify(self, world: PayWorld) -> None:
        p = await open_wechat(world)
        assert (await world.sandbox.post(f"/sandbox/wechatpay/transactions/{p['out_trade_no']}/pay")).status_code == 200
        await world.platform.drain()
        st = await state(world, p["id"])
        assert st["payment"] == "paid" and st["declaration"] == "paid" and st["records"] == 6


class TestStaffList:
    async def test_refusals_and_pages(self, world: PayWorld) -> None:
        assert (await world.client.get("/contribution/v1/payments")).status_code == 401
        r = await world.client.get("/contribution/v1/payments", headers=world.headers(citizen(ALICE)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await world.client.get("/contribution/v1/payments", headers=world.headers(staff("reviewer")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"
        ids = []
        for m in ("2025-10", "2025-11", "2025-12"):
            ids.append((await open_alipay(world, months=(m,)))["id"])
            world.svc.clock.advance(seconds=1)
        h = world.headers(staff("operator"))
        r = await world.client.get("/contribution/v1/payments", params={"limit": 2}, headers=h)
        page1 = r.json()
        assert [x["id"] for x in page1["items"]] == ids[:0:-1] and page1["next_cursor"]
        r = await world.client.get("/contribution/v1/payments", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=h)
        assert [x["id"] for x in r.json()["items"]] == ids[:1] and r.json()["next_cursor"] is None
        r = await world.client.get("/contribution/v1/payments", params={"cursor": "garbage!"}, headers=h)
        assert r.status_code == 422
        r = await world.client.get("/contribution/v1/payments", params={"status": "nope"}, headers=h)
        assert r.status_code == 422


class TestClosing:
    async def test_the_closing_job_runs_until_stopped(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        world.svc.clock.advance(minutes=45)
        world.settings.payment_close_interval_seconds = 0.01
        stop = asyncio.Event()
        task = asyncio.create_task(payment_closer(world.svc.app, stop))
        for _ in range(200):
            if (await state(world, p["id"]))["payment"] == "closed":
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert (await state(world, p["id"]))["payment"] == "closed"

    async def test_an_open_payment_past_its_time_is_replaced_even_before_the_job_runs(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        world.svc.clock.advance(minutes=31)
        r = await world.open(p["declaration_id"], "alipay")
        assert r.status_code == 201 and r.json()["id"] != p["id"]
        assert (await state(world, p["id"]))["payment"] == "closed"

    async def test_unpaid_payment_closes_and_the_declaration_can_be_paid_again(self, world: PayWorld) -> None:
        p = await open_alipay(world)
        world.svc.clock.advance(minutes=29)
        assert await close_payments_once(world.svc.app) == 0
        world.svc.clock.advance(minutes=1)
        assert await close_payments_once(world.svc.app) == 1
        r = await world.open(p["declaration_id"], "wechat", prn=citizen(ALICE, platform="wechat"))
        assert r.status_code == 201 and r.json()["id"] != p["id"]
        d = await world.client.get(f"/contribution/v1/me/declarations/{p['declaration_id']}",
                                   headers=world.headers(citizen(ALICE)))
        assert d.status_code == 200, d.text
        assert [(x["id"], x["channel"], x["status"]) for x in d.json()["payments"]] == [
            (p["id"], "alipay", "closed"), (r.json()["id"], "wechat", "open")]
