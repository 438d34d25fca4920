"""Refunds: money of a payment back to the payer, at most once and never beyond what was taken.

退款. Staff (operator) refund a payment flagged `refund_pending`; staff admin may refund any
paid payment, whose months are then uncredited (declaration cancelled, records removed,
certificate revoked, audited) once the refund succeeds.

Order of things, so a crash can never refund twice:
1. one transaction reserves the amount on the payment (`refunded_fen`, raised by a conditional
   update that never lets it pass the amount taken) and records the refund with its number
   (`out_refund_no`, sent as Alipay's `out_request_no` and WeChat Pay's `out_refund_no`); it is
   committed before anything is asked of the platform;
2. the platform is asked outside any transaction (`alipay.trade.refund`, synchronous;
   WeChat Pay `POST /v3/refund/domestic/refunds`, PROCESSING then a notification);
3. the answer is recorded in a short transaction, by conditional updates (a notification and
   the answer may race: one settles the refund, the other finds it settled).
A refund left `processing` (a crash after step 1, the platform unreachable, WeChat Pay's
notification lost) is asked again by the refund job with the same number: the platforms
answer an old number without moving money again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI, Clock, aware
from services.common.context import request_id_var
from services.common.jobs import periodic
from services.common.models import AuditEntry
from services.common.principal import Principal, StaffRole, StaffRoleRequired
from services.contribution.declarations.claims import release_periods
from services.contribution.events import OUTBOX, PAYMENT_REFUNDED, PaymentRefunded
from services.contribution.models import ContributionRecord, Declaration, DeclarationStatus
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.errors import PaymentNotFound, PaymentNotRefundable, RefundExceedsPayment
from services.contribution.payments.models import (
    Certificate,
    Payment,
    PaymentChannel,
    PaymentNotification,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from services.contribution.payments.money import yuan_to_fen
from services.contribution.payments.platforms import PaymentPlatforms, interval_of, platforms_of
from services.contribution.payments.schemas import RefundOut

log = logging.getLogger("socialsec.contribution.payments")

MAX_RAW = 64 * 1024
BATCH = 50
# Time left to the request that recorded a refund to ask the platform and record its answer,
# past the platform call's own limit; a refund still unanswered then is asked again by the job.
REQUEST_GRACE = timedelta(seconds=60)
# WeChat Pay's refusals that are final (nothing moved); others (SYSTEM_ERROR, FREQUENCY_LIMITED) are retried.
_WECHAT_RETRY = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", ""})
_ALIPAY_RETRY = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"})


def new_out_refund_no(now: datetime) -> str:
    """A refund number: date and time (Asia/Shanghai) and 12 random characters (fits both platforms)."""
    return now.astimezone(SHANGHAI).strftime("RF%y%m%d%H%M%S") + secrets.token_hex(6).upper()


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        id=r.id, payment_id=r.payment_id, channel=PaymentChannel(r.channel), status=RefundStatus(r.status),
        amount_fen=r.amount_fen, out_refund_no=r.out_refund_no, reason=r.reason, uncredit=r.uncredit,
        requested_at=aware(r.requested_at), finished_at=aware(r.finished_at) if r.finished_at else None,
        platform_refund_no=r.platform_refund_no,
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _audit(session: AsyncSession, *, actor: str, actor_kind: str, action: str, target_id: str, now: datetime,
           reason: str, details: dict[str, Any]) -> None:
    session.add(AuditEntry(at=now, actor=actor, actor_kind=actor_kind, action=action, target_type="payment",
                           target_id=target_id, reason=reason[:200], details=details, request_id=request_id_var.get()))


# ---- 1. record ---------------------------------------------------------------------------------------


async def record_refund(
    *, session: AsyncSession, payment_id: str, principal: Principal, reason: str, now: datetime,
) -> Refund:
    """Reserve the payment's amount not yet refunded and record the refund (not committed)."""
    payment = (await session.execute(
        select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if payment is None:
        raise PaymentNotFound()
    if payment.status == PaymentStatus.refund_pending:
        uncredit = False
    elif payment.status == PaymentStatus.paid:
        if not principal.has_role(StaffRole.admin):
            raise StaffRoleRequired(
                detail_zh="已入账的缴费只能由管理员退款", detail_en="Only staff admin may refund a credited payment",
                params={"roles": ["admin"], "status": payment.status},
            )
        uncredit = True
    elif payment.status == PaymentStatus.refunded:
        raise RefundExceedsPayment(params={"refunded_fen": payment.refunded_fen})
    else:
        raise PaymentNotRefundable(params={"status": payment.status})
    taken = payment.paid_amount_fen or payment.amount_fen
    amount = taken - payment.refunded_fen
    if amount <= 0:
        raise RefundExceedsPayment(params={"refunded_fen": payment.refunded_fen, "amount_fen": taken})
    res = await session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.status == payment.status,
                              Payment.refunded_fen + amount <= taken)
        .values(refunded_fen=Payment.refunded_fen + amount).execution_options(synchronize_session=False)
    )
    if _rowcount(res) != 1:
        raise RefundExceedsPayment(params={"amount_fen": taken})
    platforms_grace = REQUEST_GRACE
    refund = Refund(
        id=str(uuid.uuid4()), payment_id=payment.id, channel=payment.channel, out_refund_no=new_out_refund_no(now),
        amount_fen=amount, status=RefundStatus.processing, reason=reason, uncredit=uncredit,
        requested_by=principal.actor_id[:200], requested_at=now, attempts=0, next_attempt_at=now + platforms_grace,
    )
    session.add(refund)
    _audit(session, actor=principal.actor_id, actor_kind="staff", action="payment.refund_requested",
           target_id=payment.id, now=now, reason=reason,
           details={"refund_id": refund.id, "amount_fen": amount, "uncredit": uncredit, "status": payment.status,
                    "out_refund_no": refund.out_refund_no})
    await session.flush()
    return refund


