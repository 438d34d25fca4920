"""Dated regional review rules and the base bands learnt from contribution's policies."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.principal import Principal
from services.common.regional import in_force_for_region
from services.review.errors import RuleNotFound
from services.review.models import Band, ReviewRule
from services.review.schemas import ReviewRuleIn, ReviewRuleOut


def rule_out(rule: ReviewRule) -> ReviewRuleOut:
    """The public shape of a rule."""
    return ReviewRuleOut.model_validate(rule, from_attributes=True)


async def rule_in_force(*, session: AsyncSession, region_code: str, on: date) -> ReviewRule:
    """The rule of the region, else its city, else its province, in force on a date."""
    rule = await in_force_for_region(session, ReviewRule, region_code=region_code, on=on)
    if rule is not None:
        return rule
    raise RuleNotFound(
        detail_zh=f"地区 {region_code} 在 {on} 没有适用的年审规则",
        detail_en=f"No review rule for region {region_code} on {on}",
        params={"region_code": region_code},
    )


async def put_rule(
    *, session: AsyncSession, clock: Clock, actor: Principal, region_code: str, effective_from: date, body: ReviewRuleIn
) -> tuple[ReviewRuleOut, bool]:
    """Add or replace a dated rule (audited); True when it was created."""
    row = (
        await session.execute(
            select(ReviewRule).where(ReviewRule.region_code == region_code, ReviewRule.effective_from == effective_from)
        )
    ).scalar_one_or_none()
    values = body.model_dump(exclude={"reason"})
    created = row is None
    before = None if row is None else rule_out(row).model_dump(mode="json")
    if row is None:
        row = ReviewRule(region_code=region_code, effective_from=effective_from, **values,
                         updated_at=clock.now(), updated_by=actor.actor_id)
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            # Another admin created it at the same moment: replace theirs.
            row = (
                await session.execute(
                    select(ReviewRule).where(
                        ReviewRule.region_code == region_code, ReviewRule.effective_from == effective_from
                    )
                )
            ).scalar_one()
            created = False
    if not created:
        for k, v in values.items():
            setattr(row, k, v)
        row.updated_at = clock.now()
        row.updated_by = actor.actor_id
    await session.flush()
    out = rule_out(row)
    record_audit(
        session, actor=actor, action="review_rule.put", target_type="review_rule",
        target_id=f"{region_code}/{effective_from}", at=clock.now(), reason=body.reason,
        details={"before": before, "after": out.model_dump(mode="json")},
    )
    return out, created


async def band_in_force(*, session: AsyncSession, region_code: str, month: str) -> Band | None:
    """The contribution base band of the region (or its city, or province) in force in a month."""
    return await in_force_for_region(session, Band, region_code=region_code, on=month)


def clamp(value: int, band: Band | None) -> int:
    """A wage clamped to the band (unchanged without a band)."""
    if band is None:
        return value
    return min(max(value, band.base_lower_fen), band.base_upper_fen)
