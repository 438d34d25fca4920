"""Daily reconciliation: our payments and refunds of a day against the platform's bill.

对账. For a day (Asia/Shanghai) and a channel the bill is downloaded (Alipay:
`alipay.data.dataservice.bill.downloadurl.query`, then the ZIP of GBK CSV files; WeChat
Pay: `GET /v3/bill/tradebill`, then the gzipped file, its SHA1 checked) and every trade and
refund in it, and every one of ours in the day, is put in one of:

- `matched`: in both, same amount, both settled;
- `ours_only`: we hold it paid (refunded) that day, the bill does not have it;
- `theirs_only`: the bill has it, we do not hold it paid: a trade of ours still open or
  closed here is asked about and, when paid, credited (a notification we never got;
  `resolution` says `credited`); an order unknown to us is left to staff;
- `amount_differs`: in both with different amounts;
- `status_differs`: a refund the bill shows done that we still hold processing, failed or abnormal.

Ours of a day: payments paid (`paid_at`) and refunds succeeded (`finished_at`) within it;
an entry of the bill is looked up by its number whatever its day here. The report for a
day and channel is kept once and replaced by a rerun, items keyed by their number and
paged by it, so a rerun gives the same report (an item healed by an earlier run keeps what
that run found).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI, aware
from services.common.jobs import periodic
from services.common.pagination import keyset_page
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.errors import (
    BillUnavailable,
    ReconciliationDateInvalid,
    ReconciliationNotFound,
)
from services.contribution.payments.models import (
    Payment,
    PaymentChannel,
    PaymentStatus,
    Reconciliation,
    ReconciliationItem,
    ReconciliationOutcome,
    Refund,
    RefundStatus,
)
from services.contribution.payments.money import AmountInvalid, yuan_to_fen
from services.contribution.payments.platforms import PaymentPlatforms, interval_of, platforms_of
from services.contribution.payments.queries import PLATFORM_ERRORS, apply_view, look_up

log = logging.getLogger("socialsec.contribution.payments")

TAKEN = (PaymentStatus.paid, PaymentStatus.refund_pending, PaymentStatus.refunded)
OUTCOMES = [str(o) for o in ReconciliationOutcome]
MAX_BILL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class BillEntry:
    """One line of a platform's bill: a trade paid, or a refund done."""

    kind: str  # trade, refund
    out_trade_no: str
    out_refund_no: str | None
    platform_no: str | None
    amount_fen: int
    status: str  # the platform's: paid / SUCCESS, refund SUCCESS, ...

    @property
    def key(self) -> str:
        return f"refund:{self.out_refund_no}" if self.kind == "refund" else f"trade:{self.out_trade_no}"


class BillUnreadable(ValueError):
    """A bill file not in the platform's layout."""


def _fen(text: str) -> int:
    value = text.strip().lstrip("-").replace(",", "")
    try:
        return yuan_to_fen(value)
    except AmountInvalid as exc:
        raise BillUnreadable(f"amount {text!r}") from exc


# ---- reading the bills -----------------------------------------------------------------------------


