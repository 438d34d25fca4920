"""Asking the platform before giving a payment up: lost notifications healed, closing at the platform.

A payment still open `CONTRIBUTION_PAYMENT_QUERY_AFTER_SECONDS` after it was opened has had no
notification: the platform is asked (`alipay.trade.query`; WeChat Pay `GET
/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`), again after doubling waits, and
an answer "paid" is credited exactly as a verified notification would be (the same
conditional update, the same amount check, a line in the notification log with outcome and
`query` as its source). A payment past its time is closed at the platform first
(`alipay.trade.close`; WeChat Pay `POST .../out-trade-no/{out_trade_no}/close`) and only then
here, which frees the declaration: once we let go of it, it can no longer be paid. When the
platform refuses to close because it was paid meanwhile, the payment is credited instead;
when the platform cannot be reached, the payment stays open until a later pass.

No transaction is held across a platform call: each pass reads what is due, asks the
platform, and applies each answer in its own short transaction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.jobs import periodic
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.closing import close_payment, pending_abandoned_before
from services.contribution.payments.crediting import alert, credit_payment
from services.contribution.payments.models import Payment, PaymentChannel, PaymentStatus
from services.contribution.payments.money import AmountInvalid, yuan_to_fen
from services.contribution.payments.notifications import platform_time, record_notification
from services.contribution.payments.platforms import PaymentPlatforms, interval_of, platforms_of
from services.contribution.payments.reads import reload_payment

log = logging.getLogger("socialsec.contribution.payments")

BATCH = 100
PLATFORM_ERRORS = (alipay.AlipayError, wechatpay.WechatPayError, TimeoutError)


@dataclass(frozen=True)
class PlatformView:
    """What a platform says of one order, in our terms."""

    status: str  # the platform's own: TRADE_SUCCESS, WAIT_BUYER_PAY, SUCCESS, NOTPAY, CLOSED, ...
    paid: bool
    closed: bool
    platform_trade_no: str | None
    amount_fen: int | None
    paid_at: str | None


@dataclass(frozen=True)
class Due:
    id: str
    channel: str
    out_trade_no: str


async def look_up(platforms: PaymentPlatforms, channel: str, out_trade_no: str, now: datetime) -> PlatformView | None:
    """Ask the platform about one order (within the platform timeout); None when it has no such order."""
    async with asyncio.timeout(platforms.settings.platform_timeout_seconds):
        if channel == PaymentChannel.alipay:
            t = await alipay.query_trade(platforms.alipay, platforms.client, out_trade_no=out_trade_no, now=now)
            if t is None:
                return None
            try:
                amount: int | None = yuan_to_fen(t.total_amount)
            except AmountInvalid:
                amount = None
            return PlatformView(status=t.trade_status, paid=t.paid, closed=t.closed, platform_trade_no=t.trade_no,
                                amount_fen=amount, paid_at=t.send_pay_date)
        o = await wechatpay.query_order(platforms.wechat, platforms.client, out_trade_no=out_trade_no,
                                        now=int(now.timestamp()))
        if o is None:
            return None
        return PlatformView(status=o.trade_state, paid=o.paid, closed=o.closed, platform_trade_no=o.transaction_id,
                            amount_fen=o.total_fen, paid_at=o.success_time)


async def close_at_platform(platforms: PaymentPlatforms, channel: str, out_trade_no: str, now: datetime) -> bool:
    """Close an order at its platform: True when closed now, False when the platform has no such order.

    A refusal (paid meanwhile, or already closed) raises the platform's error: the caller asks then.
    """
    async with asyncio.timeout(platforms.settings.platform_timeout_seconds):
        if channel == PaymentChannel.alipay:
            return await alipay.close_trade(platforms.alipay, platforms.client, out_trade_no=out_trade_no, now=now)
        return await wechatpay.close_order(platforms.wechat, platforms.client, out_trade_no=out_trade_no,
                                           now=int(now.timestamp()))


async def apply_view(session: AsyncSession, payment_id: str, view: PlatformView, now: datetime) -> str:
    """Apply what the platform said as a verified notification would be applied; the outcome."""
    payment = await reload_payment(session, payment_id)
    rec: dict[str, Any] = {
        "channel": payment.channel, "now": now, "raw": f"query:{view.status}"[:200], "out_trade_no": payment.out_trade_no,
        "platform_trade_no": (view.platform_trade_no or "")[:64] or None, "trade_status": view.status[:40],
        "amount_fen": view.amount_fen, "payment_id": payment.id, "notify_id": "query",
    }
    if view.paid:
        if view.amount_fen != payment.amount_fen:
            alert(session, channel=payment.channel, payment=payment, now=now, reason="amount_mismatch",
                   details={"expected_fen": payment.amount_fen, "queried_fen": view.amount_fen, "source": "query"})
            record_notification(session, verified=True, outcome="amount_mismatch", **rec)
            return "amount_mismatch"
        fmt = "%Y-%m-%d %H:%M:%S" if payment.channel == PaymentChannel.alipay else None
        outcome = await credit_payment(
            session=session, payment_id=payment.id, platform_trade_no=view.platform_trade_no,
            paid_amount_fen=view.amount_fen, paid_at=platform_time(view.paid_at, now, fmt), now=now,
        )
    elif view.closed:
        outcome = "closed" if await close_payment(session, payment.id, now) else "ignored"
    else:
        return "waiting"
    record_notification(session, verified=True, outcome=outcome, **rec)
    return outcome


def next_wait(platforms: PaymentPlatforms, attempts: int) -> timedelta:
    """Doubling waits between queries of one payment, from the first delay up to the maximum."""
    s = platforms.settings
    return timedelta(seconds=min(s.payment_query_after_seconds * (2 ** min(attempts, 20)), s.payment_query_max_wait_seconds))


async def query_open_payments_once(app: FastAPI) -> int:
    """One pass: ask the platform about open payments left without a notification; how many were credited."""
    platforms = platforms_of(app)
    now = app.state.clock.now()
    after = now - timedelta(seconds=platforms.settings.payment_query_after_seconds)
    async with app.state.db.sessionmaker() as session:
        rows = (await session.execute(
            select(Payment.id, Payment.channel, Payment.out_trade_no).where(
                Payment.status == PaymentStatus.open, Payment.opened_at <= after, Payment.closes_at > now,
                or_(Payment.platform_trade_no.is_not(None), Payment.prepay_id.is_not(None)),
                or_(Payment.next_query_at.is_(None), Payment.next_query_at <= now),
            ).order_by(Payment.opened_at, Payment.id).limit(BATCH)
        )).all()
    credited = 0
    for pid, channel, out_trade_no in rows:
        try:
            view = await look_up(platforms, channel, out_trade_no, now)
        except PLATFORM_ERRORS as exc:
            log.warning("query of %s order %s failed: %s", channel, out_trade_no, exc)
            view = None
        async with app.state.db.sessionmaker() as session, session.begin():
            outcome = await apply_view(session, pid, view, now) if view is not None else "waiting"
            if outcome == "waiting":
                await session.execute(
                    update(Payment).where(Payment.id == pid, Payment.status == PaymentStatus.open)
                    .values(query_attempts=Payment.query_attempts + 1,
                            next_query_at=now + next_wait(platforms, await _attempts(session, pid)))
                    .execution_options(synchronize_session=False)
                )
            elif outcome in ("credited", "paid_after_close", "refund_pending"):
                credited += 1
    return credited


async def _attempts(session: AsyncSession, payment_id: str) -> int:
    return int((await session.execute(select(Payment.query_attempts).where(Payment.id == payment_id))).scalar_one())


async def close_due_payments_once(app: FastAPI) -> int:
    """One pass: close at the platform, then here, every open payment past its time and those a crash left
    waiting for the platform's answer; how many were closed. A payment paid meanwhile is credited instead."""
    platforms = platforms_of(app)
    now = app.state.clock.now()
    pending_before = pending_abandoned_before(platforms, now)
    async with app.state.db.sessionmaker() as session:
        due = [Due(*row) for row in (await session.execute(
            select(Payment.id, Payment.channel, Payment.out_trade_no).where(
                Payment.status == PaymentStatus.open,
                or_(Payment.closes_at <= now, and_(Payment.opened_at <= pending_before,
                                                   Payment.platform_trade_no.is_(None), Payment.prepay_id.is_(None))),
            ).order_by(Payment.closes_at, Payment.id).limit(BATCH * 5)
        )).all()]
    closed = 0
    for d in due:
        closed += await _close_one(app, platforms, d, now)
    return closed


