"""National identifiers: resident id number (GB 11643-1999), unified social credit code
(GB 32100-2015), region codes (GB/T 2260), payment months, names, and the one rule for
digits a client sends.

Digits: the regex digit class, `str.isdigit` and `int()` accept every Unicode digit, so
`２０２５-08` and `2025-08` would be two different months. Every identifier, month,
year, code and number a client sends goes through `to_ascii` once: the full-width
forms a Chinese input method types (`０-９`, `Ａ-Ｚ`, `ａ-ｚ`, `－`) become their ASCII
letters, and everything else that is not ASCII stays as it is and is then refused by
the field's own check, which only knows `[0-9]` and ASCII letters. Only ASCII is ever
stored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from services.common.clock import SHANGHAI
from services.common.errors import register_validation_code
from services.common.regions import TABLE_DATE, is_known_region, region_code_pattern

# Full-width digits, letters and hyphen-minus, and the ideographic space, to ASCII.
_FULL_WIDTH = {
    **{0xFF10 + i: 0x30 + i for i in range(10)},
    **{0xFF21 + i: 0x41 + i for i in range(26)},
    **{0xFF41 + i: 0x61 + i for i in range(26)},
    0xFF0D: 0x2D,
    0x3000: 0x20,
}


def to_ascii(value: str) -> str:
    """Full-width forms to ASCII; any other character is left for the field's check to refuse."""
    return value.translate(_FULL_WIDTH)


_ASCII_DIGITS = re.compile(r"[0-9]+")


def ascii_digits(value: str) -> bool:
    """True for a non-empty run of ASCII digits only (what `int()` may then read)."""
    return _ASCII_DIGITS.fullmatch(value) is not None


def _clean(value: str) -> str:
    return to_ascii(value).strip()


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")

# GB/T 2260 provinces (and Taiwan, Hong Kong, Macao). The county part of an id number
# is not checked against today's table: old numbers keep abolished county codes.
PROVINCES = frozenset(
    [f"{n}" for n in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                      50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82)]
)

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 32100-2015, appendix A: registration authority (position 1) and the organization
# types it registers (position 2).
USCC_TYPES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),    # 机构编制: 机关, 事业单位, 群众团体, 其他
    "2": frozenset("19"),      # 外交: 外国常驻新闻机构, 其他
    "3": frozenset("123459"),  # 司法行政: 律师执业机构, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    "4": frozenset("19"),      # 文化: 外国在华文化中心, 其他
    "5": frozenset("1239"),    # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": frozenset("129"),     # 旅游: 外国及港澳台旅游部门常驻代表机构, 其他
    "7": frozenset("129"),     # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": frozenset("19"),      # 工会: 基层工会, 其他
    "9": frozenset("123"),     # 市场监管 (工商): 企业, 个体工商户, 农民专业合作社
    "A": frozenset("19"),      # 中央军委改革和编制办公室: 军队事业单位, 其他
    "N": frozenset("1239"),    # 农业农村: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": frozenset("1"),       # 其他
}
# The registering authority's division code (positions 3-8): a province, or 10 for
# authorities of the central government (100000).
_USCC_DIVISION_RE = re.compile(r"^[0-9]{6}$")

register_validation_code("id_number_invalid", "身份证号码无效")
register_validation_code("credit_code_invalid", "统一社会信用代码无效")
register_validation_code("region_code_invalid", "行政区划代码应为6位数字")
register_validation_code("region_code_unknown", "行政区划代码不存在")
register_validation_code("month_invalid", "月份格式应为 YYYY-MM")
register_validation_code("name_invalid", "姓名只能包含汉字、字母、间隔号（·）和空格")


