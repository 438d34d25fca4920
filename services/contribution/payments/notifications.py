"""Platform notifications (Alipay's form post, WeChat Pay's signed JSON): verified, logged, then applied.

Every notification is recorded with its outcome; a verified one that is ours credits
(`crediting.credit_payment`) or closes the payment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.closing import close_payment
from services.contribution.payments.crediting import alert, credit_payment
from services.contribution.payments.models import Payment, PaymentChannel, PaymentNotification
from services.contribution.payments.money import AmountInvalid, yuan_to_fen
from services.contribution.payments.platforms import PaymentPlatforms

log = logging.getLogger("socialsec.contribution.payments")
MAX_RAW = 64 * 1024


def record_notification(session: AsyncSession, *, channel: str, now: datetime, verified: bool, outcome: str, raw: str,
            **fields: Any) -> None:
    session.add(PaymentNotification(
        channel=channel, received_at=now, verified=verified, outcome=outcome, raw=raw[:MAX_RAW], **fields,
    ))


def _parse_form(body: bytes) -> dict[str, str]:
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=200)
    fields: dict[str, str] = {}
    for k, v in pairs:
        if k in fields:
            raise ValueError("duplicate field")
        fields[k] = v
    return fields


def platform_time(value: str | None, now: datetime, fmt: str | None = None) -> datetime:
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
        record_notification(session, verified=False, outcome="too_large", **rec)
        return False
    try:
        fields = _parse_form(body)
    except (ValueError, UnicodeDecodeError):
        record_notification(session, verified=False, outcome="malformed", **rec)
        return False
    cfg = platforms.alipay
    try:
        n = alipay.verify_notification(fields, public_key=cfg.alipay_public_key)
    except alipay.NotificationRejected as exc:
        log.warning("alipay notification refused: %s", exc.reason)
        record_notification(session, verified=False, outcome=f"rejected:{exc.reason}"[:40], out_trade_no=fields.get("out_trade_no", "")[:64] or None, **rec)
        return False
    rec.update(out_trade_no=n.out_trade_no[:64], platform_trade_no=n.trade_no[:64], notify_id=n.notify_id[:128] or None,
               trade_status=n.trade_status[:40])
    if n.app_id != cfg.app_id or (cfg.seller_id and n.seller_id != cfg.seller_id):
        record_notification(session, verified=True, outcome="not_ours", **rec)
        return False
    payment = await _payment_by_order(session, PaymentChannel.alipay, n.out_trade_no)
    if payment is None:
        record_notification(session, verified=True, outcome="unknown_order", **rec)
        return False
    rec["payment_id"] = payment.id
    try:
        amount = yuan_to_fen(n.total_amount)
    except AmountInvalid:
        alert(session, channel="alipay", payment=payment, now=now, reason="amount_invalid", details={"total_amount": n.total_amount[:40]})
        record_notification(session, verified=True, outcome="amount_invalid", **rec)
        return False
    rec["amount_fen"] = amount
    if amount != payment.amount_fen or (payment.platform_trade_no and n.trade_no != payment.platform_trade_no):
        reason = "amount_mismatch" if amount != payment.amount_fen else "trade_no_mismatch"
        alert(session, channel="alipay", payment=payment, now=now, reason=reason,
               details={"expected_fen": payment.amount_fen, "notified_fen": amount, "trade_no": n.trade_no[:64]})
        record_notification(session, verified=True, outcome=reason, **rec)
        return False
    if n.paid:
        paid_at = platform_time(n.fields.get("gmt_payment"), now, "%Y-%m-%d %H:%M:%S")
        outcome = await credit_payment(session=session, payment_id=payment.id, platform_trade_no=n.trade_no,
                                       paid_amount_fen=amount, paid_at=paid_at, now=now)
    elif n.closed:
        outcome = "closed" if await close_payment(session, payment.id, now) else "ignored"
    else:
        outcome = "ignored"
    record_notification(session, verified=True, outcome=outcome, **rec)
    return True


async def handle_wechat_notification(
    *, session: AsyncSession, platforms: PaymentPlatforms, headers: Mapping[str, str], body: bytes, now: datetime,
) -> tuple[int, str | None]:
    """Verify, decrypt and apply a WeChat Pay notification; (204, None) when handled, else (4xx, reason)."""
    raw = body[:MAX_RAW].decode("utf-8", errors="replace")
    rec: dict[str, Any] = {"channel": "wechat", "now": now, "raw": raw, "headers": wechatpay.kept_headers(headers)}
    cfg = platforms.wechat
    try:
        t = wechatpay.parse_notification(cfg, headers=headers, body=body, now=int(now.timestamp()))
    except wechatpay.NotificationRejected as exc:
        log.warning("wechatpay notification refused: %s", exc.reason)
        record_notification(session, verified=False, outcome=f"rejected:{exc.reason}"[:40], **rec)
        return wechatpay.rejection_status(exc.reason), exc.reason
    rec.update(out_trade_no=t.out_trade_no[:64], platform_trade_no=(t.transaction_id or "")[:64] or None,
               notify_id=t.notification_id[:128] or None, trade_status=t.trade_state[:40], amount_fen=t.total_fen)
    if t.mchid != cfg.mchid or t.appid != cfg.appid:
        record_notification(session, verified=True, outcome="not_ours", **rec)
        return 400, "not_ours"
    payment = await _payment_by_order(session, PaymentChannel.wechat, t.out_trade_no)
    if payment is None:
        record_notification(session, verified=True, outcome="unknown_order", **rec)
        return 404, "unknown_order"
    rec["payment_id"] = payment.id
    if t.total_fen != payment.amount_fen:
        alert(session, channel="wechat", payment=payment, now=now, reason="amount_mismatch",
               details={"expected_fen": payment.amount_fen, "notified_fen": t.total_fen})
        record_notification(session, verified=True, outcome="amount_mismatch", **rec)
        return 400, "amount_mismatch"
    if t.paid:
        outcome = await credit_payment(
            session=session, payment_id=payment.id, platform_trade_no=t.transaction_id, paid_amount_fen=t.total_fen,
            paid_at=platform_time(t.success_time, now), now=now,
        )
    elif t.closed:
        outcome = "closed" if await close_payment(session, payment.id, now) else "ignored"
    else:
        outcome = "ignored"
    record_notification(session, verified=True, outcome=outcome, **rec)
    return 204, None
