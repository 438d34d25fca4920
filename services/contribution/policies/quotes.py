"""Quotes: months priced at a base or a yearly grade, itemized per month, insurance and payer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.enums import Category, Insurance
from services.common.identifiers import month_index
from services.contribution.enums import LinePayer
from services.contribution.errors import (
    BackPaymentOutsideWindow,
    BaseNotOffered,
    BaseOutsideBand,
    GradeNotOffered,
    MonthsTooFarAhead,
    PaymentFrequencyMismatch,
    PolicyNotFound,
)
from services.contribution.models import Policy
from services.contribution.policies.pricing import (
    FREQUENCY_MONTHS,
    Line,
    earliest_back_pay_month,
    fits_frequency,
    latest_month_ahead,
    premium,
    whole_periods,
)
from services.contribution.policies.service import policies_for_months, tiers_fen
from services.contribution.schemas import LineOut, QuoteIn, QuoteOut

INSURANCE_ORDER = list(Insurance)


@dataclass
class Priced:
    """A priced request: lines, totals, and the months it covers."""

    category: Category
    region_code: str
    months: list[str]
    back_payment_months: list[str]
    lines: list[Line]
    year: int | None = None
    periods: list[str] = field(default_factory=list)  # YYYY-MM, or YYYY for a resident's year

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.payer != LinePayer.government)

    @property
    def subsidy_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.payer == LinePayer.government)


def line_out(line: Line) -> LineOut:
    return LineOut(
        month=line.month, insurance=line.insurance, payer=line.payer, base_fen=line.base_fen,
        rate_bp=line.rate_bp, amount_fen=line.amount_fen, person_id=line.person_id,
    )


def quote_out(priced: Priced) -> QuoteOut:
    """The public shape of a quote."""
    return QuoteOut(
        category=priced.category, region_code=priced.region_code, months=priced.months,
        back_payment_months=priced.back_payment_months, lines=[line_out(x) for x in priced.lines],
        total_fen=priced.total_fen, subsidy_fen=priced.subsidy_fen,
    )


def _window_error(window: str, earliest: str, months: list[str]) -> BackPaymentOutsideWindow:
    return BackPaymentOutsideWindow(
        detail_zh=f"补缴期限为 {window}：最早可补缴 {earliest}",
        detail_en=f"The back-payment window is {window}: the earliest month allowed is {earliest}",
        params={"window": window, "earliest_month": earliest, "months": months},
    )


def check_months(months: list[str], *, current_month: str, window: str) -> list[str]:
    """Refuse months too far ahead or before the back-pay window; the back-paid months."""
    latest = latest_month_ahead(current_month)
    ahead = [m for m in months if month_index(m) > month_index(latest)]
    if ahead:
        raise MonthsTooFarAhead(
            detail_zh=f"最晚可预缴至 {latest}", detail_en=f"The latest month that may be paid is {latest}",
            params={"latest_month": latest, "months": ahead},
        )
    earliest = earliest_back_pay_month(window, current_month)
    back = [m for m in months if month_index(m) < month_index(current_month)]
    refused = [m for m in back if month_index(m) < month_index(earliest)]
    if refused:
        raise _window_error(window, earliest, refused)
    return back


def payer_lines(
    policy: Policy, *, month: str, base_fen: int, category: Category, work_injury_class: int | None,
    insurances: list[str] | None = None, person_key: str | None = None, person_id: str | None = None,
) -> list[Line]:
    """The lines of one month at a base: per insurance, the payers the category has."""
    payers = [LinePayer.individual] if category == Category.flexible else [LinePayer.employer, LinePayer.employee]
    lines: list[Line] = []
    for ins in INSURANCE_ORDER:
        if insurances is not None and ins not in insurances:
            continue
        if ins == Insurance.work_injury:
            if category != Category.employee or work_injury_class is None:
                continue
            rate = int(policy.work_injury_rates.get(str(work_injury_class), 0))
            rates = {LinePayer.employer: rate}
        else:
            per = policy.rates.get(str(ins)) or {}
            rates = {p: int(per.get(str(p), 0)) for p in payers}
        for payer in payers:
            rate = rates.get(payer, 0)
            if rate > 0:
                lines.append(Line(
                    month=month, insurance=ins, payer=payer, base_fen=base_fen, rate_bp=rate,
                    amount_fen=premium(base_fen, rate, policy.rounding), person_key=person_key, person_id=person_id,
                ))
            levy = int((policy.medical_levies_fen or {}).get(str(payer), 0)) if ins == Insurance.medical else 0
            if levy > 0:
                # A fixed monthly levy (e.g. Beijing's 3 CNY for employees) is its own line: rate 0, the amount fixed.
                lines.append(Line(
                    month=month, insurance=ins, payer=payer, base_fen=base_fen, rate_bp=0, amount_fen=levy,
                    person_key=person_key, person_id=person_id,
                ))
    return lines


def check_base(policy: Policy, *, month: str, base_fen: int, category: Category) -> None:
    """The base must be one of the region's fixed flexible tiers when it has them, else inside the band."""
    tiers = tiers_fen(policy) if category == Category.flexible else []
    if tiers:
        if base_fen not in tiers:
            raise BaseNotOffered(
                detail_zh=f"{month} 可选的缴费基数（分）：{'、'.join(str(t) for t in tiers)}",
                detail_en=f"The bases offered for {month} are {', '.join(str(t) for t in tiers)} fen",
                params={"month": month, "tiers_fen": tiers,
                        "tiers_pct": [int(t) for t in policy.flexible_base_tiers_pct]},
                errors=[{"field": "base_fen", "code": "base_not_offered",
                         "message_zh": "请选择规定的缴费档次", "message_en": "not one of the offered tiers"}],
            )
        return
    if not policy.base_lower_fen <= base_fen <= policy.base_upper_fen:
        raise BaseOutsideBand(
            detail_zh=f"{month} 的缴费基数应在 {policy.base_lower_fen} 至 {policy.base_upper_fen} 分之间",
            detail_en=f"The base for {month} must be between {policy.base_lower_fen} and {policy.base_upper_fen} fen",
            params={"month": month, "base_lower_fen": policy.base_lower_fen, "base_upper_fen": policy.base_upper_fen},
            errors=[{"field": "base_fen", "code": "base_outside_band",
                     "message_zh": "缴费基数超出上下限", "message_en": "outside the band"}],
        )