# ---- 2. ask the platform -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the platform said of a refund, in our terms."""

    status: RefundStatus
    platform_status: str | None = None
    platform_refund_no: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Ask:
    """What asking needs, read before the transaction ended."""

    refund_id: str
    channel: str
    out_refund_no: str
    amount_fen: int
    reason: str
    out_trade_no: str
    total_fen: int
    platform_refund_no: str | None


async def ask_platform(platforms: PaymentPlatforms, ask: Ask, now: datetime) -> Answer:
    """Ask for the refund (or again, with the same number); never raises for a platform's answer."""
    try:
        async with asyncio.timeout(platforms.settings.platform_timeout_seconds):
            if ask.channel == PaymentChannel.alipay:
                return await _ask_alipay(platforms, ask, now)
            return await _ask_wechat(platforms, ask, now)
    except alipay.AlipayError as exc:
        if exc.sub_code and exc.sub_code not in _ALIPAY_RETRY:
            return Answer(RefundStatus.failed, platform_status=exc.sub_code[:40], error=str(exc)[:200])
        return Answer(RefundStatus.processing, error=str(exc)[:200])
    except wechatpay.WechatPayRefused as exc:
        if 400 <= exc.status < 500 and exc.code not in _WECHAT_RETRY:
            return Answer(RefundStatus.failed, platform_status=exc.code[:40], error=str(exc)[:200])
        return Answer(RefundStatus.processing, error=str(exc)[:200])
    except (wechatpay.WechatPayError, TimeoutError) as exc:
        return Answer(RefundStatus.processing, error=(str(exc) or type(exc).__name__)[:200])


async def _ask_alipay(platforms: PaymentPlatforms, ask: Ask, now: datetime) -> Answer:
    ans = await alipay.refund(
        platforms.alipay, platforms.client, out_trade_no=ask.out_trade_no, amount_fen=ask.amount_fen,
        reason=ask.reason, out_request_no=ask.out_refund_no, now=now,
    )
    if ans.fund_change:
        return Answer(RefundStatus.succeeded, platform_status="fund_change:Y", platform_refund_no=ask.out_refund_no)
    # No money moved by this call: the number was refunded before (a retry), or not at all. Ask.
    refunded = await alipay.refund_query(
        platforms.alipay, platforms.client, out_trade_no=ask.out_trade_no, out_request_no=ask.out_refund_no, now=now,
    )
    if refunded is not None and yuan_to_fen(refunded) == ask.amount_fen:
        return Answer(RefundStatus.succeeded, platform_status="REFUND_SUCCESS", platform_refund_no=ask.out_refund_no)
    return Answer(RefundStatus.processing, platform_status="fund_change:N")