def parse_alipay_bill(data: bytes) -> list[BillEntry]:
    """The entries of Alipay's day bill: a ZIP holding GBK CSV files, comment lines starting with '#'."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BillUnreadable("not a ZIP file") from exc
    with zf:
        names = [n for n in zf.namelist() if n.endswith(".csv") and "汇总" not in n]
        if not names:
            raise BillUnreadable("no detail bill in the ZIP")
        text = zf.read(names[0]).decode("gbk")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    need = ["支付宝交易号", "商户订单号", "业务类型", "订单金额（元）", "商家实收（元）", "退款批次号/请求号"]
    missing = [h for h in need if h not in header]
    if missing:
        raise BillUnreadable("columns missing: " + ",".join(missing))
    col = {h: header.index(h) for h in need}
    out: list[BillEntry] = []
    for row in rows[1:]:
        cells = [c.strip() for c in row]
        if len(cells) < len(header):
            continue
        kind = cells[col["业务类型"]]
        if kind == "交易":
            out.append(BillEntry("trade", cells[col["商户订单号"]], None, cells[col["支付宝交易号"]] or None,
                                 _fen(cells[col["订单金额（元）"]]), "TRADE_SUCCESS"))
        elif kind == "退款":
            out.append(BillEntry("refund", cells[col["商户订单号"]], cells[col["退款批次号/请求号"]],
                                 cells[col["支付宝交易号"]] or None, _fen(cells[col["商家实收（元）"]]), "REFUND_SUCCESS"))
    return out


def parse_wechat_bill(data: bytes) -> list[BillEntry]:
    """The entries of WeChat Pay's ALL bill: fields prefixed with a backtick, the summary after the rows."""
    text = data.decode("utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise BillUnreadable("empty bill")
    header = [h.strip() for h in lines[0].split(",")]
    need = ["微信订单号", "商户订单号", "交易状态", "订单金额", "微信退款单号", "商户退款单号", "退款金额", "退款状态"]
    missing = [h for h in need if h not in header]
    if missing:
        raise BillUnreadable("columns missing: " + ",".join(missing))
    col = {h: header.index(h) for h in need}
    out: list[BillEntry] = []
    for line in lines[1:]:
        if line.startswith("总交易单数"):
            break
        cells = [c.strip().lstrip("`") for c in line.split(",")]
        if len(cells) < len(header):
            raise BillUnreadable("short row")
        state = cells[col["交易状态"]]
        if state == "REFUND":
            out.append(BillEntry("refund", cells[col["商户订单号"]], cells[col["商户退款单号"]],
                                 cells[col["微信退款单号"]] or None, _fen(cells[col["退款金额"]]), cells[col["退款状态"]]))
        else:
            out.append(BillEntry("trade", cells[col["商户订单号"]], None, cells[col["微信订单号"]] or None,
                                 _fen(cells[col["订单金额"]]), state))
    return out


async def fetch_bill(platforms: PaymentPlatforms, channel: str, day: date, now: datetime) -> list[BillEntry]:
    """Download and read a day's bill, or raise BillUnavailable."""
    try:
        async with asyncio.timeout(platforms.settings.platform_timeout_seconds * 3):
            if channel == PaymentChannel.alipay:
                url = await alipay.bill_download_url(platforms.alipay, platforms.client, bill_date=day.isoformat(),
                                                     now=now)
                try:
                    resp = await platforms.client.get(url)
                except httpx.HTTPError as exc:
                    raise alipay.AlipayError(f"bill download failed: {type(exc).__name__}") from exc
                if resp.status_code != 200 or len(resp.content) > MAX_BILL_BYTES:
                    raise alipay.AlipayError(f"bill download answered HTTP {resp.status_code}")
                return parse_alipay_bill(resp.content)
            ts = int(now.timestamp())
            link = await wechatpay.trade_bill(platforms.wechat, platforms.client, bill_date=day.isoformat(), now=ts)
            return parse_wechat_bill(await wechatpay.download_bill(platforms.wechat, platforms.client, link, now=ts))
    except (*PLATFORM_ERRORS, BillUnreadable, UnicodeDecodeError) as exc:
        log.warning("%s bill of %s not available: %s", channel, day, exc)
        raise BillUnavailable(params={"channel": channel, "date": day.isoformat()}) from None


# ---- comparing -----------------------------------------------------------------------------------------


@dataclass
class Item:
    key: str
    kind: str
    outcome: str
    out_trade_no: str
    out_refund_no: str | None = None
    platform_no: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    ours_fen: int | None = None
    theirs_fen: int | None = None
    ours_status: str | None = None
    theirs_status: str | None = None
    resolution: str | None = None


@dataclass
class Comparison:
    items: dict[str, Item] = field(default_factory=dict)
    to_heal: list[tuple[str, str, str]] = field(default_factory=list)  # (key, payment id, out_trade_no)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    return start, start + timedelta(days=1)


async def compare(session: AsyncSession, channel: str, day: date, bill: list[BillEntry]) -> Comparison:
    """Put every entry of the bill and every one of ours of the day in its outcome."""
    start, end = day_bounds(day)
    cmp = Comparison()
    trade_nos = {e.out_trade_no[:64] for e in bill if e.kind == "trade"}
    refund_nos = {(e.out_refund_no or "")[:64] for e in bill if e.kind == "refund"}
    payments = {p.out_trade_no: p for p in (await session.execute(
        select(Payment).where(Payment.channel == channel, Payment.out_trade_no.in_(trade_nos))
    )).scalars().all()} if trade_nos else {}
    refunds = {r.out_refund_no: r for r in (await session.execute(
        select(Refund).where(Refund.channel == channel, Refund.out_refund_no.in_(refund_nos))
    )).scalars().all()} if refund_nos else {}
    for e in bill:
        if e.kind == "trade":
            p = payments.get(e.out_trade_no)
            item = Item(e.key, "trade", ReconciliationOutcome.theirs_only, e.out_trade_no, platform_no=e.platform_no,
                        theirs_fen=e.amount_fen, theirs_status=e.status[:20])
            if p is None:
                item.resolution = "unknown_order"
            else:
                item.payment_id, item.ours_status = p.id, p.status
                item.ours_fen = p.paid_amount_fen if p.paid_amount_fen is not None else p.amount_fen
                if p.status in TAKEN:
                    item.outcome = (ReconciliationOutcome.matched if item.ours_fen == e.amount_fen
                                    else ReconciliationOutcome.amount_differs)
                else:
                    cmp.to_heal.append((e.key, p.id, p.out_trade_no))
        else:
            r = refunds.get(e.out_refund_no or "")
            item = Item(e.key, "refund", ReconciliationOutcome.theirs_only, e.out_trade_no,
                        out_refund_no=e.out_refund_no, platform_no=e.platform_no, theirs_fen=e.amount_fen,
                        theirs_status=e.status[:20])
            if r is None:
                item.resolution = "unknown_refund"
            else:
                item.payment_id, item.refund_id, item.ours_fen, item.ours_status = (
                    r.payment_id, r.id, r.amount_fen, r.status)
                if r.amount_fen != e.amount_fen:
                    item.outcome = ReconciliationOutcome.amount_differs
                elif r.status != RefundStatus.succeeded:
                    item.outcome = ReconciliationOutcome.status_differs
                else:
                    item.outcome = ReconciliationOutcome.matched
        cmp.items[item.key] = item
    ours_paid = (await session.execute(
        select(Payment).where(Payment.channel == channel, Payment.status.in_(TAKEN), Payment.paid_at >= start,
                              Payment.paid_at < end)
    )).scalars().all()
    for p in ours_paid:
        key = f"trade:{p.out_trade_no}"
        if key not in cmp.items:
            cmp.items[key] = Item(key, "trade", ReconciliationOutcome.ours_only, p.out_trade_no,
                                  platform_no=p.platform_trade_no, payment_id=p.id,
                                  ours_fen=p.paid_amount_fen if p.paid_amount_fen is not None else p.amount_fen,
                                  ours_status=p.status)
    ours_refunded = (await session.execute(
        select(Refund, Payment.out_trade_no).join(Payment, Payment.id == Refund.payment_id).where(
            Refund.channel == channel, Refund.status == RefundStatus.succeeded, Refund.finished_at >= start,
            Refund.finished_at < end)
    )).all()
    for r, out_trade_no in ours_refunded:
        key = f"refund:{r.out_refund_no}"
        if key not in cmp.items:
            cmp.items[key] = Item(key, "refund", ReconciliationOutcome.ours_only, out_trade_no,
                                  out_refund_no=r.out_refund_no, platform_no=r.platform_refund_no,
                                  payment_id=r.payment_id, refund_id=r.id, ours_fen=r.amount_fen, ours_status=r.status)
    return cmp


def parse_day(text: str, now: datetime) -> date:
    """A reconciliation day: an ISO date before today in Asia/Shanghai, or 422 reconciliation_date_invalid."""
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or day >= now.astimezone(SHANGHAI).date():
        raise ReconciliationDateInvalid(params={"date": text[:20]})
    return day


async def reconcile(app: FastAPI, *, channel: str, day: date, actor: str) -> Reconciliation:
    """Download the day's bill, compare, credit what the platform says was paid, and keep the report."""
    platforms = platforms_of(app)
    now = app.state.clock.now()
    bill = await fetch_bill(platforms, channel, day, now)
    async with app.state.db.sessionmaker() as session:
        cmp = await compare(session, channel, day, bill)
    for key, payment_id, out_trade_no in cmp.to_heal:
        item = cmp.items[key]
        try:
            view = await look_up(platforms, channel, out_trade_no, now)
        except PLATFORM_ERRORS as exc:
            log.warning("query of %s order %s failed during reconciliation: %s", channel, out_trade_no, exc)
            item.resolution = "query_failed"
            continue
        if view is None or not view.paid:
            item.resolution = "not_paid_at_platform"
            continue
        async with app.state.db.sessionmaker() as session, session.begin():
            item.resolution = (await apply_view(session, payment_id, view, now))[:40]
    async with app.state.db.sessionmaker() as session, session.begin():
        return await _keep(session, channel=channel, day=day, cmp=cmp, rows=len(bill), now=now, actor=actor)


async def _keep(session: AsyncSession, *, channel: str, day: date, cmp: Comparison, rows: int, now: datetime,
                actor: str) -> Reconciliation:
    found = (await session.execute(
        select(Reconciliation).where(Reconciliation.bill_date == day.isoformat(), Reconciliation.channel == channel)
        .with_for_update()
    )).scalar_one_or_none()
    if found is None:
        found = Reconciliation(id=str(uuid.uuid4()), bill_date=day.isoformat(), channel=channel, counts={},
                               bill_rows=rows, runs=0, first_run_at=now, last_run_at=now, last_run_by=actor[:200])
        session.add(found)
        await session.flush()
    else:
        earlier = (await session.execute(
            select(ReconciliationItem).where(ReconciliationItem.reconciliation_id == found.id,
                                             ReconciliationItem.resolution.is_not(None))
        )).scalars().all()
        for old in earlier:
            now_item = cmp.items.get(old.item_key)
            # What an earlier run healed is matched now: the report keeps what that run found.
            if now_item is not None and now_item.outcome == ReconciliationOutcome.matched and old.resolution in (
                    "credited", "paid_after_close", "refund_pending"):
                cmp.items[old.item_key] = Item(
                    old.item_key, old.kind, old.outcome, old.out_trade_no, out_refund_no=old.out_refund_no,
                    platform_no=old.platform_no, payment_id=old.payment_id, refund_id=old.refund_id,
                    ours_fen=old.ours_fen, theirs_fen=old.theirs_fen, ours_status=old.ours_status,
                    theirs_status=old.theirs_status, resolution=old.resolution,
                )
        await session.execute(delete(ReconciliationItem).where(ReconciliationItem.reconciliation_id == found.id))
    counts = dict.fromkeys(OUTCOMES, 0)
    for item in cmp.items.values():
        counts[str(item.outcome)] += 1
    session.add_all([
        ReconciliationItem(
            reconciliation_id=found.id, item_key=i.key[:80], kind=i.kind, outcome=str(i.outcome),
            out_trade_no=i.out_trade_no[:64], out_refund_no=(i.out_refund_no or "")[:64] or None,
            platform_no=(i.platform_no or "")[:64] or None, payment_id=i.payment_id, refund_id=i.refund_id,
            ours_fen=i.ours_fen, theirs_fen=i.theirs_fen, ours_status=i.ours_status, theirs_status=i.theirs_status,
            resolution=i.resolution,
        ) for i in sorted(cmp.items.values(), key=lambda i: i.key)
    ])
    found.counts, found.bill_rows, found.runs = counts, rows, found.runs + 1
    found.last_run_at, found.last_run_by = now, actor[:200]
    await session.flush()
    return found


# ---- reading the report ---------------------------------------------------------------------------------


async def report_page(
    session: AsyncSession, *, channel: str, day: date, outcome: str | None, limit: int, cursor: str | None,
) -> tuple[Reconciliation, list[ReconciliationItem], str | None]:
    """The day's report and one keyset page of its items (by number), optionally of one outcome."""
    rec = (await session.execute(
        select(Reconciliation).where(Reconciliation.bill_date == day.isoformat(), Reconciliation.channel == channel)
    )).scalar_one_or_none()
    if rec is None:
        raise ReconciliationNotFound(params={"date": day.isoformat(), "channel": channel})
    stmt = select(ReconciliationItem).where(ReconciliationItem.reconciliation_id == rec.id)
    if outcome is not None:
        stmt = stmt.where(ReconciliationItem.outcome == outcome)
    page = await keyset_page(session, stmt, keys=[ReconciliationItem.item_key], cursor=cursor, limit=limit)
    return rec, page.rows, page.next_cursor


def report_times(rec: Reconciliation) -> dict[str, Any]:
    return {"first_run_at": aware(rec.first_run_at), "last_run_at": aware(rec.last_run_at)}


# ---- the daily job ----------------------------------------------------------------------------------------


async def reconcile_yesterday_once(app: FastAPI) -> int:
    """One pass: from the configured hour on, reconcile yesterday (Asia/Shanghai) on each channel not done yet."""
    platforms = platforms_of(app)
    local = app.state.clock.now().astimezone(SHANGHAI)
    if local.hour < platforms.settings.reconciliation_hour:
        return 0
    day = local.date() - timedelta(days=1)
    done = 0
    for channel in (PaymentChannel.alipay, PaymentChannel.wechat):
        async with app.state.db.sessionmaker() as session:
            exists = (await session.execute(
                select(Reconciliation.id).where(Reconciliation.bill_date == day.isoformat(),
                                                Reconciliation.channel == channel)
            )).first()
        if exists is not None:
            continue
        try:
            await reconcile(app, channel=str(channel), day=day, actor="job:reconciliation")
        except BillUnavailable:
            continue  # tried again next round
        done += 1
    return done


async def daily_reconciliation(app: FastAPI, stop: asyncio.Event) -> None:
    """Runs until stopped: yesterday's bills reconciled once they are published."""
    interval = interval_of(lambda s: s.reconciliation_interval_seconds)
    await periodic("reconciling yesterday's bills", reconcile_yesterday_once, interval)(app, stop)