async def _close_one(app: FastAPI, platforms: PaymentPlatforms, due: Due, now: datetime) -> int:
    try:
        await close_at_platform(platforms, due.channel, due.out_trade_no, now)
    except PLATFORM_ERRORS as exc:
        refused = isinstance(exc, wechatpay.WechatPayRefused) or (
            isinstance(exc, alipay.AlipayError) and exc.sub_code is not None)
        if not refused:
            log.warning("closing %s order %s at the platform failed, kept open: %s", due.channel, due.out_trade_no, exc)
            return 0
        # Refused: paid meanwhile, or already closed there. Ask which.
        try:
            view = await look_up(platforms, due.channel, due.out_trade_no, now)
        except PLATFORM_ERRORS as exc2:
            log.warning("query of %s order %s failed, kept open: %s", due.channel, due.out_trade_no, exc2)
            return 0
        if view is not None and not view.closed:
            async with app.state.db.sessionmaker() as session, session.begin():
                outcome = await apply_view(session, due.id, view, now)
            if outcome != "waiting":
                return 0
            log.warning("%s order %s could not be closed and is not paid, kept open", due.channel, due.out_trade_no)
            return 0
    async with app.state.db.sessionmaker() as session, session.begin():
        return 1 if await close_payment(session, due.id, now) else 0


async def payment_querier(app: FastAPI, stop: asyncio.Event) -> None:
    """Runs until stopped: asks the platforms about payments left without a notification."""
    interval = interval_of(lambda s: s.payment_query_interval_seconds)
    await periodic("querying open payments", query_open_payments_once, interval)(app, stop)

