"""Helpers of the query, refund and reconciliation tests: pay at the sandbox, read the books."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from services.common.models import AuditEntry, OutboxEvent
from services.contribution.models import ContributionRecord, Declaration
from services.contribution.payments.models import Certificate, Payment, PaymentNotification, Refund
from tests.contribution.payments.conftest import ALICE, PayWorld
from tests.helpers import citizen


async def opened(world: PayWorld, channel: str = "alipay", id_number: str = ALICE, **decl: Any) -> dict[str, Any]:
    decl_id = await world.declaration(id_number, **decl)
    prn = citizen(id_number, "张三", level=2, platform="wechat" if channel == "wechat" else "alipay")
    r = await world.open(decl_id, channel, prn=prn)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def pay_at_platform(world: PayWorld, p: dict[str, Any]) -> None:
    """The person pays at the sandbox; its notification (unless dropped) is delivered."""
    if p["channel"] == "alipay":
        r = await world.sandbox.post(f"/sandbox/alipay/trades/{p['trade_no']}/pay")
    else:
        r = await world.sandbox.post(f"/sandbox/wechatpay/transactions/{p['out_trade_no']}/pay")
    assert r.status_code == 200, r.text
    await world.platform.drain()


def drop_notifications(world: PayWorld, target: str) -> None:
    world.platform.notify_rules[target] = {"drop": True}


async def payment(world: PayWorld, payment_id: str) -> Payment:
    async with world.svc.db.sessionmaker() as s:
        p = await s.get(Payment, payment_id)
        assert p is not None
        return p


async def declaration(world: PayWorld, decl_id: str) -> Declaration:
    async with world.svc.db.sessionmaker() as s:
        d = await s.get(Declaration, decl_id)
        assert d is not None
        return d


async def records_of(world: PayWorld, payment_id: str) -> int:
    async with world.svc.db.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(ContributionRecord)
                                    .where(ContributionRecord.payment_id == payment_id))).scalar_one())


async def refunds_of(world: PayWorld, payment_id: str) -> list[Refund]:
    async with world.svc.db.sessionmaker() as s:
        return list((await s.execute(select(Refund).where(Refund.payment_id == payment_id)
                                     .order_by(Refund.requested_at))).scalars().all())


async def outcomes(world: PayWorld, payment_id: str) -> list[tuple[str, str | None]]:
    async with world.svc.db.sessionmaker() as s:
        rows = (await s.execute(select(PaymentNotification).where(PaymentNotification.payment_id == payment_id)
                                .order_by(PaymentNotification.id))).scalars().all()
        return [(n.outcome, n.notify_id) for n in rows]


async def events(world: PayWorld, type_: str) -> list[dict[str, Any]]:
    async with world.svc.db.sessionmaker() as s:
        rows = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == type_))).scalars().all()
        return [dict(e.data) for e in rows]


async def audit_actions(world: PayWorld) -> list[str]:
    async with world.svc.db.sessionmaker() as s:
        return [a.action for a in (await s.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars().all()]


async def certificate_revoked(world: PayWorld, code: str) -> bool:
    async with world.svc.db.sessionmaker() as s:
        c = await s.get(Certificate, code)
        assert c is not None
        return c.revoked_at is not None


async def flag_refund_pending(world: PayWorld, payment_id: str) -> None:
    """Mark a paid payment as money to give back (what crediting does when the declaration cannot take it)."""
    async with world.svc.db.sessionmaker() as s, s.begin():
        await s.execute(update(Payment).where(Payment.id == payment_id)
                        .values(status="refund_pending", flag="declaration:declaration_already_paid"))
