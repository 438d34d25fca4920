"""Paying declarations: opening payments, crediting verified notifications, closing, certificates.

缴费支付. Money moves only on a verified platform notification, and exactly once:
the conditional update `... WHERE status = 'open'` is the single point where a
payment becomes paid, so concurrent copies of one notification credit once; a
unique constraint keeps one open payment per declaration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI, Clock, aware
from services.common.context import request_id_var
from services.common.models import AuditEntry
from services.common.pagination import CursorInvalid, decode_cursor, encode_cursor
from services.common.pii import mask_id_number, mask_name
from services.common.principal import Principal, PrincipalKind
from services.contribution.errors import (
    DeclarationAlreadyPaid,
    DeclarationNotFound,
    DeclarationStateConflict,
    MonthAlreadyDeclared,
)
from services.contribution.events import OUTBOX, PAYMENT_REFUND_PENDING, PaymentRefundPending
from services.contribution.models import Declaration, DeclarationLine, DeclarationStatus, KnownPerson
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.errors import (
    CertificateNotAvailable,
    CertificateNotFound,
    ChannelNotAvailable,
    NothingToPay,
    PaymentAlreadyOpen,
    PaymentNotFound,
    PaymentPlatformUnavailable,
)
from services.contribution.payments.models import (
    Certificate,
    Payment,
    PaymentChannel,
    PaymentNotification,
    PaymentStatus,
)
from services.contribution.payments.money import AmountInvalid, yuan_to_fen
from services.contribution.payments.platforms import PaymentPlatforms
from services.contribution.payments.refund_views import refund_summaries
from services.contribution.payments.schemas import CertificateCheck, PaymentOut, PaymentRecord
from services.contribution.schemas import PaymentSummary
from services.contribution.service import (
    get_payable_declaration,
    lines_of,
    mark_declaration_paid,
    register_payment_loader,
)

log = logging.getLogger("socialsec.contribution.payments")

MAX_RAW = 64 * 1024
CATEGORY_ZH = {"flexible": "灵活就业人员", "resident": "城乡居民", "employee": "职工"}
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{16,40}")


# ---- the declaration's payments list ------------------------------------------------------


async def payment_summaries(session: AsyncSession, declaration_ids: list[str]) -> dict[str, list[PaymentSummary]]:
    """Each declaration's payments, oldest first (shown in the declaration answer)."""
    out: dict[str, list[PaymentSummary]] = {}
    if not declaration_ids:
        return out
    rows = (
        await session.execute(
            select(Payment).where(Payment.declaration_id.in_(declaration_ids)).order_by(Payment.opened_at, Payment.id)
        )
    ).scalars().all()
    refunds = await refund_summaries(session, [p.id for p in rows])
    for p in rows:
        out.setdefault(p.declaration_id, []).append(
            PaymentSummary(id=p.id, channel=p.channel, status=p.status, certificate_code=p.certificate_code,
                           refunds=refunds.get(p.id, []))
        )
    return out


register_payment_loader(payment_summaries)


# ---- opening --------------------------------------------------------------------------------


def new_out_trade_no(now: datetime) -> str:
    """A merchant order number: date and time (Asia/Shanghai) and 12 random characters (fits both platforms)."""
    return now.astimezone(SHANGHAI).strftime("SS%y%m%d%H%M%S") + secrets.token_hex(6).upper()


def new_certificate_code() -> str:
    """An unguessable verification code (144 random bits)."""
    return secrets.token_urlsafe(18)


def _subject(decl: Declaration) -> str:
    months = list(decl.months or [])
    if decl.year and not months:
        span = f"{decl.year}年度"
    elif len(months) == 1:
        span = months[0]
    elif months:
        span = f"{months[0]}至{months[-1]}"
    else:
        span = ""
    return f"社会保险费 {span}".strip()[:120]


