"""Dated regional policies: the one in force (region, city, province), and staff changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.audit import record_audit
from services.common.identifiers import month_from_index, month_index, region_candidates
from services.common.pagination import decode_cursor, encode_cursor, keyset_page
from services.common.principal import Principal
from services.contribution.errors import PolicyNotFound, PolicyOverlap, PolicyPeriodInvalid
from services.contribution.events import OUTBOX, POLICY_PUBLISHED, PolicyPublished
from services.contribution.models import Policy
from services.contribution.policies.pricing import round_fen
from services.contribution.schemas import Grade, PolicyIn, PolicyOut

_POLICY_LOCK = 7_400_000_000  # advisory-lock namespace for policy changes, plus the region code


def covers(policy: Policy, month: str) -> bool:
    """True when the policy is in force in the month."""
    i = month_index(month)
    return policy.from_index <= i and (policy.to_index is None or i <= policy.to_index)


async def live_policies(*, session: AsyncSession, region_codes: list[str]) -> list[Policy]:
    """The live (not superseded) policies of some regions, oldest first."""
    stmt = (
        select(Policy)
        .where(Policy.region_code.in_(region_codes), Policy.superseded_at.is_(None))
        .order_by(Policy.region_code, Policy.from_index)
    )
    return list((await session.execute(stmt)).scalars().all())


async def policies_for_months(*, session: AsyncSession, region_code: str, months: list[str]) -> dict[str, Policy]:
    """The policy in force for each month: at the region, else its city, else its province; 404 otherwise."""
    candidates = region_candidates(region_code)
    rows = await live_policies(session=session, region_codes=candidates)
    out: dict[str, Policy] = {}
    for month in months:
        found = next((p for c in candidates for p in rows if p.region_code == c and covers(p, month)), None)
        if found is None:
            raise PolicyNotFound(
                detail_zh=f"地区 {region_code} 在 {month} 没有缴费政策",
                detail_en=f"No policy for region {region_code} in {month}",
                params={"region_code": region_code, "month": month},
            )
        out[month] = found
    return out


async def policy_in_force(*, session: AsyncSession, region_code: str, month: str) -> Policy:
    """The policy in force in a month for a region (with city and province fallback)."""
    return (await policies_for_months(session=session, region_code=region_code, months=[month]))[month]


def tiers_fen(policy: Policy) -> list[int]:
    """The fixed flexible-worker bases in fen (average wage x percent, to the fen half up); empty: any base."""
    return [round_fen(policy.avg_wage_fen * int(pct), 100, "fen_half_up") for pct in policy.flexible_base_tiers_pct or []]


def policy_out(policy: Policy) -> PolicyOut:
    """The public shape of a policy."""
    return PolicyOut(
        region_code=policy.region_code,
        effective_from=policy.effective_from,
        effective_to=policy.effective_to,
        avg_wage_fen=policy.avg_wage_fen,
        base_lower_fen=policy.base_lower_fen,
        base_upper_fen=policy.base_upper_fen,
        rates=policy.rates,
        work_injury_rates={str(k): v for k, v in policy.work_injury_rates.items()},
        grades=[Grade.model_validate(g) for g in policy.grades],
        frequencies=list(policy.frequencies),
        back_pay_window=policy.back_pay_window,
        rounding=policy.rounding,
        deadline_day=policy.deadline_day,
        late_fee_per_10000_per_day=policy.late_fee_per_10000_per_day,
        flexible_base_tiers_pct=[int(t) for t in policy.flexible_base_tiers_pct or []],
        flexible_base_tiers_fen=tiers_fen(policy),
        medical_levies_fen={str(k): int(v) for k, v in (policy.medical_levies_fen or {}).items()},
        account_interest_rates={str(k): int(v) for k, v in sorted((policy.account_interest_rates or {}).items())},
        resident_basic_pension_fen=policy.resident_basic_pension_fen,
        version=policy.id,
        created_at=policy.created_at,
        superseded_at=policy.superseded_at,
    )


def _published(policy: Policy) -> PolicyPublished:
    return PolicyPublished(
        region_code=policy.region_code, effective_from=policy.effective_from, effective_to=policy.effective_to,
        avg_wage_fen=policy.avg_wage_fen, base_lower_fen=policy.base_lower_fen, base_upper_fen=policy.base_upper_fen,
    )


def _copy(policy: Policy, *, now: datetime, actor: str, **changes: object) -> Policy:
    values = {
        c: getattr(policy, c)
        for c in (
            "region_code", "effective_from", "effective_to", "from_index", "to_index", "avg_wage_fen",
            "base_lower_fen", "base_upper_fen", "rates", "work_injury_rates", "grades", "frequencies",
            "back_pay_window", "rounding", "deadline_day", "late_fee_per_10000_per_day",
            "flexible_base_tiers_pct", "medical_levies_fen", "account_interest_rates", "resident_basic_pension_fen",
        )
    }
    values.update(changes)
    return Policy(**values, created_at=now, created_by=actor)


async def _supersede(session: AsyncSession, old: Policy, new: Policy, now: datetime) -> None:
    """Retire `old` in favour of `new`: the old row stays as history."""
    old.superseded_at = now
    await session.flush()
    session.add(new)
    await session.flush()
    old.superseded_by = new.id


async def put_policy(
    *, session: AsyncSession, region_code: str, effective_from: str, body: PolicyIn, actor: Principal, now: datetime
) -> tuple[Policy, bool]:
    """Add or replace a dated policy (staff admin); close an open predecessor; audited; announced.

    Returns the policy and whether it was newly added (False: it replaced a version).
    """
    start = month_index(effective_from)
    end = month_index(body.effective_to) if body.effective_to else None
    if end is not None and end < start:
        raise PolicyPeriodInvalid(
            detail_zh="结束月份早于开始月份", detail_en="effective_to is before effective_from",
            errors=[{"field": "effective_to", "code": "policy_period_invalid",
                     "message_zh": "结束月份早于开始月份", "message_en": "before effective_from"}],
        )
    if session.get_bind().dialect.name == "postgresql":
        # Changes to one region's periods run one at a time (SQLite writers are serialized already):
        # row locks alone would not stop two new, overlapping periods from being added at once.
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POLICY_LOCK + int(region_code)})
    rows = list(
        (
            await session.execute(
                select(Policy)
                .where(Policy.region_code == region_code, Policy.superseded_at.is_(None))
                .order_by(Policy.from_index)
                .with_for_update()
            )
        ).scalars().all()
    )
    same = next((p for p in rows if p.from_index == start), None)
    truncate: list[Policy] = []
    for p in rows:
        if p is same:
            continue
        p_end = p.to_index if p.to_index is not None else 10**9
        new_end = end if end is not None else 10**9
        if p.from_index < start <= p_end:
            truncate.append(p)  # an earlier policy still running: it now ends the month before
        elif start < p.from_index <= new_end:
            raise PolicyOverlap(
                detail_zh=f"与 {p.effective_from} 起的政策重叠", detail_en=f"overlaps the policy from {p.effective_from}",
                params={"conflicting_effective_from": p.effective_from, "conflicting_effective_to": p.effective_to},
            )
    actor_id = actor.actor_id
    resumed: list[str] = []
    new = Policy(
        region_code=region_code, effective_from=effective_from, effective_to=body.effective_to,
        from_index=start, to_index=end, avg_wage_fen=body.avg_wage_fen, base_lower_fen=body.base_lower_fen,
        base_upper_fen=body.base_upper_fen,
        rates={str(k): v.model_dump() for k, v in body.rates.items()},
        work_injury_rates={str(k): v for k, v in sorted(body.work_injury_rates.items())},
        grades=[g.model_dump() for g in sorted(body.grades, key=lambda g: g.grade_fen)],
        frequencies=[str(f) for f in body.frequencies], back_pay_window=body.back_pay_window,
        rounding=str(body.rounding), deadline_day=body.deadline_day,
        late_fee_per_10000_per_day=body.late_fee_per_10000_per_day,
        flexible_base_tiers_pct=sorted(body.flexible_base_tiers_pct),
        medical_levies_fen={str(k): v for k, v in sorted(body.medical_levies_fen.items()) if v > 0},
        account_interest_rates=dict(sorted(body.account_interest_rates.items())),
        resident_basic_pension_fen=body.resident_basic_pension_fen, created_at=now, created_by=actor_id,
    )
    try:
        for p in truncate:
            closed = _copy(p, now=now, actor=actor_id, effective_to=month_from_index(start - 1), to_index=start - 1)
            await _supersede(session, p, closed, now)
            OUTBOX.emit(session, type=POLICY_PUBLISHED, subject=f"{region_code}/{closed.effective_from}",
                        data=_published(closed), time=now)
            if end is not None and (p.to_index is None or p.to_index > end):
                # Inserted inside a running policy: the running one resumes after the new one ends.
                tail = _copy(p, now=now, actor=actor_id, effective_from=month_from_index(end + 1), from_index=end + 1)
                session.add(tail)
                await session.flush()
                resumed.append(tail.effective_from)
                OUTBOX.emit(session, type=POLICY_PUBLISHED, subject=f"{region_code}/{tail.effective_from}",
                            data=_published(tail), time=now)
        if same is not None:
            await _supersede(session, same, new, now)
        else:
            session.add(new)
            await session.flush()
    except IntegrityError:
        raise PolicyOverlap(detail_en="another change of this policy was saved at the same time",
                            detail_zh="该政策正被同时修改，请重试") from None
    OUTBOX.emit(session, type=POLICY_PUBLISHED, subject=f"{region_code}/{effective_from}", data=_published(new), time=now)
    record_audit(
        session, actor=actor, action="policy.replaced" if same is not None else "policy.added",
        target_type="policy", target_id=f"{region_code}/{effective_from}", at=now, reason=body.reason,
        details={
            "version": new.id, "replaced_version": same.id if same is not None else None,
            "closed": [p.effective_from for p in truncate], "resumed": resumed,
            "base_lower_fen": new.base_lower_fen, "base_upper_fen": new.base_upper_fen,
        },
    )
    return new, same is None


async def policy_history(
    *, session: AsyncSession, region_code: str, limit: int, cursor: str | None
) -> tuple[list[Policy], str | None]:
    """Every version of a region's policies, live and superseded, newest first (keyset pages)."""
    stmt = select(Policy).where(Policy.region_code == region_code)
    key = decode_cursor(cursor)
    if key is not None and len(key) == 1:
        # A cursor of the earlier form held only the id of the last version served.
        last = await session.get(Policy, key[0]) if isinstance(key[0], int) and not isinstance(key[0], bool) else None
        if last is None or last.region_code != region_code:
            return [], None
        cursor = encode_cursor([last.from_index, last.id])
    page = await keyset_page(session, stmt, keys=[Policy.from_index, Policy.id], cursor=cursor, limit=limit,
                             descending=True)
    return page.rows, page.next_cursor