def id_number_check_char(first17: str) -> str:
    """The GB 11643 check character for 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalize_id_number(value: str, *, today: date | None = None) -> str:
    """Validate and normalize (full-width to ASCII, lowercase x to X); raise ValueError with a reason."""
    v = _clean(value).upper()
    if not _ID_RE.match(v):
        raise ValueError("an id number is 17 digits and a digit or X")
    if v[:2] not in PROVINCES:
        raise ValueError("the first two digits are not a province")
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))  # ASCII digits already (the pattern)
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
    born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
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
    """Validate and normalize a unified social credit code (layout and check character); raise ValueError."""
    v = _clean(value).upper()
    if len(v) != 18 or any(c not in _USCC_ALPHABET for c in v):
        raise ValueError("a credit code is 18 characters of 0-9 and A-Y without I, O, Z, S, V")
    types = USCC_TYPES.get(v[0])
    if types is None:
        raise ValueError("the first character is not a registration authority")
    if v[1] not in types:
        raise ValueError("the second character is not an organization type of that authority")
    division = v[2:8]
    if not _USCC_DIVISION_RE.match(division) or (division[:2] not in PROVINCES and division[:2] != "10"):
        raise ValueError("characters 3-8 are not an administrative division code")
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


_REGION_RE = re.compile(r"^[1-9][0-9]{5}$")


def normalize_region_code(value: str) -> str:
    """Six ASCII digits whose first two are a province; raise ValueError."""
    v = _clean(value)
    if not _REGION_RE.match(v) or v[:2] not in PROVINCES:
        raise ValueError("a region code is six digits (GB/T 2260) in a province")
    return v


def _region_code(value: object) -> str:
    """A region code a client sends: six digits in a province, and a division in today's table.

    Only codes a client names as a region go through here; an id number's region digits
    are never checked against the table (old numbers keep abolished county codes)."""
    if not isinstance(value, str):
        raise PydanticCustomError("region_code_invalid", "a region code is six digits (GB/T 2260)")
    try:
        code = normalize_region_code(value)
    except ValueError:
        raise PydanticCustomError("region_code_invalid", "a region code is six digits (GB/T 2260)") from None
    if not is_known_region(code):
        raise PydanticCustomError(
            "region_code_unknown", "no administrative division has this code (GB/T 2260 table of {date})",
            {"date": TABLE_DATE},
        )
    return code


# Months start with the first insurance rules (1951, the Labour Insurance Regulations);
# how far ahead a month may be paid is the contribution rules' business (12 months).
FIRST_YEAR = 1951
LAST_YEAR = 2100
_MONTH_RE = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


def normalize_month(value: str) -> str:
    """YYYY-MM in ASCII digits, 1951-01 to 2100-12; raise ValueError."""
    v = _clean(value)
    m = _MONTH_RE.match(v)
    if m is None or not FIRST_YEAR <= int(m.group(1)) <= LAST_YEAR:
        raise ValueError(f"a month is YYYY-MM between {FIRST_YEAR}-01 and {LAST_YEAR}-12")
    return v


def _month(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("month_invalid", "a month is YYYY-MM")
    try:
        return normalize_month(value)
    except ValueError:
        raise PydanticCustomError("month_invalid", "a month is YYYY-MM between 1951-01 and 2100-12") from None


_INT_RE = re.compile(r"^[0-9]{1,18}$")
# The documented shape of a month: the years the check accepts, 1951-2100.
_MONTH_PATTERN = "^(195[1-9]|19[6-9][0-9]|20[0-9][0-9]|2100)-(0[1-9]|1[0-2])$"


def _ascii_int(value: object) -> object:
    """A whole number in a query string or path: ASCII digits only (no `2026.0`, `+1`, `1_000`)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        v = to_ascii(value)
        if _INT_RE.match(v):
            return int(v)
    raise PydanticCustomError("int_parsing", "Input should be a whole number in ASCII digits")


def _ascii_text(value: object) -> object:
    """Full-width forms to ASCII before a pattern check (card numbers, PINs)."""
    return _clean(value) if isinstance(value, str) else value


# Names: Chinese characters, letters of any script (with their combining marks, a few
# at a time, as Tibetan and Latin accents need), the middle dot of minority and foreign
# names, and single spaces between words. Control, format (zero-width joiners,
# direction overrides), symbol (emoji) and punctuation characters are refused.
NAME_DOTS = frozenset("·・•‧\u0f0b")  # the last: the Tibetan syllable mark (tsheg)
_MAX_MARKS = 4