_WECHAT_STATUS = {"SUCCESS": RefundStatus.succeeded, "CLOSED": RefundStatus.failed, "ABNORMAL": RefundStatus.abnormal,
                  "PROCESSING": RefundStatus.processing}


async def _ask_wechat(platforms: PaymentPlatforms, ask: Ask, now: datetime) -> Answer:
    cfg, ts = platforms.wechat, int(now.timestamp())
    state: wechatpay.RefundState | None = None
    if ask.platform_refund_no:
        state = await wechatpay.query_refund(cfg, platforms.client, out_refund_no=ask.out_refund_no, now=ts)
    if state is None:
        state = await wechatpay.create_refund(
            cfg, platforms.client, out_trade_no=ask.out_trade_no, out_refund_no=ask.out_refund_no,
            refund_fen=ask.amount_fen, total_fen=ask.total_fen, reason=ask.reason,
            notify_url=platforms.settings.wechatpay_refund_notify_url, now=ts,
        )
    status = _WECHAT_STATUS.get(state.status, RefundStatus.processing)
    return Answer(status, platform_status=state.status[:40], platform_refund_no=state.refund_id)


async def _ask_of(session: AsyncSession, refund_id: str) -> Ask:
    r = await session.get(Refund, refund_id, populate_existing=True)
    assert r is not None
    p = await session.get(Payment, r.payment_id)
    assert p is not None
    return Ask(refund_id=r.id, channel=r.channel, out_refund_no=r.out_refund_no, amount_fen=r.amount_fen,
               reason=r.reason, out_trade_no=p.out_trade_no, total_fen=p.paid_amount_fen or p.amount_fen,
               platform_refund_no=r.platform_refund_no)


# ---- 3. record the answer ------------------------------------------------------------------------------------