def check_frequency(months: list[str], policies: dict[str, Policy]) -> None:
    """缴费周期: months declared together are whole calendar periods of a frequency every month's policy allows.

    Monthly allows any months; quarterly whole quarters (Jan-Mar, Apr-Jun, ...); half-yearly
    Jan-Jun or Jul-Dec; yearly the whole calendar year. One declaration may hold several
    whole periods (two quarters, say).
    """
    allowed = [f for f in FREQUENCY_MONTHS if all(f in (p.frequencies or []) for p in policies.values())]
    if any(fits_frequency(months, f) for f in allowed):
        return
    smallest = allowed[0] if allowed else None
    raise PaymentFrequencyMismatch(
        detail_zh=f"该地区允许的缴费周期：{'、'.join(allowed) or '无'}；请按整个周期申报",
        detail_en=f"The region allows paying {', '.join(allowed) or 'no frequency'}: declare whole calendar periods",
        params={"frequencies": allowed, "months": months,
                "months_to_declare": whole_periods(months, smallest) if smallest else []},
        errors=[{"field": "months", "code": "payment_frequency_mismatch",
                 "message_zh": "月份不是完整的缴费周期", "message_en": "not whole periods of an allowed frequency"}],
    )


async def back_pay_window_in_force(
    *, session: AsyncSession, region_code: str, current_month: str, fallback: Policy,
) -> str:
    """补缴期限: how far back one may pay is the rule of the policy in force today.

    The back-pay rule, for every category: the policy in force on the day of the
    request (its business month, Asia/Shanghai) decides how far back one may pay; the
    policy in force for each month paid decides that month's amounts (band, rates,
    grades, subsidy). A region with no policy in force today keeps the window of the
    policy the request is priced under (`fallback`).
    """
    try:
        today_policy = await policies_for_months(session=session, region_code=region_code, months=[current_month])
    except PolicyNotFound:
        return fallback.back_pay_window
    return today_policy[current_month].back_pay_window