async def _holder(session: AsyncSession, principal: Principal, decl: Declaration) -> tuple[str | None, str | None]:
    """Who the certificate will name: the person paying, the unit, or the person an agency pays for."""
    if principal.kind == PrincipalKind.citizen:
        return principal.name, mask_id_number(principal.id_number)
    if principal.kind == PrincipalKind.employer:
        return principal.unit_name, decl.credit_code
    known = None
    if decl.person_key:
        known = (await session.execute(select(KnownPerson).where(KnownPerson.id_hash == decl.person_key))).scalars().first()
    return None, known.id_masked if known else None


def _check_channel(principal: Principal, channel: PaymentChannel) -> None:
    platform = (principal.platform or "").lower()
    if platform in ("alipay", "wechat") and platform != channel:
        raise ChannelNotAvailable(
            detail_zh="支付宝小程序内请使用支付宝支付，微信小程序内请使用微信支付",
            detail_en="Pay with Alipay inside Alipay and with WeChat Pay inside WeChat",
            params={"platform": platform, "allowed": [platform]},
        )


def payment_answer(platforms: PaymentPlatforms, payment: Payment, now: datetime) -> dict[str, Any]:
    """The opened payment and the channel's parameters for the mini-program's pay sheet."""
    out = PaymentOut(
        id=payment.id, declaration_id=payment.declaration_id, channel=PaymentChannel(payment.channel),
        status=PaymentStatus(payment.status), amount_fen=payment.amount_fen, out_trade_no=payment.out_trade_no,
        opened_at=aware(payment.opened_at), closes_at=aware(payment.closes_at),
    )
    if payment.channel == PaymentChannel.alipay:
        out.trade_no = payment.platform_trade_no
    else:
        assert payment.prepay_id
        params = wechatpay.mini_program_params(
            appid=platforms.wechat.appid, prepay_id=payment.prepay_id, key=platforms.wechat.merchant_key,
            timestamp=int(now.timestamp()),
        )
        for k, v in params.items():
            setattr(out, k, v)
    return out.model_dump(mode="json", exclude_none=True)


