"""Opening payments: at most one open per declaration, created at the platform outside any transaction."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import SHANGHAI, Clock, aware
from services.common.pii import mask_id_number
from services.common.principal import Principal, PrincipalKind
from services.contribution import family
from services.contribution.declarations.crediting import get_payable_declaration
from services.contribution.enums import PaidBy
from services.contribution.errors import DeclarationAlreadyPaid, DeclarationStateConflict
from services.contribution.models import Declaration, DeclarationStatus, KnownPerson
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.closing import (
    close_payment,
    is_pending,
    pending_abandoned_before,
    rowcount,
)
from services.contribution.payments.errors import (
    ChannelNotAvailable,
    NothingToPay,
    PaymentAlreadyOpen,
    PaymentPlatformUnavailable,
)
from services.contribution.payments.models import Payment, PaymentChannel, PaymentStatus
from services.contribution.payments.platforms import PaymentPlatforms
from services.contribution.payments.reads import open_payment_of, reload_payment
from services.contribution.payments.schemas import PaymentOut

log = logging.getLogger("socialsec.contribution.payments")


# How often a request waiting for another's platform call looks at the payment again.
WAIT_POLL_SECONDS = 0.1


def new_out_trade_no(now: datetime) -> str:
    """A merchant order number: date and time (Asia/Shanghai) and 12 random characters (fits both platforms)."""
    return now.astimezone(SHANGHAI).strftime("SS%y%m%d%H%M%S") + secrets.token_hex(6).upper()


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
    """Who the certificate will name: the person paying, the unit, or the person an agency or a relative pays for."""
    if principal.kind == PrincipalKind.citizen and not family.pays_for_relative(principal, decl):
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
        paid_by=PaidBy(payment.paid_by) if payment.paid_by else None,
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


@dataclass
class _Opening:
    """What the first transaction of an opening decided: an answer, a payment to create, or one to wait for."""

    answer: dict[str, Any] | None = None
    created: Payment | None = None
    wait_for: str | None = None


async def _reuse_or_refuse(
    session: AsyncSession, platforms: PaymentPlatforms, existing: Payment, channel: PaymentChannel, now: datetime,
    paid_by: str | None = None, payer_ref: str | None = None,
) -> _Opening | None:
    """An open payment on the same channel is answered again (once the platform has answered it); on another
    channel the caller must wait. None when the payment was closed (past its time, or left by a crash)."""
    if aware(existing.closes_at) <= now or (
        is_pending(existing) and aware(existing.opened_at) <= pending_abandoned_before(platforms, now)
    ):
        await close_payment(session, existing.id, now)
        return None
    # A relative's payment is answered again only to the relative who opened it (the person's own stay shared).
    same_payer = existing.paid_by == paid_by and (paid_by is None or existing.payer_ref == payer_ref)
    if existing.channel == channel and same_payer:
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
    the closing job closes, at the platform first (`payments.queries`).
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
        await close_payment(session, payment.id, clock.now())
        raise PaymentPlatformUnavailable(params={"channel": str(channel)}) from None
    res = await session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.status == PaymentStatus.open)
        .values(platform_trade_no=trade_no, prepay_id=prepay_id).execution_options(synchronize_session=False)
    )
    if rowcount(res) != 1:
        # Closed meanwhile (the answer came after the payment was given up as left by a crash).
        log.warning("payment %s closed before the platform's answer was recorded", payment.id)
        raise PaymentPlatformUnavailable(params={"channel": str(channel)})
    return payment_answer(platforms, await reload_payment(session, payment.id), now)


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
    paid_by = str(PaidBy.family) if family.pays_for_relative(principal, decl) else None
    existing = await open_payment_of(session, decl.id)
    if existing is not None:
        found = await _reuse_or_refuse(session, platforms, existing, channel, now, paid_by, principal.sub[:128])
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
        closes_at=now + timeout, holder_name=name, holder_id_masked=id_masked, paid_by=paid_by,
    )
    try:
        async with session.begin_nested():
            session.add(payment)
            await session.flush()
    except IntegrityError:
        # Another request opened one at the same moment: the database decided.
        existing = await open_payment_of(session, decl.id)
        if existing is None:
            raise
        found = await _reuse_or_refuse(session, platforms, existing, channel, now, paid_by, principal.sub[:128])
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
        payment = await reload_payment(session, payment_id)
        await session.commit()  # a read: ends the transaction without expiring what the session holds
        if not is_pending(payment):
            if payment.status == PaymentStatus.open:
                return payment_answer(platforms, payment, clock.now())
            if payment.status == PaymentStatus.closed:
                raise PaymentPlatformUnavailable(params={"channel": payment.channel})
            break
    raise PaymentAlreadyOpen(params={"payment_id": payment_id})
