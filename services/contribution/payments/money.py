"""Money at the platform boundary: integer fen inside, yuan strings on the wire."""

from __future__ import annotations

import re

_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")
MAX_FEN = 10**14


class AmountInvalid(ValueError):
    """A yuan string that is not a plain non-negative amount with at most two decimals."""


def yuan_to_fen(value: str) -> int:
    """`"12.30"` -> 1230, exactly: no float, no sign, no exponent, at most two decimals."""
    if not isinstance(value, str):
        raise AmountInvalid("amount must be a string")
    m = _YUAN.fullmatch(value)
    if m is None:
        raise AmountInvalid("not a yuan amount")
    whole, frac = m.group(1), (m.group(2) or "")
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def fen_to_yuan(fen: int) -> str:
    """1230 -> `"12.30"` (two decimals, as both platforms and the certificate show money)."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0 or fen >= MAX_FEN:
        raise AmountInvalid("fen must be a non-negative integer")
    return f"{fen // 100}.{fen % 100:02d}"


def fen_to_display(fen: int) -> str:
    """1234567 -> `"12,345.67"` for people."""
    yuan = fen_to_yuan(fen)
    whole, frac = yuan.split(".")
    return f"{int(whole):,}.{frac}"
