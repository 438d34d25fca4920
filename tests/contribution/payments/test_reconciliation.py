"""Daily reconciliation: the platforms' bills against our payments and refunds; a rerun gives the same report."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import pytest
from sqlalchemy import update

from sandbox.bills import alipay_bill_zip, wechat_bill_text
from services.contribution.payments.models import Payment
from services.contribution.payments.reconciliation import (
    parse_alipay_bill,
    parse_wechat_bill,
    reconcile_yesterday_once,
)
from tests.contribution.payments.conftest import BOB, PayWorld
from tests.contribution.payments.money_back import (
    declaration,
    drop_notifications,
    flag_refund_pending,
    opened,
    outcomes,
    pay_at_platform,
    payment,
)
from tests.contribution.payments.test_refunds import refund
from tests.helpers import staff

CHANNELS = ["alipay", "wechat"]
OPERATOR = staff("operator")
DAY = "2026-03-10"  # the payments are made on it (the fixture's clock), reconciled the next day
CAROL = "110105198801010038"


async def day_of_business(world: PayWorld, channel: str) -> dict[str, dict[str, Any]]:
    """One payment credited normally; one refunded; one paid whose notification was lost; one we hold paid
    that the platform never took."""
    normal = await opened(world, channel, months=("2026-01",))
    await pay_at_platform(world, normal)
    refunded = await opened(world, channel, BOB, months=("2026-01",))
    await pay_at_platform(world, refunded)
    await flag_refund_pending(world, refunded["id"])
    assert (await refund(world, refunded["id"])).status_code == 201
    await world.platform.drain()
    drop_notifications(world, channel)
    lost = await opened(world, channel, months=("2026-02",))
    await pay_at_platform(world, lost)
    assert (await payment(world, lost["id"])).status == "open"
    phantom = await opened(world, channel, CAROL, months=("2026-01",))
    async with world.svc.db.sessionmaker() as s, s.begin():
        await s.execute(update(Payment).where(Payment.id == phantom["id"]).values(
            status="paid", open_declaration_id=None, paid_at=world.svc.clock.now(), paid_amount_fen=phantom["amount_fen"]))
    world.platform.notify_rules.clear()
    world.svc.clock.advance(days=1)
    return {"normal": normal, "refunded": refunded, "lost": lost, "phantom": phantom}


async def run(world: PayWorld, channel: str, date: str = DAY) -> Any:
    return await world.client.post("/contribution/v1/staff/reconciliations", json={"date": date, "channel": channel},
                                   headers=world.headers(OPERATOR, str(uuid.uuid4())))


def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {(x["out_refund_no"] if x["kind"] == "refund" else x["out_trade_no"]): x for x in items}


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_day_is_reconciled_and_a_rerun_gives_the_same_report(world: PayWorld, channel: str) -> None:
    ps = await day_of_business(world, channel)
    r = await run(world, channel)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["date"] == DAY and report["channel"] == channel and report["runs"] == 1
    assert report["counts"] == {"matched": 3, "ours_only": 1, "theirs_only": 1, "amount_differs": 0,
                                "status_differs": 0}
    items = by_key(report["items"])
    assert items[ps["normal"]["out_trade_no"]]["outcome"] == "matched"
    assert items[ps["refunded"]["out_trade_no"]]["outcome"] == "matched"
    [refund_item] = [x for x in report["items"] if x["kind"] == "refund"]
    assert refund_item["outcome"] == "matched" and refund_item["theirs_fen"] == ps["refunded"]["amount_fen"]
    lost = items[ps["lost"]["out_trade_no"]]
    assert (lost["outcome"], lost["resolution"]) == ("theirs_only", "credited")
    assert items[ps["phantom"]["out_trade_no"]]["outcome"] == "ours_only"
    # The lost notification is healed: credited after a query.
    assert (await payment(world, ps["lost"]["id"])).status == "paid"
    assert (await declaration(world, ps["lost"]["declaration_id"])).status == "paid"
    assert (await outcomes(world, ps["lost"]["id"]))[-1] == ("credited", "query")
    # Again: the same report.
    again = (await run(world, channel)).json()
    assert again["runs"] == 2
    for k in ("counts", "items", "bill_rows", "first_run_at"):
        assert again[k] == report[k], k
    got = await world.client.get(f"/contribution/v1/staff/reconciliations/{DAY}", params={"channel": channel},
                                 headers=world.headers(OPERATOR))
    assert got.status_code == 200 and got.json()["items"] == report["items"]


async def test_amounts_and_statuses_that_differ(world: PayWorld) -> None:
    p = await opened(world, "alipay")
    await pay_at_platform(world, p)
    # The bill says another amount than we took.
    world.platform.alipay_trades[p["trade_no"]]["total_amount"] = "1.00"
    q = await opened(world, "wechat", BOB)
    await pay_at_platform(world, q)
    await flag_refund_pending(world, q["id"])
    assert (await refund(world, q["id"])).json()["status"] == "processing"
    drop_notifications(world, "wechat")
    await world.platform.drain()  # done at WeChat Pay, the notification lost: still processing here
    world.svc.clock.advance(days=1)
    a = (await run(world, "alipay")).json()
    assert a["counts"]["amount_differs"] == 1
    [item] = a["items"]
    assert (item["ours_fen"], item["theirs_fen"]) == (p["amount_fen"], 100)
    w = (await run(world, "wechat")).json()
    assert w["counts"]["status_differs"] == 1 and w["counts"]["matched"] == 1
    [ref] = [x for x in w["items"] if x["kind"] == "refund"]
    assert (ref["outcome"], ref["ours_status"], ref["theirs_status"]) == ("status_differs", "processing", "SUCCESS")


async def test_the_report_is_paged_by_number_and_filtered(world: PayWorld) -> None:
    await day_of_business(world, "alipay")
    report = (await run(world, "alipay")).json()
    h = world.headers(OPERATOR)
    url = f"/contribution/v1/staff/reconciliations/{DAY}"
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"channel": "alipay", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await world.client.get(url, params=params, headers=h)).json()
        seen += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == report["items"] and len(seen) == 5
    only = (await world.client.get(url, params={"channel": "alipay", "outcome": "matched"}, headers=h)).json()
    assert {x["outcome"] for x in only["items"]} == {"matched"} and len(only["items"]) == 3
    r = await world.client.get(url, params={"channel": "wechat"}, headers=h)
    assert r.status_code == 404 and r.json()["code"] == "reconciliation_not_found"
    r = await world.client.get(url, params={"channel": "alipay", "cursor": "garbage!"}, headers=h)
    assert r.status_code == 422
    r = await world.client.get(url, params={"channel": "alipay"}, headers=world.headers(staff("reviewer")))
    assert r.status_code == 403


async def test_only_days_before_today(world: PayWorld) -> None:
    today = world.svc.clock.now().date().isoformat()
    for bad in (today, "2026-13-01", "2099-01-01"):
        r = await run(world, "alipay", bad)
        assert r.status_code == 422, bad
    assert (await run(world, "alipay", "2026-13-01")).json()["code"] in ("reconciliation_date_invalid", "validation_failed")
    assert (await run(world, "alipay", today)).json()["code"] == "reconciliation_date_invalid"
    r = await world.client.get(f"/contribution/v1/staff/reconciliations/{today}", params={"channel": "alipay"},
                               headers=world.headers(OPERATOR, **{"Accept-Language": "en"}))
    assert r.status_code == 422 and r.json()["title"].startswith("Reconciliation date invalid")


async def test_the_daily_job_reconciles_yesterday_once(world: PayWorld) -> None:
    await day_of_business(world, "wechat")
    # The next day at 10:00 in Shanghai (the fixture's hour): both channels, once.
    assert await reconcile_yesterday_once(world.svc.app) == 2
    assert await reconcile_yesterday_once(world.svc.app) == 0
    r = await world.client.get(f"/contribution/v1/staff/reconciliations/{DAY}", params={"channel": "wechat"},
                               headers=world.headers(OPERATOR))
    assert r.json()["counts"]["theirs_only"] == 1 and r.json()["runs"] == 1
    world.settings.reconciliation_hour = 23
    world.svc.clock.advance(days=1)
    assert await reconcile_yesterday_once(world.svc.app) == 0  # not before the bills are published


async def test_the_bills_are_in_the_platforms_layouts(world: PayWorld) -> None:
    p = await opened(world, "alipay")
    await pay_at_platform(world, p)
    q = await opened(world, "wechat", BOB)
    await pay_at_platform(world, q)
    raw = alipay_bill_zip(world.platform, "2021000100000001", DAY)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        [detail] = [n for n in zf.namelist() if "汇总" not in n]
        text = zf.read(detail).decode("gbk")
    assert text.startswith("#支付宝业务明细查询") and "#交易合计：1笔" in text
    [entry] = parse_alipay_bill(raw)
    assert (entry.kind, entry.out_trade_no, entry.amount_fen) == ("trade", p["out_trade_no"], p["amount_fen"])
    bill = wechat_bill_text(world.platform, "1900000001", DAY)
    lines = bill.decode().splitlines()
    assert lines[1].startswith("`") and lines[-2].startswith("总交易单数")
    [w] = parse_wechat_bill(bill)
    assert (w.kind, w.out_trade_no, w.amount_fen, w.status) == ("trade", q["out_trade_no"], q["amount_fen"], "SUCCESS")