async def _open_payment_of(session: AsyncSession, declaration_id: str) -> Payment | None:
    stmt = select(Payment).where(Payment.open_declaration_id == declaration_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().first()


# Time left to a request that created a payment at the platform to record the answer, past the
# platform call's own limit; a payment still unanswered then was left by a crash.
PENDING_GRACE = timedelta(seconds=60)
# How often a request waiting for another's platform call looks at the payment again.
WAIT_POLL_SECONDS = 0.1


def is_pending(payment: Payment) -> bool:
    """Open, committed, but the platform's answer (Alipay's trade_no, WeChat Pay's prepay_id) not recorded yet."""
    return payment.status == PaymentStatus.open and payment.platform_trade_no is None and payment.prepay_id is None


def pending_abandoned_before(platforms: PaymentPlatforms, now: datetime) -> datetime:
    """A pending payment opened before this instant was left by a request that never came back."""
    return now - timedelta(seconds=platforms.settings.platform_timeout_seconds) - PENDING_GRACE


@dataclass
class _Opening:
    """What the first transaction of an opening decided: an answer, a payment to create, or one to wait for."""

    answer: dict[str, Any] | None = None
    created: Payment | None = None
    wait_for: str | None = None


async def _reuse_or_refuse(
    session: AsyncSession, platforms: PaymentPlatforms, existing: Payment, channel: PaymentChannel, now: datetime
) -> _Opening | None:
    """An open payment on the same channel is answered again (once the platform has answered it); on another
    channel the caller must wait. None when the payment was closed (past its time, or left by a crash)."""
    if aware(existing.closes_at) <= now or (
        is_pending(existing) and aware(existing.opened_at) <= pending_abandoned_before(platforms, now)
    ):
        await _close(session, existing.id, now)
        return None
    if existing.channel == channel:
        if is_pending(existing):
            return _Opening(wait_for=existing.id)
        return _Opening(answer=payment_answer(platforms, existing, now))
    raise PaymentAlreadyOpen(params={"payment_id": existing.id, "channel": existing.channel,
                                     "closes_at": aware(existing.closes_at).isoformat()})


async def open_payment(
    *, session: AsyncSession, platforms: PaymentPlatforms, declaration_id: str, principal: Principal,
    channel: PaymentChannel, clock: Clock,
) -> dict[str, Any]:
    """Open a payment of the declaration's total on a platform (at most one open per declaration).

    No transaction stays open across the call to the platform: the pending payment is
    committed first, with everything else the request's session holds (the caller's
    Idempotency-Key claim), the platform is called outside any transaction, and its answer
    is recorded in a second short transaction (the request's, committed when the route
    returns). A refusal by the platform closes the payment, so the declaration is free
    again, and answers `payment_platform_unavailable` (its `keeps_changes` commits the
    closing and releases the key). A crash between the two leaves a pending payment that
    the closing job closes (`close_expired_payments`).
    """
    now = clock.now()
    opening = await _first_step(
        session=session, platforms=platforms, declaration_id=declaration_id, principal=principal, channel=channel,
        now=now,
    )
    if opening.answer is not None:
        return opening.answer
    await session.commit()
    if opening.wait_for is not None:
        return await _wait_for_opening(session=session, platforms=platforms, payment_id=opening.wait_for, clock=clock)
    payment = opening.created
    assert payment is not None
    try:
        trade_no, prepay_id = await _create_at_platform(platforms, payment, principal, channel, now)
    except (alipay.AlipayError, wechatpay.WechatPayError, TimeoutError) as exc:
        log.warning("payment platform refused %s order %s: %s", channel, payment.out_trade_no, exc)
        await _close(session, payment.id, clock.now())
        raise PaymentPlatformUnavailable(params={"channel": str(channel)}) from None
    res = await session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.status == PaymentStatus.open)
        .values(platform_trade_no=trade_no, prepay_id=prepay_id).execution_options(synchronize_session=False)
    )
    if _rowcount(res) != 1:
        # Closed meanwhile (the answer came after the payment was given up as left by a crash).
        log.warning("payment %s closed before the platform's answer was recorded", payment.id)
        raise PaymentPlatformUnavailable(params={"channel": str(channel)})
    return payment_answer(platforms, await _reload(session, payment.id), now)


async def _first_step(
    *, session: AsyncSession, platforms: PaymentPlatforms, declaration_id: str, principal: Principal,
    channel: PaymentChannel, now: datetime,
) -> _Opening:
    """Check the declaration, answer an open payment again, or add a pending one (not committed)."""
    decl = await get_payable_declaration(
        session=session, declaration_id=declaration_id, principal=principal, today=now.astimezone(SHANGHAI).date()
    )
    if decl.status == DeclarationStatus.paid:
        raise DeclarationAlreadyPaid(params={"status": decl.status})
    if decl.status != DeclarationStatus.awaiting_payment or (decl.expires_at and aware(decl.expires_at) <= now):
        raise DeclarationStateConflict(
            detail_zh="只有待缴费的申报可以支付，请先确认申报", detail_en="Only a declaration awaiting payment can be paid",
            params={"status": decl.status},
        )
    if decl.total_fen <= 0:
        raise NothingToPay()
    _check_channel(principal, channel)
    existing = await _open_payment_of(session, decl.id)
    if existing is not None:
        found = await _reuse_or_refuse(session, platforms, existing, channel, now)
        if found is not None:
            return found
    timeout = timedelta(minutes=platforms.settings.payment_timeout_minutes)
    if decl.expires_at is not None:
        timeout = min(timeout, aware(decl.expires_at) - now)
    name, id_masked = await _holder(session, principal, decl)
    payment = Payment(
        id=str(uuid.uuid4()), declaration_id=decl.id, open_declaration_id=decl.id, channel=str(channel),
        out_trade_no=new_out_trade_no(now), amount_fen=decl.total_fen, status=PaymentStatus.open,
        subject=_subject(decl), payer_ref=principal.sub[:128], opened_by=principal.actor_id, opened_at=now,
        closes_at=now + timeout, holder_name=name, holder_id_masked=id_masked,
    )
    try:
        async with session.begin_nested():
            session.add(payment)
            await session.flush()
    except IntegrityError:
        # Another request opened one at the same moment: the database decided.
        existing = await _open_payment_of(session, decl.id)
        if existing is None:
            raise
        found = await _reuse_or_refuse(session, platforms, existing, channel, now)
        if found is None:
            raise PaymentAlreadyOpen(params={"payment_id": existing.id}) from None
        return found
    return _Opening(created=payment)


