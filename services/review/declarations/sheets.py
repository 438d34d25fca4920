"""The annual declaration as a spreadsheet: lines read from an `.xlsx` or CSV upload (the roster export filled
in, or any sheet with the same columns), and the roster written as `.xlsx`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.pii import cipher
from services.common.spreadsheets import (
    CellError,
    Column,
    cell,
    column_letter,
    fen_cell,
    map_header,
    read_table,
    xlsx_bytes,
    yuan_cell,
)
from services.review.declarations.roster import ROSTER_HEADER, roster_for_year

COLUMNS = (
    Column("id_number", ("身份证号码", "身份证号", "公民身份号码", "社会保障号码", "证件号码")),
    Column("name", ("姓名",)),
    Column("avg_monthly_wage_fen", ("上年月平均工资(分)", "月平均工资(分)", "年平均工资(分)")),
    Column("avg_monthly_wage_yuan", ("上年月平均工资(元)", "月平均工资(元)", "年平均工资(元)")),
    # The roster export's other columns, read back and left alone.
    Column("hire_date", ("入职日期",), ignored=True),
    Column("start_month", ("参保起始月",), ignored=True),
    Column("last_month", ("离职月份",), ignored=True),
    Column("monthly_wage_fen", ("登记月工资(分)", "月工资(分)"), ignored=True),
)
_INVALID = object()


def _text(value: Any) -> Any:
    """A text cell as validate_lines takes it: absent when empty, a non-string (refused there) when not text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or isinstance(value, float):
        return _INVALID
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) else _INVALID


def read_lines(data: bytes) -> tuple[list[dict[str, Any]], list[int], dict[str, str]]:
    """The declared lines of a spreadsheet, their row numbers, and the column letter of each field.

    The wage is in fen (an integer) or in yuan with at most two decimals under a header that says so
    (月平均工资(元), avg_monthly_wage_yuan), read exactly into fen."""
    table = read_table(data)
    index = map_header(table, COLUMNS, alternatives=[("avg_monthly_wage_fen", "avg_monthly_wage_yuan")])
    yuan = "avg_monthly_wage_yuan" in index
    wage_index = index["avg_monthly_wage_yuan" if yuan else "avg_monthly_wage_fen"]
    read_wage = yuan_cell if yuan else fen_cell
    lines: list[dict[str, Any]] = []
    numbers: list[int] = []
    for row, cells in table.rows:
        line: dict[str, Any] = {}
        for key in ("id_number", "name"):
            v = _text(cell(cells, index[key]))
            if v is not None:
                line[key] = "" if v is _INVALID and key == "id_number" else (0 if v is _INVALID else v)
        wage: int | str | None
        try:
            wage = read_wage(cell(cells, wage_index))
        except CellError:
            wage = "invalid"  # refused by validate_lines as wage_invalid
        if wage is not None:
            line["avg_monthly_wage_fen"] = wage
        lines.append(line)
        numbers.append(row)
    columns = {"id_number": column_letter(index["id_number"]), "name": column_letter(index["name"]),
               "avg_monthly_wage_fen": column_letter(wage_index)}
    return lines, numbers, columns


async def roster_xlsx(*, session: AsyncSession, credit_code: str, year: int) -> bytes:
    """The roster as `.xlsx` with the CSV's columns (full id numbers, as text): the employer fills the last column
    and uploads the file."""
    roster = await roster_for_year(session=session, credit_code=credit_code, year=year)
    c = cipher()
    rows = (
        [c.decrypt(r.id_number_enc), r.name, r.hire_date, r.start_month, r.last_month, r.monthly_wage_fen, None]
        for r in sorted(roster.values(), key=lambda r: r.id)
    )
    return xlsx_bytes(ROSTER_HEADER, rows, sheet_title=f"{year}年度申报", text_columns=(0,),
                      widths=(22, 12, 12, 12, 12, 18, 22))