def normalize_person_name(value: str, *, max_length: int = 50) -> str:
    """A person's name in NFC with single spaces; raise ValueError."""
    v = unicodedata.normalize("NFC", value.replace("\u3000", " ").strip(" "))
    if not 1 <= len(v) <= max_length:
        raise ValueError(f"a name is 1 to {max_length} characters")
    previous = ""
    marks = 0
    letters = 0
    for ch in v:
        cat = unicodedata.category(ch)
        if cat.startswith("L"):
            letters += 1
            marks = 0
        elif cat in ("Mn", "Mc"):
            marks += 1
            if not previous or marks > _MAX_MARKS:
                raise ValueError("a combining mark must follow a letter")
        elif ch == " " or ch in NAME_DOTS:
            if not previous or previous == " " or previous in NAME_DOTS:
                raise ValueError("a space or middle dot stands between two words")
            marks = 0
        else:
            raise ValueError("a name holds letters, middle dots and spaces only")
        previous = ch
    if letters == 0:
        raise ValueError("a name has at least one letter")
    if previous == " " or previous in NAME_DOTS:
        raise ValueError("a space or middle dot stands between two words")
    return v


def _person_name(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("name_invalid", "a name is a string")
    try:
        return normalize_person_name(value)
    except ValueError as exc:
        raise PydanticCustomError("name_invalid", "invalid name: {reason}", {"reason": str(exc)}) from None


def check_unit_text(value: str) -> str:
    """A unit's name or an address: any printable text, no control or format characters."""
    v = unicodedata.normalize("NFC", value).strip()
    for ch in v:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise ValueError("control and format characters are not allowed")
    return v


def _unit_text(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return check_unit_text(value)
    except ValueError as exc:
        raise PydanticCustomError("text_invalid", "invalid text: {reason}", {"reason": str(exc)}) from None


register_validation_code("text_invalid", "不能包含控制字符或格式字符")

_PROVINCE_PATTERN = "(1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5]|71|81|82)"
_ID_PATTERN = "^" + _PROVINCE_PATTERN + "[0-9]{15}[0-9Xx]$"
_USCC_PATTERN = (
    "^(1[1239]|2[19]|3[1-59]|4[19]|5[1239]|6[129]|7[129]|8[19]|9[123]|A[19]|N[1239]|Y1)"
    "(" + _PROVINCE_PATTERN[1:-1] + "|10)[0-9]{4}[0-9A-HJ-NPQRTUWXY]{10}$"
)

IdNumber = Annotated[
    str, Field(max_length=32, examples=["11010519491231002X"], json_schema_extra={"pattern": _ID_PATTERN}),
    AfterValidator(_id_number),
]
CreditCode = Annotated[
    str, Field(max_length=32, examples=["91350100M000100Y43"], json_schema_extra={"pattern": _USCC_PATTERN}),
    AfterValidator(_credit_code),
]


def _region_code_schema(schema: dict[str, Any]) -> None:
    # Built from the table when a document is generated (not at import): exactly the codes
    # accepted, so schema-valid input is never refused as region_code_unknown.
    schema["pattern"] = region_code_pattern()
    schema["description"] = schema.get("description") or (
        f"A GB/T 2260 administrative division code that exists in the table of {TABLE_DATE}"
        " (province, prefecture-level city or county-level division)."
    )


# No length bounds on the field itself: every malformed code (short, long, letters)
# reaches the validator and answers `region_code_invalid`, not `validation_failed`; a
# well-formed code that names no division answers `region_code_unknown`.
RegionCode = Annotated[str, Field(examples=["110105"], json_schema_extra=_region_code_schema),
                       AfterValidator(_region_code)]
Month = Annotated[
    str, Field(max_length=7, examples=["2026-03"], json_schema_extra={"pattern": _MONTH_PATTERN}),
    AfterValidator(_month),
]
PersonName = Annotated[str, Field(max_length=200, examples=["张三"]), AfterValidator(_person_name)]
UnitText = Annotated[str, BeforeValidator(_unit_text)]
# A whole number in a query string or path parameter.
AsciiInt = Annotated[int, BeforeValidator(_ascii_int)]
# Card numbers and PINs: full-width forms typed by an input method become ASCII first.
AsciiText = Annotated[str, BeforeValidator(_ascii_text)]


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