async def _create_at_platform(
    platforms: PaymentPlatforms, payment: Payment, principal: Principal, channel: PaymentChannel, now: datetime,
) -> tuple[str | None, str | None]:
    """The order at Alipay or WeChat Pay, within the platform timeout: (trade_no, prepay_id)."""
    minutes = max(int((aware(payment.closes_at) - now).total_seconds() // 60), 1)
    async with asyncio.timeout(platforms.settings.platform_timeout_seconds):
        if channel == PaymentChannel.alipay:
            created = await alipay.create_trade(
                platforms.alipay, platforms.client, out_trade_no=payment.out_trade_no, amount_fen=payment.amount_fen,
                subject=payment.subject, buyer_user_id=principal.sub, now=now, timeout_express=f"{minutes}m",
            )
            return created.trade_no, None
        prepay_id = await wechatpay.jsapi_prepay(
            platforms.wechat, platforms.client, out_trade_no=payment.out_trade_no, amount_fen=payment.amount_fen,
            description=payment.subject, openid=principal.sub, now=int(now.timestamp()),
            time_expire=aware(payment.closes_at).astimezone(SHANGHAI).isoformat(timespec="seconds"),
        )
        return None, prepay_id


async def _wait_for_opening(
    *, session: AsyncSession, platforms: PaymentPlatforms, payment_id: str, clock: Clock,
) -> dict[str, Any]:
    """Another request is creating this payment at the platform: its answer, once recorded (no transaction held)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + platforms.settings.platform_timeout_seconds + 5
    while loop.time() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        payment = await _reload(session, payment_id)
        await session.commit()  # a read: ends the transaction without expiring what the session holds
        if not is_pending(payment):
            if payment.status == PaymentStatus.open:
                return payment_answer(platforms, payment, clock.now())
            if payment.status == PaymentStatus.closed:
                raise PaymentPlatformUnavailable(params={"channel": payment.channel})
            break
    raise PaymentAlreadyOpen(params={"payment_id": payment_id})


# ---- crediting --------------------------------------------------------------------------------


def _rowcount(result: Any) -> int:
    """Rows an UPDATE changed (the cursor result of a DML statement)."""
    return int(result.rowcount or 0)


async def _close(session: AsyncSession, payment_id: str, now: datetime) -> bool:
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.open)
        .values(status=PaymentStatus.closed, open_declaration_id=None, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res) == 1


async def _reload(session: AsyncSession, payment_id: str) -> Payment:
    stmt = select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one()


async def _apply(session: AsyncSession, payment: Payment, *, paid_at: datetime, now: datetime) -> str:
    """Credit the declaration and issue the certificate; a declaration that cannot take it flags a refund."""
    try:
        async with session.begin_nested():
            decl = await mark_declaration_paid(
                session=session, declaration_id=payment.declaration_id, payment_id=payment.id, channel=payment.channel,
                paid_at=paid_at,
            )
    except (DeclarationAlreadyPaid, DeclarationStateConflict, DeclarationNotFound, MonthAlreadyDeclared) as exc:
        await session.execute(
            update(Payment).where(Payment.id == payment.id)
            .values(status=PaymentStatus.refund_pending, flag=f"declaration:{exc.code}"[:40])
            .execution_options(synchronize_session=False)
        )
        _alert(session, channel=payment.channel, payment=payment, now=now, reason="refund_pending",
               details={"declaration_id": payment.declaration_id, "why": exc.code, "amount_fen": payment.amount_fen})
        OUTBOX.emit(session, type=PAYMENT_REFUND_PENDING, subject=payment.id, time=now, data=PaymentRefundPending(
            payment_id=payment.id, declaration_id=payment.declaration_id, channel=payment.channel,
            amount_fen=payment.amount_fen, reason=exc.code, flagged_at=now,
        ))
        return "refund_pending"
    code = new_certificate_code()
    session.add(Certificate(
        code=code, payment_id=payment.id, declaration_id=decl.id, holder_name=payment.holder_name,
        holder_id_masked=payment.holder_id_masked, category=decl.category, region_code=decl.region_code,
        months=list(decl.months or ([str(decl.year)] if decl.year else [])), amount_fen=payment.amount_fen,
        channel=payment.channel, platform_trade_no=payment.platform_trade_no, paid_at=paid_at, issued_at=now,
    ))
    await session.flush()
    await session.execute(
        update(Payment).where(Payment.id == payment.id).values(certificate_code=code)
        .execution_options(synchronize_session=False)
    )
    return "credited"


async def credit_payment(
    *, session: AsyncSession, payment_id: str, platform_trade_no: str | None, paid_amount_fen: int, paid_at: datetime,
    now: datetime,
) -> str:
    """Apply a verified paid notification once; the outcome (credited, duplicate, paid_after_close, refund_pending)."""
    paid: dict[str, Any] = {"status": PaymentStatus.paid, "open_declaration_id": None, "paid_at": paid_at,
                            "paid_amount_fen": paid_amount_fen}
    if platform_trade_no:
        paid["platform_trade_no"] = platform_trade_no
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.open).values(**paid)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(res) == 1:
        return await _apply(session, await _reload(session, payment_id), paid_at=paid_at, now=now)
    current = await _reload(session, payment_id)
    if current.status != PaymentStatus.closed:
        return "duplicate"
    # Paid after we closed it: the money was taken. Credit it while the declaration still waits for it.
    res = await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.closed)
        .values(**paid, flag="paid_after_close").execution_options(synchronize_session=False)
    )
    if _rowcount(res) != 1:
        return "duplicate"
    payment = await _reload(session, payment_id)
    decl = await session.get(Declaration, payment.declaration_id)
    if decl is not None and decl.status == DeclarationStatus.awaiting_payment:
        other = await _open_payment_of(session, decl.id)
        if other is not None:
            await _close(session, other.id, now)
        outcome = await _apply(session, payment, paid_at=paid_at, now=now)
        return "paid_after_close" if outcome == "credited" else outcome
    await session.execute(
        update(Payment).where(Payment.id == payment_id).values(status=PaymentStatus.refund_pending)
        .execution_options(synchronize_session=False)
    )
    _alert(session, channel=payment.channel, payment=payment, now=now, reason="refund_pending",
           details={"declaration_id": payment.declaration_id, "why": "paid_after_close",
                    "declaration_status": decl.status if decl else None, "amount_fen": payment.amount_fen})
    OUTBOX.emit(session, type=PAYMENT_REFUND_PENDING, subject=payment.id, time=now, data=PaymentRefundPending(
        payment_id=payment.id, declaration_id=payment.declaration_id, channel=payment.channel,
        amount_fen=payment.amount_fen, reason="paid_after_close", flagged_at=now,
    ))
    return "refund_pending"


def _record(session: AsyncSession, *, channel: str, now: datetime, verified: bool, outcome: str, raw: str,
            **fields: Any) -> None:
    session.add(PaymentNotification(
        channel=channel, received_at=now, verified=verified, outcome=outcome, raw=raw[:MAX_RAW], **fields,
    ))


def _alert(session: AsyncSession, *, channel: str, payment: Payment, now: datetime, reason: str, details: dict[str, Any]) -> None:
    """Money staff must look at (a genuinely signed notification refused, or money not creditable): logged, audited."""
    log.error("payment alert %s on %s payment %s: %s", reason, channel, payment.id, json.dumps(details, ensure_ascii=False))
    session.add(AuditEntry(
        at=now, actor=f"platform:{channel}", actor_kind="platform", action=f"payment.{reason}", target_type="payment",
        target_id=payment.id, reason=reason, details=details, request_id=request_id_var.get(),
    ))


def _parse_form(body: bytes) -> dict[str, str]:
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=200)
    fields: dict[str, str] = {}
    for k, v in pairs:
        if k in fields:
            raise ValueError("duplicate field")
        fields[k] = v
    return fields


def _platform_time(value: str | None, now: datetime, fmt: str | None = None) -> datetime:
    if not value:
        return now
    try:
        at = datetime.strptime(value, fmt).replace(tzinfo=SHANGHAI) if fmt else datetime.fromisoformat(value)
    except ValueError:
        return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=SHANGHAI)
    # A platform clock far from ours is not trusted for the record. Stored times are UTC.
    return at.astimezone(UTC) if abs((at - now).total_seconds()) < 7 * 86400 else now


async def _payment_by_order(session: AsyncSession, channel: PaymentChannel, out_trade_no: str) -> Payment | None:
    stmt = select(Payment).where(Payment.out_trade_no == out_trade_no[:64], Payment.channel == channel)
    return (await session.execute(stmt)).scalars().first()


async def handle_alipay_notification(*, session: AsyncSession, platforms: PaymentPlatforms, body: bytes, now: datetime) -> bool:
    """Verify and apply an Alipay notification; True when handled (the answer is then `success`)."""
    raw = body[:MAX_RAW].decode("utf-8", errors="replace")
    rec: dict[str, Any] = {"channel": "alipay", "now": now, "raw": raw}
    if len(body) > MAX_RAW:
        _record(session, verified=False, outcome="too_large", **rec)
        return False
    try:
        fields = _parse_form(body)
    except (ValueError, UnicodeDecodeError):
        _record(session, verified=False, outcome="malformed", **rec)
        return False
    cfg = platforms.alipay
    try:
        n = alipay.verify_notification(fields, public_key=cfg.alipay_public_key)
    except alipay.NotificationRejected as exc:
        log.warning("alipay notification refused: %s", exc.reason)
        _record(session, verified=False, outcome=f"rejected:{exc.reason}"[:40], out_trade_no=fields.get("out_trade_no", "")[:64] or None, **rec)
        return False
    rec.update(out_trade_no=n.out_trade_no[:64], platform_trade_no=n.trade_no[:64], notify_id=n.notify_id[:128] or None,
               trade_status=n.trade_status[:40])
    if n.app_id != cfg.app_id or (cfg.seller_id and n.seller_id != cfg.seller_id):
        _record(session, verified=True, outcome="not_ours", **rec)
        return False
    payment = await _payment_by_order(session, PaymentChannel.alipay, n.out_trade_no)
    if payment is None:
        _record(session, verified=True, outcome="unknown_order", **rec)
        return False
    rec["payment_id"] = payment.id
    try:
        amount = yuan_to_fen(n.total_amount)
    except AmountInvalid:
        _alert(session, channel="alipay", payment=payment, now=now, reason="amount_invalid", details={"total_amount": n.total_amount[:40]})
        _record(session, verified=True, outcome="amount_invalid", **rec)
        return False
    rec["amount_fen"] = amount
    if amount != payment.amount_fen or (payment.platform_trade_no and n.trade_no != payment.platform_trade_no):
        reason = "amount_mismatch" if amount != payment.amount_fen else "trade_no_mismatch"
        _alert(session, channel="alipay", payment=payment, now=now, reason=reason,
               details={"expected_fen": payment.amount_fen, "notified_fen": amount, "trade_no": n.trade_no[:64]})
        _record(session, verified=True, outcome=reason, **rec)
        return False
    if n.paid:
        paid_at = _platform_time(n.fields.get("gmt_payment"), now, "%Y-%m-%d %H:%M:%S")
        outcome = await credit_payment(session=session, payment_id=payment.id, platform_trade_no=n.trade_no,
                                       paid_amount_fen=amount, paid_at=paid_at, now=now)
    elif n.closed:
        outcome = "closed" if await _close(session, payment.id, now) else "ignored"
    else:
        outcome = "ignored"
    _record(session, verified=True, outcome=outcome, **rec)
    return True


async def handle_wechat_notification(
    *, session: AsyncSession, platforms: PaymentPlatforms, headers: Mapping[str, str], body: bytes, now: datetime,
) -> tuple[int, str | None]:
    """Verify, decrypt and apply a WeChat Pay notification; (204, None) when handled, else (4xx, reason)."""
    raw = body[:MAX_RAW].decode("utf-8", errors="replace")
    kept = {k: v[:512] for k, v in headers.items() if k.lower().startswith("wechatpay-")}
    rec: dict[str, Any] = {"channel": "wechat", "now": now, "raw": raw, "headers": kept}
    cfg = platforms.wechat
    try:
        t = wechatpay.parse_notification(cfg, headers=headers, body=body, now=int(now.timestamp()))
    except wechatpay.NotificationRejected as exc:
        log.warning("wechatpay notification refused: %s", exc.reason)
        _record(session, verified=False, outcome=f"rejected:{exc.reason}"[:40], **rec)
        status = 401 if exc.reason in ("unsigned", "timestamp", "stale", "unknown_serial", "signature") else 400
        return status, exc.reason
    rec.update(out_trade_no=t.out_trade_no[:64], platform_trade_no=(t.transaction_id or "")[:64] or None,
               notify_id=t.notification_id[:128] or None, trade_status=t.trade_state[:40], amount_fen=t.total_fen)
    if t.mchid != cfg.mchid or t.appid != cfg.appid:
        _record(session, verified=True, outcome="not_ours", **rec)
        return 400, "not_ours"
    payment = await _payment_by_order(session, PaymentChannel.wechat, t.out_trade_no)
    if payment is None:
        _record(session, verified=True, outcome="unknown_order", **rec)
        return 404, "unknown_order"
    rec["payment_id"] = payment.id
    if t.total_fen != payment.amount_fen:
        _alert(session, channel="wechat", payment=payment, now=now, reason="amount_mismatch",
               details={"expected_fen": payment.amount_fen, "notified_fen": t.total_fen})
        _record(session, verified=True, outcome="amount_mismatch", **rec)
        return 400, "amount_mismatch"
    if t.paid:
        outcome = await credit_payment(
            session=session, payment_id=payment.id, platform_trade_no=t.transaction_id, paid_amount_fen=t.total_fen,
            paid_at=_platform_time(t.success_time, now), now=now,
        )
    elif t.closed:
        outcome = "closed" if await _close(session, payment.id, now) else "ignored"
    else:
        outcome = "ignored"
    _record(session, verified=True, outcome=outcome, **rec)
    return 204, None


# ---- closing ----------------------------------------------------------------------------------


async def close_expired_payments(*, session: AsyncSession, now: datetime, pending_before: datetime | None = None) -> int:
    """Close open payments past their time, so the declaration can be paid again; how many closed.

    With `pending_before`, also those still waiting for the platform's answer that were
    opened before it: the request that opened them crashed between its two transactions.
    """
    due = Payment.closes_at <= now
    if pending_before is not None:
        due = or_(due, and_(Payment.opened_at <= pending_before, Payment.platform_trade_no.is_(None),
                            Payment.prepay_id.is_(None)))
    res = await session.execute(
        update(Payment).where(Payment.status == PaymentStatus.open, due)
        .values(status=PaymentStatus.closed, open_declaration_id=None, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res)


# ---- staff: payments to look at ------------------------------------------------------------------


async def list_payments(
    *, session: AsyncSession, status: PaymentStatus | None, flagged: bool, limit: int, cursor: str | None,
) -> tuple[list[Payment], str | None]:
    """Payments newest first (keyset pages), optionally by status or only those flagged for staff."""
    stmt = select(Payment)
    if status is not None:
        stmt = stmt.where(Payment.status == status)
    if flagged:
        stmt = stmt.where(Payment.flag.is_not(None))
    key = decode_cursor(cursor)
    if key is not None:
        try:
            at, last_id = datetime.fromisoformat(str(key[0])), str(key[1])
        except (ValueError, IndexError):
            raise CursorInvalid() from None
        stmt = stmt.where(or_(Payment.opened_at < at, and_(Payment.opened_at == at, Payment.id < last_id)))
    rows = list((await session.execute(
        stmt.order_by(Payment.opened_at.desc(), Payment.id.desc()).limit(limit + 1))).scalars().all())
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor([aware(rows[-1].opened_at).isoformat(), rows[-1].id])
    return rows, nxt


def staff_view(p: Payment) -> PaymentRecord:
    """A payment as staff see it (no personal data)."""
    return PaymentRecord(
        id=p.id, declaration_id=p.declaration_id, channel=PaymentChannel(p.channel), status=PaymentStatus(p.status),
        flag=p.flag, amount_fen=p.amount_fen, paid_amount_fen=p.paid_amount_fen, out_trade_no=p.out_trade_no,
        platform_trade_no=p.platform_trade_no, opened_at=aware(p.opened_at), closes_at=aware(p.closes_at),
        paid_at=aware(p.paid_at) if p.paid_at else None, closed_at=aware(p.closed_at) if p.closed_at else None,
        certificate_code=p.certificate_code,
    )


# ---- certificates -------------------------------------------------------------------------------


async def certificate_for_owner(
    *, session: AsyncSession, payment_id: str, principal: Principal, now: datetime,
) -> tuple[Certificate, list[DeclarationLine]]:
    """The certificate of a credited payment the caller may see, with the declaration's lines."""
    payment = await session.get(Payment, payment_id) if len(payment_id) <= 36 else None
    if payment is None:
        raise PaymentNotFound()
    try:
        await get_payable_declaration(
            session=session, declaration_id=payment.declaration_id, principal=principal,
            today=now.astimezone(SHANGHAI).date(),
        )
    except DeclarationNotFound:
        raise PaymentNotFound() from None
    if payment.certificate_code is None:
        raise CertificateNotAvailable(params={"status": payment.status})
    cert = await session.get(Certificate, payment.certificate_code)
    if cert is None:
        raise CertificateNotAvailable(params={"status": payment.status})
    return cert, await lines_of(session=session, declaration_id=payment.declaration_id)


async def check_certificate(*, session: AsyncSession, code: str) -> CertificateCheck:
    """What a verification code attests (masked), or 404 certificate_not_found."""
    if not _CODE_RE.fullmatch(code):
        raise CertificateNotFound(params={"valid": False})
    cert = await session.get(Certificate, code)
    if cert is None:
        raise CertificateNotFound(params={"valid": False})
    return CertificateCheck(
        valid=cert.revoked_at is None, code=cert.code, holder_name=mask_name(cert.holder_name),
        holder_id_masked=cert.holder_id_masked, category=cert.category, region_code=cert.region_code,
        months=list(cert.months), amount_fen=cert.amount_fen, channel=PaymentChannel(cert.channel),
        paid_at=aware(cert.paid_at), revoked=cert.revoked_at is not None,
    )
