"""养老金测算 from the person's record: enrolments, contributions, the region's policies (rules in `rules.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.enums import Category, Insurance
from services.common.identifiers import month_from_index, month_index, region_candidates
from services.contribution.enums import LinePayer
from services.contribution.errors import NotEnrolled, PersonIsPensioner
from services.contribution.models import ContributionRecord, Declaration, KnownEnrolment, KnownPerson, Policy
from services.contribution.pension.rules import (
    ACCOUNT_SHARE_BP,
    DIVISORS,
    RESIDENT_AGE,
    RESIDENT_MINIMUM_MONTHS,
    AccountGrowth,
    FemalePost,
    Retirement,
    account_pension_fen,
    basic_pension_fen,
    divisor_for,
    grow_account,
    half_up,
    statutory_retirement,
)
from services.contribution.policies.pricing import clamp, required_pension_months
from services.contribution.policies.service import covers, live_policies, policy_in_force


@dataclass
class Assumption:
    code: str
    value: Any
    zh: str
    en: str


@dataclass
class Estimate:
    category: Category
    region_code: str
    policy: Policy
    sex: str
    birth_month: str
    retirement: Retirement
    basis: str
    months_paid: int
    months_projected: int
    required_months: int
    average_index: Fraction | None
    basic_fen: int
    balance_fen: int
    divisor: int
    account_fen: int
    assumptions: list[Assumption]

    @property
    def monthly_fen(self) -> int:
        return self.basic_fen + self.account_fen


def _choose_enrolment(rows: list[KnownEnrolment], current_month: str) -> KnownEnrolment | None:
    """The enrolment that decides the scheme: an open pension one (employee before flexible before resident),
    else the one that ended last."""
    pension = [e for e in rows if Insurance.pension in (e.insurance_types or [])]
    if not pension:
        return None
    now = month_index(current_month)
    rank = {Category.employee: 0, Category.flexible: 1, Category.resident: 2}
    open_ = [e for e in pension if e.end_month is None or month_index(e.end_month) >= now]
    if open_:
        return sorted(open_, key=lambda e: (rank.get(Category(e.category), 9), -month_index(e.start_month)))[0]
    return sorted(pension, key=lambda e: month_index(e.end_month or e.start_month))[-1]


async def _policy_lookup(session: AsyncSession, region_codes: set[str]) -> dict[str, list[Policy]]:
    out: dict[str, list[Policy]] = {}
    for code in region_codes:
        candidates = region_candidates(code)
        rows = await live_policies(session=session, region_codes=candidates)
        out[code] = sorted(rows, key=lambda p: candidates.index(p.region_code))
    return out


def _policy_for(policies: list[Policy], month: str) -> Policy | None:
    return next((p for p in policies if covers(p, month)), None)


async def estimate(
    *, session: AsyncSession, person_key: str, birth: date, sex: str, current_month: str,
    female_post: FemalePost | None,
) -> Estimate:
    """The pension estimate of the person whose keyed id hash is `person_key`."""
    person = (await session.execute(select(KnownPerson).where(KnownPerson.id_hash == person_key))).scalar_one_or_none()
    if person is not None and person.pensioner_from is not None:
        raise PersonIsPensioner(params={"pensioner_from": person.pensioner_from.isoformat()})
    enrolments = list((await session.execute(
        select(KnownEnrolment).where(KnownEnrolment.id_hash == person_key)
    )).scalars().all())
    chosen = _choose_enrolment(enrolments, current_month)
    if chosen is None:
        raise NotEnrolled(
            detail_zh="没有养老保险参保登记，无法测算", detail_en="No pension enrolment to estimate from",
            params={"insurance": "pension"},
        )
    category = Category(chosen.category)
    assumptions: list[Assumption] = []
    today_policy = await policy_in_force(session=session, region_code=chosen.region_code, month=current_month)

    # -- retirement age -------------------------------------------------------------------
    if category == Category.resident:
        original, basis = RESIDENT_AGE, "resident"
        assumptions.append(Assumption(
            "retirement_age_rule", "resident_60",
            "城乡居民养老保险年满60周岁领取（渐进式延迟退休决定只调整职工的法定退休年龄）",
            "Residents draw their pension at 60 (the 2024 decision raises employees' statutory ages only)",
        ))
    elif sex == "male":
        original, basis = 60, "male"
        assumptions.append(Assumption(
            "retirement_age_rule", "male_60_to_63",
            "男职工原法定退休年龄60周岁，自2025年1月起每4个月延迟1个月，最高63周岁（全国人大常委会2024年决定）",
            "Men: originally 60, one month later for every 4 months from 2025-01, up to 63 (NPC Standing "
            "Committee decision of 2024-09-13)",
        ))
    else:
        post = female_post or (FemalePost.worker if category == Category.employee else FemalePost.cadre)
        original = 50 if post == FemalePost.worker else 55
        basis = f"female_{post}"
        why_zh = ("按请求所选" if female_post else
                  "单位职工女性默认按工人岗位（50周岁），干部/管理岗可用 female_post=cadre" if category == Category.employee
                  else "以个人身份参保的灵活就业女性按常见做法适用55周岁，如原为工人岗位可用 female_post=worker")
        why_en = ("as the request chose" if female_post else
                  "a woman employed by a unit is taken as a worker (50) unless female_post=cadre" if category == Category.employee
                  else "women insured as flexible workers follow the common practice of 55; female_post=worker for 50")
        step_zh, step_en = ("每2个月延迟1个月，最高55周岁", "one month later for every 2 months, up to 55") if original == 50 \
            else ("每4个月延迟1个月，最高58周岁", "one month later for every 4 months, up to 58")
        assumptions.append(Assumption(
            "retirement_age_rule", f"female_{original}",
            f"女性原法定退休年龄{original}周岁（{why_zh}），自2025年1月起{step_zh}",
            f"Women: originally {original} ({why_en}), from 2025-01 {step_en}",
        ))
    if female_post is not None and not basis.startswith("female_"):
        assumptions.append(Assumption(
            "female_post_ignored", str(female_post), "female_post 只适用于职工（含灵活就业）女性，此处未使用",
            "female_post applies to women in the employee scheme (flexible included) only: not used here",
        ))
    retirement = statutory_retirement(birth, original_age_years=original)
    if category == Category.resident:
        retirement = Retirement(original_age_years=RESIDENT_AGE, original_month=retirement.original_month,
                                delay_months=0, age_months=RESIDENT_AGE * 12, month=retirement.original_month)
    retire_index = month_index(retirement.month)
    now_index = month_index(current_month)

    if category == Category.resident:
        return await _resident(
            session=session, person_key=person_key, chosen=chosen, today_policy=today_policy, sex=sex, birth=birth,
            retirement=retirement, now_index=now_index, assumptions=assumptions,
        )

    # -- employee and flexible: paid months, their bases and indices ---------------------------
    required = required_pension_months(int(retirement.month[:4]))
    assumptions.append(Assumption(
        "minimum_years", required,
        f"{retirement.month[:4]}年退休的最低缴费年限为{required}个月（2029年前15年，2030年起每年增加6个月，至2039年20年）",
        f"Minimum for retiring in {retirement.month[:4]}: {required} months (15 years to 2029, +6 months a year "
        "from 2030, 20 years from 2039)",
    ))
    rows = (await session.execute(
        select(ContributionRecord, Declaration.region_code)
        .join(Declaration, Declaration.id == ContributionRecord.declaration_id)
        .where(ContributionRecord.person_key == person_key, ContributionRecord.insurance == Insurance.pension,
               ContributionRecord.category.in_((Category.employee, Category.flexible)))
    )).all()
    bases: dict[str, tuple[int, str]] = {}
    for rec, region in rows:
        if len(rec.period) == 7 and rec.payer in (LinePayer.employee, LinePayer.individual):
            bases[rec.period] = (rec.base_fen, region)
    for rec, region in rows:  # a month with only an employer line still counts (its base is the same)
        if len(rec.period) == 7 and rec.period not in bases:
            bases[rec.period] = (rec.base_fen, region)
    lookups = await _policy_lookup(session, {r for _, r in bases.values()})
    indices: list[Fraction] = []
    no_policy: list[str] = []
    credits: dict[int, int] = {}
    for month, (base, region) in sorted(bases.items()):
        credits[month_index(month)] = half_up(Fraction(base * ACCOUNT_SHARE_BP, 10000))
        p = _policy_for(lookups.get(region, []), month)
        if p is None:
            no_policy.append(month)
        else:
            indices.append(Fraction(base, p.avg_wage_fen))
    if no_policy:
        assumptions.append(Assumption(
            "months_without_policy", no_policy,
            "以下月份没有当地平均工资，不计入平均缴费指数：" + "、".join(no_policy),
            "Months without a local average wage, left out of the average index: " + ", ".join(no_policy),
        ))
    months_paid = len(bases)

    # -- projection to the retirement month: the open enrolment goes on at the latest base ------------------
    projected: list[int] = []
    open_ = chosen.end_month is None or month_index(chosen.end_month) >= now_index
    if open_ and category in (Category.employee, Category.flexible):
        last_index = retire_index - 1
        if chosen.end_month is not None:
            last_index = min(last_index, month_index(chosen.end_month))
        paid_indices = {month_index(m) for m in bases}
        projected = [i for i in range(now_index, last_index + 1) if i not in paid_indices]
    if projected:
        if bases:
            latest = max(bases)
            base = bases[latest][0]
            src_zh, src_en = f"最近缴费月份 {latest} 的基数", f"the base of the latest month paid, {latest}"
        elif category == Category.employee and chosen.monthly_wage_fen:
            base = clamp(chosen.monthly_wage_fen, today_policy.base_lower_fen, today_policy.base_upper_fen)
            src_zh, src_en = "登记工资（按上下限调整）", "the registered wage, clamped to the band"
        else:
            base = today_policy.base_lower_fen
            src_zh, src_en = "当前缴费基数下限", "today's lower band"
        for i in projected:
            credits[i] = half_up(Fraction(base * ACCOUNT_SHARE_BP, 10000))
            indices.append(Fraction(base, today_policy.avg_wage_fen))
        assumptions.append(Assumption(
            "future_contributions", {"months": len(projected), "base_fen": base,
                                     "from": month_from_index(projected[0]), "to": month_from_index(projected[-1])},
            f"假设从 {month_from_index(projected[0])} 到 {month_from_index(projected[-1])} 按{src_zh}（{base}分）继续缴费，"
            "工资水平保持在今天的缴费基数区间",
            f"Assumes contributions go on from {month_from_index(projected[0])} to {month_from_index(projected[-1])} at "
            f"{src_en} ({base} fen), with wages staying at today's band",
        ))
    else:
        assumptions.append(Assumption(
            "future_contributions", None, "假设今后不再缴费（没有进行中的参保登记或已到退休月份）",
            "Assumes no further contributions (no open enrolment, or the retirement month is here)",
        ))
    total_months = months_paid + len(projected)
    average_index = sum(indices, Fraction(0)) / len(indices) if indices else None
    avg_wage = today_policy.avg_wage_fen
    assumptions.append(Assumption(
        "average_wage", {"avg_wage_fen": avg_wage, "policy_region_code": today_policy.region_code,
                         "policy_effective_from": today_policy.effective_from},
        f"退休时当地平均工资按今天的政策（{today_policy.region_code}，{today_policy.effective_from} 起）{avg_wage}分计算，不考虑今后增长",
        f"Average wage at retirement taken as today's policy's ({today_policy.region_code}, from "
        f"{today_policy.effective_from}): {avg_wage} fen, no future growth",
    ))
    basic = basic_pension_fen(avg_wage_fen=avg_wage, average_index=average_index or Fraction(0), months=total_months) \
        if total_months else 0
    growth = grow_account(credits=credits, rates=today_policy.account_interest_rates or {}, until_index=retire_index)
    _interest_assumption(assumptions, growth)
    divisor = divisor_for(retirement.age_months)
    assumptions.append(Assumption(
        "divisor", divisor,
        f"计发月数按退休时年满{retirement.age_years}周岁取{divisor}（国发〔2005〕38号附件，按周岁）",
        f"Divisor {divisor} for {retirement.age_years} completed years at retirement (State Council Guofa [2005] "
        "No. 38, table by whole years)",
    ))
    return Estimate(
        category=category, region_code=chosen.region_code, policy=today_policy, sex=sex,
        birth_month=f"{birth.year:04d}-{birth.month:02d}", retirement=retirement, basis=basis, months_paid=months_paid,
        months_projected=len(projected), required_months=required, average_index=average_index, basic_fen=basic,
        balance_fen=growth.balance_fen, divisor=divisor,
        account_fen=account_pension_fen(balance_fen=growth.balance_fen, divisor=divisor), assumptions=assumptions,
    )


def _interest_assumption(assumptions: list[Assumption], growth: AccountGrowth) -> None:
    rates = {str(y): r for y, r in sorted(growth.years_with_rate.items())}
    missing = sorted(growth.years_without_rate)
    zh = "个人账户按政策公布的记账利率计息：" + ("、".join(f"{y}年{r}bp" for y, r in rates.items()) or "无")
    en = "Account interest at the policy's yearly rates: " + (", ".join(f"{y} {r} bp" for y, r in rates.items()) or "none")
    if missing:
        zh += "；以下年份没有公布利率，不计息：" + "、".join(str(y) for y in missing)
        en += "; no rate published, no interest assumed for " + ", ".join(str(y) for y in missing)
    assumptions.append(Assumption("account_interest", {"rates_bp": rates, "years_without_rate": missing}, zh, en))


async def _resident(
    *, session: AsyncSession, person_key: str, chosen: KnownEnrolment, today_policy: Policy, sex: str, birth: date,
    retirement: Retirement, now_index: int, assumptions: list[Assumption],
) -> Estimate:
    """A resident: the region's basic pension + the account (grades and subsidies) / 139."""
    rows = (await session.execute(
        select(ContributionRecord, Declaration.subsidy_fen)
        .join(Declaration, Declaration.id == ContributionRecord.declaration_id)
        .where(ContributionRecord.person_key == person_key, ContributionRecord.category == Category.resident,
               ContributionRecord.insurance == Insurance.pension)
    )).all()
    years: dict[int, int] = {}
    last_grade: int | None = None
    for rec, subsidy in sorted(rows, key=lambda r: r[0].period):
        if len(rec.period) == 4:
            years[int(rec.period)] = years.get(int(rec.period), 0) + rec.amount_fen + int(subsidy or 0)
            last_grade = rec.base_fen
    retire_index = month_index(retirement.month)
    projected: list[int] = []
    if chosen.end_month is None or month_index(chosen.end_month) >= now_index:
        last_year = (retire_index - 12) // 12  # a year whose December credit comes before the retirement month
        projected = [y for y in range(now_index // 12, last_year + 1) if y not in years]
    if projected:
        grades = sorted(today_policy.grades, key=lambda g: int(g["grade_fen"]))
        grade = next((g for g in grades if int(g["grade_fen"]) == last_grade), grades[0] if grades else None)
        amount = int(grade["grade_fen"]) + int(grade["subsidy_fen"]) if grade else 0
        for y in projected:
            years[y] = amount
        assumptions.append(Assumption(
            "future_contributions", {"years": projected, "grade_fen": int(grade["grade_fen"]) if grade else 0},
            f"假设 {projected[0]}-{projected[-1]} 年每年按档次 {grade['grade_fen'] if grade else 0} 分缴费并获同额补贴",
            f"Assumes the grade of {grade['grade_fen'] if grade else 0} fen and its subsidy every year "
            f"{projected[0]}-{projected[-1]}",
        ))
    # A year's grade and subsidy are credited at the end of that year (no interest that year).
    credits = {y * 12 + 11: a for y, a in years.items()}
    growth = grow_account(credits=credits, rates=today_policy.account_interest_rates or {}, until_index=retire_index)
    _interest_assumption(assumptions, growth)
    basic = today_policy.resident_basic_pension_fen
    if basic is None:
        assumptions.append(Assumption("resident_basic_pension", None, "政策未给出城乡居民基础养老金，按0计算",
                                      "The policy holds no residents' basic pension: counted as 0"))
    else:
        assumptions.append(Assumption(
            "resident_basic_pension", basic, f"基础养老金按今天的政策 {basic} 分/月",
            f"Basic pension as today's policy: {basic} fen a month",
        ))
    required = RESIDENT_MINIMUM_MONTHS
    assumptions.append(Assumption("minimum_years", required, "城乡居民累计缴费满15年", "Residents: 15 years paid"))
    divisor = DIVISORS[RESIDENT_AGE]
    assumptions.append(Assumption("divisor", divisor, "个人账户养老金 = 账户储存额 ÷ 139",
                                  "Account pension = balance / 139"))
    paid_years = len([y for y in years if y not in projected])
    return Estimate(
        category=Category.resident, region_code=chosen.region_code, policy=today_policy, sex=sex,
        birth_month=f"{birth.year:04d}-{birth.month:02d}", retirement=retirement, basis="resident",
        months_paid=paid_years * 12, months_projected=len(projected) * 12, required_months=required, average_index=None,
        basic_fen=basic or 0, balance_fen=growth.balance_fen, divisor=divisor,
        account_fen=account_pension_fen(balance_fen=growth.balance_fen, divisor=divisor), assumptions=assumptions,
    )
