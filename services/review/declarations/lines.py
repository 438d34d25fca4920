"""The lines of an annual wage declaration: each line checked on its own, and the differences from the roster."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.common.identifiers import normalize_id_number, normalize_person_name
from services.common.pii import cipher, mask_id_number
from services.review.models import Band, RosterEntry
from services.review.schemas import BandDiff, Differences, DiffPerson, LineError, NameDiff

MAX_WAGE_FEN = 100_000_000  # 1,000,000 CNY a month: anything above is a typing error
_MESSAGES = {
    "missing": ("必填字段缺失", "required field missing"),
    "id_number_invalid": ("身份证号码无效", "invalid id number"),
    "name_invalid": ("姓名应为1至50个汉字、字母、间隔号（·）或空格", "a name is 1 to 50 letters, middle dots or spaces"),
    "wage_invalid": ("月平均工资应为非负整数（分）", "the average monthly wage is a non-negative integer in fen"),
    "wage_too_large": ("月平均工资超出合理范围", "the average monthly wage is implausibly large"),
    "duplicate_line": ("同一身份证号码重复申报", "the same id number is declared twice"),
    "unknown_field": ("不允许的字段", "field not allowed"),
    "line_not_object": ("每行应为对象", "each line is an object"),
}


def _line_error(line: int, field: str, code: str, en: bool) -> LineError:
    zh, english = _MESSAGES[code]
    return LineError(line=line, field=field, code=code, message=english if en else zh)


def validate_lines(
    raw: list[Any], *, today: date, en: bool, numbers: list[int] | None = None,
) -> tuple[list[dict[str, Any]], list[LineError]]:
    """Check each line on its own: the valid ones, and the errors by line number (`numbers`: a spreadsheet's row
    numbers instead of positions)."""
    h = cipher().hash
    valid: list[dict[str, Any]] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for i, line in enumerate(raw):
        n = numbers[i] if numbers is not None else i + 1
        if not isinstance(line, dict):
            errors.append(_line_error(n, "line", "line_not_object", en))
            continue
        bad = False
        for k in line:
            if k not in ("id_number", "name", "avg_monthly_wage_fen"):
                errors.append(_line_error(n, str(k)[:40], "unknown_field", en))
                bad = True
        idn = line.get("id_number")
        normalized = None
        if idn is None:
            errors.append(_line_error(n, "id_number", "missing", en))
        elif not isinstance(idn, str) or len(idn) > 32:
            errors.append(_line_error(n, "id_number", "id_number_invalid", en))
        else:
            try:
                normalized = normalize_id_number(idn, today=today)
            except ValueError:
                errors.append(_line_error(n, "id_number", "id_number_invalid", en))
        name = line.get("name")
        if name is None:
            errors.append(_line_error(n, "name", "missing", en))
            bad = True
        elif not isinstance(name, str):
            errors.append(_line_error(n, "name", "name_invalid", en))
            bad = True
        else:
            try:
                name = normalize_person_name(name)
            except ValueError:
                errors.append(_line_error(n, "name", "name_invalid", en))
                bad = True
        wage = line.get("avg_monthly_wage_fen")
        if wage is None:
            errors.append(_line_error(n, "avg_monthly_wage_fen", "missing", en))
            bad = True
        elif isinstance(wage, bool) or not isinstance(wage, int) or wage < 0:
            errors.append(_line_error(n, "avg_monthly_wage_fen", "wage_invalid", en))
            bad = True
        elif wage > MAX_WAGE_FEN:
            errors.append(_line_error(n, "avg_monthly_wage_fen", "wage_too_large", en))
            bad = True
        if normalized is None:
            continue
        key = h(normalized)
        if key in seen:
            errors.append(_line_error(n, "id_number", "duplicate_line", en))
            continue
        seen.add(key)
        if bad:
            continue
        valid.append({
            "line_no": n, "id_hash": key, "id_masked": mask_id_number(normalized), "name": str(name).strip(),
            "avg_monthly_wage_fen": wage,
        })
    return valid, errors


def differences(valid: list[dict[str, Any]], roster: dict[str, RosterEntry], band: Band | None) -> Differences:
    """Registered but not declared, declared but not registered, name differs, wage outside the band."""
    declared = {v["id_hash"] for v in valid}
    not_declared = [
        DiffPerson(person_id=r.person_id, id_number_masked=r.id_masked, name=r.name)
        for h, r in sorted(roster.items(), key=lambda kv: kv[1].id) if h not in declared
    ]
    not_registered: list[DiffPerson] = []
    name_differs: list[NameDiff] = []
    outside: list[BandDiff] = []
    for v in valid:
        r = roster.get(v["id_hash"])
        if r is None:
            not_registered.append(DiffPerson(line=v["line_no"], id_number_masked=v["id_masked"], name=v["name"]))
        elif r.name.strip() != v["name"]:
            name_differs.append(NameDiff(
                line=v["line_no"], person_id=r.person_id, id_number_masked=v["id_masked"], declared_name=v["name"],
                registered_name=r.name,
            ))
        if band is not None and v["new_base_fen"] != v["avg_monthly_wage_fen"]:
            outside.append(BandDiff(
                line=v["line_no"], id_number_masked=v["id_masked"], name=v["name"],
                avg_monthly_wage_fen=v["avg_monthly_wage_fen"], new_base_fen=v["new_base_fen"],
                below_band=v["avg_monthly_wage_fen"] < band.base_lower_fen,
            ))
    return Differences(
        not_declared=not_declared, not_registered=not_registered, name_differs=name_differs, outside_band=outside,
    )