async def settle(session: AsyncSession, platforms: PaymentPlatforms, refund_id: str, answer: Answer,
                 now: datetime) -> str:
    """Record what the platform said; the refund's status afterwards."""
    common: dict[str, Any] = {"attempts": Refund.attempts + 1}
    if answer.platform_status:
        common["platform_status"] = answer.platform_status
    if answer.platform_refund_no:
        common["platform_refund_no"] = answer.platform_refund_no[:64]
    if answer.error:
        common["last_error"] = answer.error[:200]
    if answer.status == RefundStatus.processing:
        await session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status == RefundStatus.processing)
            .values(**common, next_attempt_at=now + timedelta(seconds=platforms.settings.refund_retry_seconds))
            .execution_options(synchronize_session=False)
        )
        return await _status(session, refund_id)
    res = await session.execute(
        update(Refund).where(Refund.id == refund_id, Refund.status == RefundStatus.processing)
        .values(**common, status=answer.status, finished_at=now, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(res) != 1:
        return await _status(session, refund_id)  # settled by another answer
    refund = await session.get(Refund, refund_id, populate_existing=True)
    assert refund is not None
    if answer.status == RefundStatus.succeeded:
        await _succeeded(session, refund, now)
    elif answer.status == RefundStatus.failed:
        # Nothing moved: the amount is free again.
        await session.execute(
            update(Payment).where(Payment.id == refund.payment_id)
            .values(refunded_fen=Payment.refunded_fen - refund.amount_fen).execution_options(synchronize_session=False)
        )
        _audit(session, actor=f"platform:{refund.channel}", actor_kind="platform", action="payment.refund_failed",
               target_id=refund.payment_id, now=now, reason=answer.platform_status or "failed",
               details={"refund_id": refund.id, "amount_fen": refund.amount_fen, "error": answer.error})
    else:
        log.error("refund %s of payment %s abnormal at %s: staff must act at the platform", refund.id,
                  refund.payment_id, refund.channel)
        _audit(session, actor=f"platform:{refund.channel}", actor_kind="platform", action="payment.refund_abnormal",
               target_id=refund.payment_id, now=now, reason="abnormal",
               details={"refund_id": refund.id, "amount_fen": refund.amount_fen})
    return str(answer.status)


async def _status(session: AsyncSession, refund_id: str) -> str:
    return str((await session.execute(select(Refund.status).where(Refund.id == refund_id))).scalar_one())


async def _succeeded(session: AsyncSession, refund: Refund, now: datetime) -> None:
    payment = await session.get(Payment, refund.payment_id, populate_existing=True)
    assert payment is not None
    taken = payment.paid_amount_fen or payment.amount_fen
    total = int((await session.execute(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.payment_id == payment.id, Refund.status == RefundStatus.succeeded)
    )).scalar_one())
    uncredited = False
    if refund.uncredit:
        uncredited = await uncredit(session, payment, now, reason=refund.reason)
    if total >= taken:
        await session.execute(
            update(Payment).where(Payment.id == payment.id).values(status=PaymentStatus.refunded)
            .execution_options(synchronize_session=False)
        )
    decl = await session.get(Declaration, payment.declaration_id)
    months = list(decl.months or ([str(decl.year)] if decl.year else [])) if decl is not None else []
    OUTBOX.emit(session, type=PAYMENT_REFUNDED, subject=payment.id, time=now, data=PaymentRefunded(
        payment_id=payment.id, declaration_id=payment.declaration_id, refund_id=refund.id, channel=payment.channel,
        amount_fen=refund.amount_fen, refunded_total_fen=total, payment_amount_fen=taken, reason=refund.reason,
        uncredited=uncredited, months=months, refunded_at=now,
    ))
    _audit(session, actor=f"platform:{refund.channel}", actor_kind="platform", action="payment.refunded",
           target_id=payment.id, now=now, reason=refund.reason,
           details={"refund_id": refund.id, "amount_fen": refund.amount_fen, "refunded_total_fen": total,
                    "uncredited": uncredited})


async def uncredit(session: AsyncSession, payment: Payment, now: datetime, *, reason: str) -> bool:
    """Take back what a refunded payment credited: its records, its declaration (cancelled, months freed), its
    certificate (revoked). False when the payment had credited nothing (the declaration was paid otherwise)."""
    decl = (await session.execute(
        select(Declaration).where(Declaration.id == payment.declaration_id).with_for_update()
    )).scalar_one_or_none()
    if decl is None or decl.status != DeclarationStatus.paid or decl.paid_payment_id != payment.id:
        return False
    removed = _rowcount(await session.execute(
        delete(ContributionRecord).where(ContributionRecord.payment_id == payment.id)
        .execution_options(synchronize_session=False)
    ))
    decl.status = DeclarationStatus.cancelled
    decl.closed_at = now
    await release_periods(session=session, declaration_id=decl.id)
    if payment.certificate_code:
        await session.execute(
            update(Certificate).where(Certificate.code == payment.certificate_code, Certificate.revoked_at.is_(None))
            .values(revoked_at=now).execution_options(synchronize_session=False)
        )
    session.add(AuditEntry(
        at=now, actor=f"platform:{payment.channel}", actor_kind="platform", action="declaration.uncredited",
        target_type="declaration", target_id=decl.id, reason=reason[:200],
        details={"payment_id": payment.id, "records_removed": removed, "months": list(decl.months or [])},
        request_id=request_id_var.get(),
    ))
    await session.flush()
    return True


# ---- the route, the job, the notification ---------------------------------------------------------------------


async def request_refund(
    *, session: AsyncSession, platforms: PaymentPlatforms, payment_id: str, principal: Principal, reason: str,
    clock: Clock,
) -> dict[str, Any]:
    """Record the refund (committed), ask the platform outside any transaction, record its answer."""
    refund = await record_refund(session=session, payment_id=payment_id, principal=principal, reason=reason,
                                 now=clock.now())
    ask = await _ask_of(session, refund.id)
    await session.commit()
    answer = await ask_platform(platforms, ask, clock.now())
    await settle(session, platforms, refund.id, answer, clock.now())
    await session.flush()
    reloaded = await session.get(Refund, refund.id, populate_existing=True)
    assert reloaded is not None
    return refund_out(reloaded).model_dump(mode="json", exclude_none=True)


async def retry_refunds_once(app: FastAPI) -> int:
    """One pass: ask again about refunds still processing whose time came (same number); how many settled."""
    platforms = platforms_of(app)
    now = app.state.clock.now()
    async with app.state.db.sessionmaker() as session:
        ids = list((await session.execute(
            select(Refund.id).where(Refund.status == RefundStatus.processing, Refund.next_attempt_at <= now)
            .order_by(Refund.next_attempt_at, Refund.id).limit(BATCH)
        )).scalars().all())
        asks = [await _ask_of(session, rid) for rid in ids]
    settled = 0
    for ask in asks:
        answer = await ask_platform(platforms, ask, now)
        async with app.state.db.sessionmaker() as session, session.begin():
            if await settle(session, platforms, ask.refund_id, answer, now) != RefundStatus.processing:
                settled += 1
    return settled


async def refund_retrier(app: FastAPI, stop: asyncio.Event) -> None:
    """Runs until stopped: settles refunds left processing (crash, platform away, notification lost)."""
    interval = interval_of(lambda s: s.refund_interval_seconds)
    await periodic("settling refunds", retry_refunds_once, interval)(app, stop)


async def handle_wechat_refund_notification(
    *, session: AsyncSession, platforms: PaymentPlatforms, headers: Mapping[str, str], body: bytes, now: datetime,
) -> tuple[int, str | None]:
    """Verify, decrypt and apply a WeChat Pay refund notification; (204, None) when handled, else (4xx, reason)."""
    raw = body[:MAX_RAW].decode("utf-8", errors="replace")
    rec: dict[str, Any] = {"channel": "wechat", "received_at": now, "raw": raw, "headers": wechatpay.kept_headers(headers)}
    cfg = platforms.wechat
    try:
        n = wechatpay.parse_refund_notification(cfg, headers=headers, body=body, now=int(now.timestamp()))
    except wechatpay.NotificationRejected as exc:
        log.warning("wechatpay refund notification refused: %s", exc.reason)
        session.add(PaymentNotification(verified=False, outcome=f"refund_rejected:{exc.reason}"[:40], **rec))
        return wechatpay.rejection_status(exc.reason), exc.reason
    rec.update(out_trade_no=n.out_trade_no[:64], platform_trade_no=(n.refund_id or "")[:64] or None,
               notify_id=n.notification_id[:128] or None, trade_status=f"REFUND.{n.refund_status}"[:40],
               amount_fen=n.refund_fen)
    if n.mchid != cfg.mchid:
        session.add(PaymentNotification(verified=True, outcome="not_ours", **rec))
        return 400, "not_ours"
    refund = (await session.execute(
        select(Refund).where(Refund.out_refund_no == n.out_refund_no[:64], Refund.channel == PaymentChannel.wechat)
    )).scalar_one_or_none()
    if refund is None:
        session.add(PaymentNotification(verified=True, outcome="unknown_refund", **rec))
        return 404, "unknown_refund"
    rec["payment_id"] = refund.payment_id
    if n.refund_fen is not None and n.refund_fen != refund.amount_fen:
        log.error("refund %s notified with %s fen, asked %s", refund.id, n.refund_fen, refund.amount_fen)
        _audit(session, actor="platform:wechat", actor_kind="platform", action="payment.refund_amount_mismatch",
               target_id=refund.payment_id, now=now, reason="amount_mismatch",
               details={"refund_id": refund.id, "expected_fen": refund.amount_fen, "notified_fen": n.refund_fen})
        session.add(PaymentNotification(verified=True, outcome="refund_amount_mismatch", **rec))
        return 400, "amount_mismatch"
    found = _WECHAT_STATUS.get(n.refund_status, RefundStatus.processing)
    if found == RefundStatus.processing:
        outcome = "refund_ignored"
    else:
        before = refund.status
        after = await settle(session, platforms, refund.id, Answer(found, platform_status=n.refund_status[:40],
                                                                   platform_refund_no=n.refund_id), now)
        outcome = f"refund_{after}" if before == RefundStatus.processing else "refund_duplicate"
    session.add(PaymentNotification(verified=True, outcome=outcome[:40], **rec))
    return 204, None
