"""National identifiers: resident id number (GB 11643-1999), unified social credit code
(GB 32100-2015), region codes (GB/T 2260), payment months."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from services.common.clock import SHANGHAI
from services.common.errors import register_validation_code

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$")

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

register_validation_code("id_number_invalid", "身份证号码无效")
register_validation_code("credit_code_invalid", "统一社会信用代码无效")
register_validation_code("region_code_invalid", "行政区划代码应为6位数字")
register_validation_code("month_invalid", "月份格式应为 YYYY-MM")


def id_number_check_char(first17: str) -> str:
    """The GB 11643 check character for 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalize_id_number(value: str, *, today: date | None = None) -> str:
    """Validate and normalize (lowercase x to X); raise ValueError with a reason."""
    v = value.strip().upper()
    if not _ID_RE.match(v):
        raise ValueError("an id number is 17 digits and a digit or X")
    try:
        born = datetime.strptime(v[6:14], "%Y%m%d").date()
    except ValueError:
        raise ValueError("the birth date in the id number is not a real date") from None
    today = today or datetime.now(SHANGHAI).date()
    if born > today or born.year < 1850:
        raise ValueError("the birth date in the id number is in the future or implausible")
    if id_number_check_char(v[:17]) != v[17]:
        raise ValueError("the check digit does not match")
    return v


def is_valid_id_number(value: str) -> bool:
    try:
        normalize_id_number(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class IdNumberInfo:
    region_code: str
    birth_date: date
    sex: str  # male / female


def id_number_info(value: str) -> IdNumberInfo:
    """Region, birth date and sex encoded in a valid id number."""
    v = normalize_id_number(value)
    born = datetime.strptime(v[6:14], "%Y%m%d").date()
    return IdNumberInfo(region_code=v[:6], birth_date=born, sex="male" if int(v[16]) % 2 == 1 else "female")


def _id_number(value: str) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("id_number_invalid", "id number must be a string")
    try:
        return normalize_id_number(value)
    except ValueError as exc:
        raise PydanticCustomError("id_number_invalid", "invalid id number: {reason}", {"reason": str(exc)}) from None


def credit_code_check_char(first17: str) -> str:
    """The GB 32100 check character for 17 characters."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def normalize_credit_code(value: str) -> str:
    """Validate and normalize a unified social credit code; raise ValueError."""
    v = value.strip().upper()
    if len(v) != 18 or any(c not in _USCC_ALPHABET for c in v):
        raise ValueError("a credit code is 18 characters of 0-9 and A-Y without I, O, Z, S, V")
    if credit_code_check_char(v[:17]) != v[17]:
        raise ValueError("the check character does not match")
    return v


def is_valid_credit_code(value: str) -> bool:
    try:
        normalize_credit_code(value)
    except ValueError:
        return False
    return True


def _credit_code(value: str) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("credit_code_invalid", "credit code must be a string")
    try:
        return normalize_credit_code(value)
    except ValueError as exc:
        raise PydanticCustomError("credit_code_invalid", "invalid credit code: {reason}", {"reason": str(exc)}) from None


def _region_code(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[1-9]\d{5}", value):
        raise PydanticCustomError("region_code_invalid", "a region code is six digits (GB/T 2260)")
    return value


_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _month(value: str) -> str:
    if not isinstance(value, str) or not _MONTH_RE.match(value):
        raise PydanticCustomError("month_invalid", "a month is YYYY-MM")
    return value


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


IdNumber = Annotated[str, BeforeValidator(_strip), Field(max_length=32), AfterValidator(_id_number)]
CreditCode = Annotated[str, BeforeValidator(_strip), Field(max_length=32), AfterValidator(_credit_code)]
# No length bounds on the field itself: every malformed code (short, long, letters)
# reaches the validator and answers `region_code_invalid`, not `validation_failed`.
RegionCode = Annotated[str, Field(examples=["110105"], json_schema_extra={"pattern": "^[1-9][0-9]{5}$"}),
                       AfterValidator(_region_code)]
Month = Annotated[str, Field(max_length=7, examples=["2026-03"]), AfterValidator(_month)]


def region_candidates(region_code: str) -> list[str]:
    """The region, its city and its province: 110105 -> 110105, 110100, 110000."""
    out = [region_code]
    city = region_code[:4] + "00"
    province = region_code[:2] + "0000"
    for c in (city, province):
        if c not in out:
            out.append(c)
    return out


def month_index(month: str) -> int:
    """YYYY-MM as a month count, for arithmetic."""
    y, m = month.split("-")
    return int(y) * 12 + int(m) - 1


def month_from_index(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"
