"""Pricing rules: rounding, the back-pay window, months ahead, and the itemized lines.

Pure functions over integers (fen and basis points): nothing here touches the
database, and no float is ever involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.common.enums import Insurance
from services.common.identifiers import ascii_digits, month_from_index, month_index
from services.contribution.enums import LinePayer

MONTHS_AHEAD = 12


class Rounding(StrEnum):
    fen_half_up = "fen_half_up"
    jiao_up = "jiao_up"


@dataclass(frozen=True)
class Line:
    """One priced month, insurance and payer."""

    month: str
    insurance: Insurance
    payer: LinePayer
    base_fen: int
    rate_bp: int
    amount_fen: int
    person_key: str | None = None
    person_id: str | None = None


def round_fen(numerator: int, denominator: int, rounding: str) -> int:
    """numerator/denominator fen, rounded by the region's rule (half up to the fen, or up to the jiao)."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("amounts are never negative")
    if rounding == Rounding.jiao_up:
        jiao = -(-numerator // (denominator * 10))
        return jiao * 10
    return (2 * numerator + denominator) // (2 * denominator)


def premium(base_fen: int, rate_bp: int, rounding: str) -> int:
    """base x rate (basis points), rounded."""
    return round_fen(base_fen * rate_bp, 10000, rounding)


def late_fee(arrears_fen: int, per_10000_per_day: int, days: int, rounding: str) -> int:
    """Art. 86: arrears x rate x days after the deadline, simple interest."""
    if days <= 0:
        return 0
    return round_fen(arrears_fen * per_10000_per_day * days, 10000, rounding)


def clamp(value: int, lower: int, upper: int) -> int:
    """A wage clamped to the band."""
    return max(lower, min(upper, value))


def parse_window(window: str) -> tuple[str, int]:
    """`current_year`, `months:N` or `none` -> (kind, N)."""
    if window in ("current_year", "none"):
        return window, 0
    if window.startswith("months:"):
        n = window.split(":", 1)[1]
        if ascii_digits(n) and 0 < int(n) <= 600:
            return "months", int(n)
    raise ValueError(f"unknown back-pay window {window!r}")


def earliest_back_pay_month(window: str, current_month: str) -> str:
    """The first month the window still allows (the current month when it allows none)."""
    kind, n = parse_window(window)
    if kind == "current_year":
        return f"{current_month[:4]}-01"
    if kind == "months":
        return month_from_index(month_index(current_month) - n)
    return current_month


def latest_month_ahead(current_month: str) -> str:
    """Up to 12 months after the current month may be paid in advance."""
    return month_from_index(month_index(current_month) + MONTHS_AHEAD)


def deadline_of(month: str, deadline_day: int) -> date:
    """Month M is due by day D of month M (the month's last day when D is beyond it)."""
    y, m = (int(p) for p in month.split("-"))
    day = deadline_day
    while True:
        try:
            return date(y, m, day)
        except ValueError:
            day -= 1


def required_pension_months(year: int) -> int:
    """Minimum paid months for a monthly pension: 15 years to 2029, +6 months a year from 2030, 20 from 2039."""
    if year <= 2029:
        return 180
    return min(240, 180 + 6 * (year - 2029))


FREQUENCY_MONTHS = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "yearly": 12}


def fits_frequency(months: list[str], frequency: str) -> bool:
    """True when the months are whole calendar periods of the frequency (a quarterly payer declares
    January-March, April-June, ...; half-yearly January-June or July-December; yearly the whole year)."""
    size = FREQUENCY_MONTHS[frequency]
    periods: dict[tuple[int, int], set[int]] = {}
    for month in months:
        y, m = int(month[:4]), int(month[5:7])
        periods.setdefault((y, (m - 1) // size), set()).add(m)
    return all(len(ms) == size for ms in periods.values())


def whole_periods(months: list[str], frequency: str) -> list[str]:
    """The months of every calendar period of the frequency that the months touch (what would fit)."""
    size = FREQUENCY_MONTHS[frequency]
    out: set[str] = set()
    for month in months:
        y, m = int(month[:4]), int(month[5:7])
        first = (m - 1) // size * size + 1
        out.update(f"{y:04d}-{k:02d}" for k in range(first, first + size))
    return sorted(out)