async def price(*, session: AsyncSession, body: QuoteIn, today: date, current_month: str) -> Priced:
    """Price a request against the policies in force; refuse what the rules refuse.

    The window comes from today's policy and the amounts from each month's policy
    (see `back_pay_window_in_force`), for flexible months and resident years alike.
    """
    if body.category == Category.resident:
        return await _price_resident(session=session, body=body, today=today, current_month=current_month)
    assert body.months is not None and body.base_fen is not None
    months = list(body.months)
    policies = await policies_for_months(session=session, region_code=body.region_code, months=months)
    window = await back_pay_window_in_force(
        session=session, region_code=body.region_code, current_month=current_month, fallback=policies[months[0]],
    )
    back = check_months(months, current_month=current_month, window=window)
    if body.category == Category.flexible:
        check_frequency(months, policies)
    lines: list[Line] = []
    for month in months:
        p = policies[month]
        check_base(p, month=month, base_fen=body.base_fen, category=body.category)
        lines += payer_lines(p, month=month, base_fen=body.base_fen, category=body.category,
                             work_injury_class=body.work_injury_class)
    return Priced(category=body.category, region_code=body.region_code, months=months, back_payment_months=back,
                  lines=lines, periods=months)


async def _price_resident(*, session: AsyncSession, body: QuoteIn, today: date, current_month: str) -> Priced:
    """A resident's yearly grade: one individual line, and the government's subsidy as its own line."""
    assert body.year is not None and body.grade_fen is not None
    first = f"{body.year:04d}-01"
    policy = (await policies_for_months(session=session, region_code=body.region_code, months=[first]))[first]
    year_months = [f"{body.year:04d}-{m:02d}" for m in range(1, 13)]
    back_year = body.year < today.year
    if back_year:
        window = await back_pay_window_in_force(
            session=session, region_code=body.region_code, current_month=current_month, fallback=policy,
        )
        earliest = earliest_back_pay_month(window, current_month)
        if month_index(year_months[-1]) < month_index(earliest):
            raise _window_error(window, earliest, [str(body.year)])
    if month_index(first) > month_index(latest_month_ahead(current_month)):
        latest = latest_month_ahead(current_month)
        raise MonthsTooFarAhead(params={"latest_month": latest, "months": [str(body.year)]},
                                detail_en=f"The latest month that may be paid is {latest}")
    grade = next((g for g in policy.grades if int(g["grade_fen"]) == body.grade_fen), None)
    if grade is None:
        offered = [int(g["grade_fen"]) for g in policy.grades]
        raise GradeNotOffered(
            detail_zh="请选择该地区提供的缴费档次", detail_en="Choose one of the grades the region offers",
            params={"grades_fen": offered},
            errors=[{"field": "grade_fen", "code": "grade_not_offered",
                     "message_zh": "没有此档次", "message_en": "grade not offered"}],
        )
    lines = [Line(month=first, insurance=Insurance.pension, payer=LinePayer.individual, base_fen=body.grade_fen,
                  rate_bp=10000, amount_fen=body.grade_fen)]
    subsidy = 0 if back_year else int(grade["subsidy_fen"])  # back-paid years get no subsidy
    if subsidy:
        lines.append(Line(month=first, insurance=Insurance.pension, payer=LinePayer.government,
                          base_fen=body.grade_fen, rate_bp=0, amount_fen=subsidy))
    return Priced(category=Category.resident, region_code=body.region_code, months=[first],
                  back_payment_months=[first] if back_year else [], lines=lines, year=body.year,
                  periods=[str(body.year)])
