"""养老金测算: the statutory retirement month, the minimum years, and an estimated monthly pension.

The rules, and where they come from:

- Retirement age: Decision of the NPC Standing Committee on gradually raising the statutory
  retirement age (adopted 2024-09-13, in force 2025-01-01) and the State Council's Measures it
  approves, art. 1: from 2025-01 men and women whose original age is 55 retire one month later
  for every 4 months (to 63 and 58), women whose original age is 50 one month later for every
  2 months (to 55). Equivalently, counted from the original retirement month: the first month
  of 2025 and the three after it retire 1 month later, and so on, capped at 36 (60) months.
- Minimum years (Measures art. 2): 15 years until 2029, then 6 more months each year from 2030,
  20 years from 2039 (`pricing.required_pension_months`).
- Pension (Guofa [2005] No. 38, art. 6): basic pension = average wage x (1 + average
  contribution index) / 2 x years x 1%; account pension = account balance / the months of its
  table (139 at 60, 170 at 55, 195 at 50 ...). The table is by whole years of age: the divisor
  used is the one of the completed years at retirement.
- Account interest: the year's rate on the balance at the start of the year, and on each month
  credited for the months it is held in that year (a month credited in month m earns
  (13 - m)/12 of the year's rate, which is the 1997 rule's "1.083 x 1/2" on an even year).
- Residents (城乡居民): pension at 60, the region's basic pension + account / 139; 15 years.

Money is integer fen; ratios are Fractions; each figure is rounded once, half up to the fen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any

from services.common.identifiers import month_from_index, month_index

REFORM_START = "2025-01"
RESIDENT_AGE = 60
RESIDENT_MINIMUM_MONTHS = 15 * 12
ACCOUNT_SHARE_BP = 800  # 8% of the base goes to the individual account (employee and flexible alike)


# 国发〔2005〕38号 附件: 个人账户养老金计发月数表 (age in whole years -> months).
DIVISORS: dict[int, int] = {
    40: 233, 41: 230, 42: 226, 43: 223, 44: 220, 45: 216, 46: 212, 47: 207, 48: 204, 49: 199,
    50: 195, 51: 190, 52: 185, 53: 180, 54: 175, 55: 170, 56: 164, 57: 158, 58: 152, 59: 145,
    60: 139, 61: 132, 62: 125, 63: 117, 64: 109, 65: 101,
}


class FemalePost(StrEnum):
    """A woman's original retirement age: worker (工人, 50) or cadre (干部/管理岗, 55)."""

    worker = "worker"
    cadre = "cadre"


def half_up(value: Fraction) -> int:
    """A non-negative amount rounded half up to the unit."""
    return int((value * 2 + 1) // 2)


@dataclass(frozen=True)
class Retirement:
    """The statutory retirement month and age under the 2024 decision."""

    original_age_years: int
    original_month: str
    delay_months: int
    age_months: int
    month: str

    @property
    def age_years(self) -> int:
        return self.age_months // 12


def statutory_retirement(birth: date, *, original_age_years: int) -> Retirement:
    """The retirement month of someone born in `birth`'s month whose original age was 60, 55 or 50."""
    born = birth.year * 12 + birth.month - 1
    original = born + original_age_years * 12
    start = month_index(REFORM_START)
    delay = 0
    if original >= start:
        step, cap = (2, 60) if original_age_years == 50 else (4, 36)
        delay = min(cap, (original - start) // step + 1)
    return Retirement(
        original_age_years=original_age_years, original_month=month_from_index(original), delay_months=delay,
        age_months=original_age_years * 12 + delay, month=month_from_index(original + delay),
    )


def divisor_for(age_months: int) -> int:
    """计发月数 for a retirement age (the table's whole years: the completed years count)."""
    years = min(max(age_months // 12, min(DIVISORS)), max(DIVISORS))
    return DIVISORS[years]


def basic_pension_fen(*, avg_wage_fen: int, average_index: Fraction, months: int) -> int:
    """基础养老金: average wage x (1 + index) / 2 x years x 1%, half up to the fen."""
    return half_up(Fraction(avg_wage_fen) * (1 + average_index) / 2 * Fraction(months, 12) / 100)


def account_pension_fen(*, balance_fen: int, divisor: int) -> int:
    """个人账户养老金: the balance over the months of the table, half up to the fen."""
    return half_up(Fraction(balance_fen, divisor))


@dataclass
class AccountGrowth:
    balance_fen: int = 0
    credited_fen: int = 0
    years_with_rate: dict[int, int] = field(default_factory=dict)
    years_without_rate: list[int] = field(default_factory=list)


def grow_account(*, credits: dict[int, int], rates: dict[str, Any], until_index: int) -> AccountGrowth:
    """The account balance the month before `until_index`: credits by month index, yearly rates in bp."""
    out = AccountGrowth()
    if not credits:
        return out
    last = until_index - 1
    first_year = min(credits) // 12
    last_year = max(last, max(credits)) // 12
    for year in range(first_year, last_year + 1):
        end = min(year * 12 + 11, max(last, max(credits)))
        held_to = end % 12 + 1  # months of the year the balance is held
        opening = out.balance_fen
        this_year = {i: a for i, a in credits.items() if i // 12 == year}
        rate = rates.get(str(year))
        interest = Fraction(0)
        if rate is not None:
            r = Fraction(int(rate), 10000)
            interest = opening * r * Fraction(held_to, 12)
            interest += sum((a * r * Fraction(held_to - (i % 12), 12) for i, a in this_year.items()), Fraction(0))
            out.years_with_rate[year] = int(rate)
        elif opening or this_year:
            out.years_without_rate.append(year)
        added = sum(this_year.values())
        out.credited_fen += added
        out.balance_fen = opening + added + half_up(interest)
    return out
