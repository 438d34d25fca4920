"""Dated regional enrolment rules: whether flexible enrolment needs a local household registration."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.identifiers import region_candidates
from services.common.principal import Principal
from services.common.regional import in_force_for_region
from services.registration.errors import NonLocalNotAllowed
from services.registration.models import RegionalRule
from services.registration.schemas import RegionalRuleIn, RegionalRuleOut


def rule_out(rule: RegionalRule) -> RegionalRuleOut:
    """The public shape of a rule."""
    return RegionalRuleOut(
        region_code=rule.region_code, effective_from=rule.effective_from,
        flexible_non_local_allowed=rule.flexible_non_local_allowed, note=rule.note, updated_at=rule.updated_at,
    )


async def rule_in_force(*, session: AsyncSession, region_code: str, on: date) -> RegionalRule | None:
    """The rule in force on a date at the region, else its city, else its province."""
    return await in_force_for_region(session, RegionalRule, region_code=region_code, on=on)


async def check_household(*, session: AsyncSession, region_code: str, household_region_code: str, on: date) -> None:
    """Refuse a flexible enrolment away from the household region where the rule in force requires it.

    The pooling region is the region the rule was found at (a whole municipality for
    Beijing's 110000); without a rule, the city. The household is local when it lies
    inside the pooling region.
    """
    rule = await rule_in_force(session=session, region_code=region_code, on=on)
    pooling = rule.region_code if rule else region_code[:4] + "00"
    if pooling in region_candidates(household_region_code):
        return
    if rule is not None and rule.flexible_non_local_allowed:
        return
    raise NonLocalNotAllowed(
        detail_zh=f"地区 {pooling} 的灵活就业参保须为本地户籍",
        detail_en=f"Region {pooling} requires a local household registration for flexible enrolment",
        params={
            "region_code": pooling,
            "rule_effective_from": rule.effective_from.isoformat() if rule else None,
        },
    )


async def _find_rule(session: AsyncSession, region_code: str, effective_from: date) -> RegionalRule | None:
    return (
        await session.execute(
            select(RegionalRule)
            .where(RegionalRule.region_code == region_code, RegionalRule.effective_from == effective_from)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def put_rule(
    *, session: AsyncSession, principal: Principal, region_code: str, effective_from: date, body: RegionalRuleIn,
    now: datetime,
) -> tuple[RegionalRuleOut, bool]:
    """Add or replace a dated rule (staff admin, audited); True when it was created."""
    values = {
        "flexible_non_local_allowed": body.flexible_non_local_allowed, "note": body.note,
        "updated_at": now, "updated_by": principal.actor_id,
    }
    rule = await _find_rule(session, region_code, effective_from)
    before = None
    created = False
    if rule is None:
        try:
            async with session.begin_nested():
                rule = RegionalRule(region_code=region_code, effective_from=effective_from, **values)
                session.add(rule)
                await session.flush()
            created = True
        except IntegrityError:
            # Another admin created it a moment ago: replace theirs.
            rule = await _find_rule(session, region_code, effective_from)
            assert rule is not None
    if not created:
        before = {"flexible_non_local_allowed": rule.flexible_non_local_allowed, "note": rule.note}
        for k, v in values.items():
            setattr(rule, k, v)
        await session.flush()
    record_audit(
        session, actor=principal, action="regional_rule.put", target_type="regional_rule",
        target_id=f"{region_code}/{effective_from.isoformat()}", at=now, reason=body.reason,
        details={"before": before, "after": {"flexible_non_local_allowed": body.flexible_non_local_allowed, "note": body.note}},
    )
    return rule_out(rule), created
