"""Regional card rules: dated, seeded per region, changed by staff admins (audited)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.card.errors import NoRule, RuleExists, RuleInPast
from services.card.models import CardRule
from services.card.schemas import CardRuleIn, CardRuleOut, CardRulePage
from services.common.audit import record_audit
from services.common.pagination import keyset_page
from services.common.principal import Principal
from services.common.regional import in_force_for_region

NATIONAL = "000000"


async def rule_for(*, session: AsyncSession, region_code: str, on: date) -> CardRule:
    """The rule in effect on a date: the region's own, else its city's, province's, the national one."""
    rule = await in_force_for_region(session, CardRule, region_code=region_code, on=on, fallbacks=[NATIONAL])
    if rule is not None:
        return rule
    raise NoRule(params={"region_code": region_code})


def rule_out(rule: CardRule) -> CardRuleOut:
    return CardRuleOut.model_validate(rule, from_attributes=True)


async def list_rules(*, session: AsyncSession, region_code: str | None, limit: int, cursor: str | None) -> CardRulePage:
    """Rules, newest id first, optionally for one region (keyset pagination)."""
    stmt = select(CardRule)
    if region_code:
        stmt = stmt.where(CardRule.region_code == region_code)
    page = await keyset_page(session, stmt, keys=[CardRule.id], cursor=cursor, limit=limit, descending=True)
    return CardRulePage(items=[rule_out(r) for r in page.rows], next_cursor=page.next_cursor)


async def create_rule(*, session: AsyncSession, actor: Principal, data: CardRuleIn, today: date, now: datetime) -> CardRuleOut:
    """A new dated rule for a region; the rule it supersedes ends the day before."""
    if data.effective_from < today:
        raise RuleInPast(params={"today": today.isoformat()})
    previous = (
        await session.execute(
            select(CardRule).where(
                CardRule.region_code == data.region_code,
                CardRule.effective_from < data.effective_from,
                or_(CardRule.effective_to.is_(None), CardRule.effective_to >= data.effective_from),
            )
        )
    ).scalars().all()
    later = (
        await session.execute(
            select(CardRule.effective_from)
            .where(and_(CardRule.region_code == data.region_code, CardRule.effective_from > data.effective_from))
            .order_by(CardRule.effective_from)
            .limit(1)
        )
    ).scalar_one_or_none()
    for p in previous:
        p.effective_to = data.effective_from - timedelta(days=1)
    rule = CardRule(
        region_code=data.region_code,
        effective_from=data.effective_from,
        effective_to=(later - timedelta(days=1)) if later else None,
        initial_pin_rule=str(data.initial_pin_rule),
        initial_pin_fixed=data.initial_pin_fixed,
        pin_max_tries=data.pin_max_tries,
        temporary_loss_days=data.temporary_loss_days,
        activation_max_mismatches=data.activation_max_mismatches,
        created_at=now,
        created_by=actor.actor_id,
    )
    try:
        async with session.begin_nested():
            session.add(rule)
            await session.flush()
    except IntegrityError:
        raise RuleExists(params={"region_code": data.region_code, "effective_from": data.effective_from.isoformat()}) from None
    record_audit(
        session, actor=actor, action="card.rule.created", target_type="card_rule", target_id=str(rule.id), at=now,
        reason=data.reason,
        details={
            "region_code": rule.region_code, "effective_from": rule.effective_from.isoformat(),
            "initial_pin_rule": rule.initial_pin_rule, "pin_max_tries": rule.pin_max_tries,
            "temporary_loss_days": rule.temporary_loss_days,
            "activation_max_mismatches": rule.activation_max_mismatches,
            "superseded": [p.id for p in previous],
        },
    )
    return rule_out(rule)
