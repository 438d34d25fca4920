"""Spreadsheets in and out: an uploaded `.xlsx` or CSV read as rows of cells, and
`.xlsx` / CSV answers written safely.

Reading: the first worksheet of an `.xlsx` (python-calamine, formulas read as the
values Excel cached; a formula without one reads as an empty cell), or a CSV in
UTF-8 (with or without a byte-order mark) or GB18030 (what Chinese Excel writes).
The first non-empty row is the header; empty rows are skipped; a merged area reads
as its top-left cell. Row numbers are the ones the employer sees in Excel.

Limits: 20 MB a file (413 `file_too_large`), 100,000 data rows (413
`spreadsheet_too_many_rows`). An `.xlsx` whose parts would expand beyond
`MAX_EXPANDED_BYTES`, or expand more than `MAX_RATIO` times (a zip bomb), and XML
with a DTD (entity expansion) are refused 422 `spreadsheet_unreadable`; a
file that is neither `.xlsx` nor text is 415 `file_type_unsupported`.

Cells go through the identifiers module's one rule for client input
(`services.common.identifiers`): full-width digits are ASCII digits, other digits are
refused. Money is whole ASCII numbers: fen as an integer, yuan with at most two
decimals read through `Decimal` (never float arithmetic).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from services.common.errors import DomainError
from services.common.identifiers import ascii_digits, to_ascii

log = logging.getLogger("socialsec.spreadsheets")

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
# The multipart envelope around a file of MAX_BYTES (boundaries, part headers).
_ENVELOPE_BYTES = 64 * 1024
MAX_EXPANDED_BYTES = 400 * 1024 * 1024
MAX_RATIO = 200
_RATIO_FLOOR = 4 * 1024 * 1024  # small parts may compress as well as they like

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---- refusals ------------------------------------------------------------------------------


class FileTooLarge(DomainError):
    status = 413
    code = "file_too_large"
    title_zh = "文件过大（最大 20 MB）"
    title_en = "The file is too large (20 MB at most)"


class TooManyRows(DomainError):
    status = 413
    code = "spreadsheet_too_many_rows"
    title_zh = "表格行数过多（最多 100000 行）"
    title_en = "Too many rows (100,000 at most)"


class FileTypeUnsupported(DomainError):
    status = 415
    code = "file_type_unsupported"
    title_zh = "仅支持 .xlsx 或 CSV（UTF-8、GB18030）文件"
    title_en = "Only .xlsx or CSV (UTF-8, GB18030) files are accepted"


class FileMissing(DomainError):
    status = 422
    code = "file_missing"
    title_zh = "请以 multipart/form-data 上传一个名为 file 的文件"
    title_en = "Upload one file in a multipart/form-data field named file"


class SpreadsheetUnreadable(DomainError):
    status = 422
    code = "spreadsheet_unreadable"
    title_zh = "文件已损坏或无法读取"
    title_en = "The file is damaged or cannot be read"


class SpreadsheetEmpty(DomainError):
    status = 422
    code = "spreadsheet_empty"
    title_zh = "表格没有表头或数据行"
    title_en = "The spreadsheet has no header or no data rows"


class HeaderInvalid(DomainError):
    status = 422
    code = "spreadsheet_header_invalid"
    title_zh = "表头有误"
    title_en = "The header row is wrong"


# ---- upload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "multipart/form-data"


async def read_upload(request: Request) -> Upload:
    """The `file` part of a multipart body, at most MAX_BYTES (413 beyond, before the body is parsed when the
    length is announced)."""
    length = request.headers.get("content-length")
    if length is not None and ascii_digits(length) and int(length) > MAX_BYTES + _ENVELOPE_BYTES:
        raise FileTooLarge(params={"max_bytes": MAX_BYTES})
    if not is_multipart(request):
        raise FileMissing()
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # malformed multipart, too many parts
        if isinstance(exc, DomainError):
            raise
        raise FileMissing(detail_en=f"The multipart body cannot be read ({type(exc).__name__})") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise FileMissing()
        data = await part.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise FileTooLarge(params={"max_bytes": MAX_BYTES})
        filename = unicodedata.normalize("NFC", part.filename or "")[:200]
        filename = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C")
    finally:
        await form.close()
    return Upload(data=data, filename=filename)


# ---- reading ---------------------------------------------------------------------------------


@dataclass
class Table:
    """The header (with its row number) and the non-empty data rows (row number, cells)."""

    format: str  # xlsx or csv
    header_row: int
    header: list[str]
    rows: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def read_table(data: bytes, *, max_rows: int = MAX_ROWS) -> Table:
    """Read an uploaded spreadsheet; refuse what is not one (415), cannot be read (422) or is too long (413)."""
    if len(data) > MAX_BYTES:
        raise FileTooLarge(params={"max_bytes": MAX_BYTES})
    if data[:4] == b"PK\x03\x04":
        rows = _xlsx_rows(data)
        fmt = "xlsx"
    elif data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        # An old .xls workbook, or an encrypted .xlsx (both are OLE2 compound files).
        raise FileTypeUnsupported(
            detail_zh="不支持 .xls 或加密的工作簿：请另存为未加密的 .xlsx 或 CSV",
            detail_en="An .xls or encrypted workbook: save it as an unencrypted .xlsx or as CSV",
        )
    else:
        rows = _csv_rows(data)
        fmt = "csv"
    table: Table | None = None
    try:
        for number, cells in rows:
            if all(_empty(c) for c in cells):
                continue
            if table is None:
                table = Table(format=fmt, header_row=number, header=[_header_text(c) for c in cells])
                continue
            if len(table.rows) >= max_rows:
                raise TooManyRows(params={"max_rows": max_rows})
            table.rows.append((number, cells))
    except DomainError:
        raise
    except Exception as exc:  # anything the parsers raise on a damaged or hostile file
        log.info("spreadsheet refused: %s", type(exc).__name__)
        raise SpreadsheetUnreadable() from None
    if table is None:
        raise SpreadsheetEmpty()
    return table


def _header_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")


def _check_zip(data: bytes) -> None:
    """Inflate every part once, in bounded chunks: refuse a zip bomb (a part expanding beyond its declared size
    fails its CRC, a part expanding more than MAX_RATIO times or a total beyond MAX_EXPANDED_BYTES is refused),
    and XML carrying a DTD (entity expansion bombs; no part of an .xlsx has one)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise SpreadsheetUnreadable() from None
    with zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
        if "xl/workbook.xml" not in names:
            raise FileTypeUnsupported(
                detail_zh="压缩文件不是 .xlsx 工作簿", detail_en="The zip archive is not an .xlsx workbook",
            )
        bomb = SpreadsheetUnreadable(
            detail_zh="工作簿解压后异常膨胀（疑似压缩炸弹）", detail_en="The workbook expands abnormally (a zip bomb)",
        )
        if sum(i.file_size for i in infos) > MAX_EXPANDED_BYTES:
            raise bomb
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            size = 0
            tail = b""
            try:
                with zf.open(info) as part:
                    while chunk := part.read(1024 * 1024):
                        size += len(chunk)
                        total += len(chunk)
                        if total > MAX_EXPANDED_BYTES or (
                            size > _RATIO_FLOOR and size > MAX_RATIO * max(info.compress_size, 1)
                        ):
                            raise bomb
                        window = tail + chunk
                        if any(m in window for m in _DTD_MARKERS):
                            raise SpreadsheetUnreadable(
                                detail_zh="工作簿含有 XML 实体声明", detail_en="The workbook carries XML entity declarations",
                            )
                        tail = chunk[-16:]
            except DomainError:
                raise
            except Exception as exc:  # bad CRC (a part longer than declared), unsupported compression, ...
                log.info("xlsx part refused: %s", type(exc).__name__)
                raise SpreadsheetUnreadable() from None


def _xlsx_rows(data: bytes) -> Iterable[tuple[int, tuple[Any, ...]]]:
    # Checked with Python's zipfile first (bounded, CRC-checked); then read by calamine (Rust), which gives the
    # values Excel cached for formulas, and an empty string for an empty cell.
    _check_zip(data)
    from python_calamine import CalamineWorkbook  # imported here: only uploads need it

    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        if not wb.sheet_names:
            return []
        sheet = wb.get_sheet_by_index(0)
        if sheet.height > 5 * MAX_ROWS:  # refused before the grid is built in memory
            raise TooManyRows(params={"max_rows": MAX_ROWS})
        grid = sheet.to_python(skip_empty_area=False)
    except DomainError:
        raise
    except Exception as exc:
        log.info("xlsx refused: %s", type(exc).__name__)
        raise SpreadsheetUnreadable() from None
    return ((n, tuple(r)) for n, r in enumerate(grid, start=1))


def decode_text(data: bytes) -> str:
    """UTF-8 (a byte-order mark tolerated), else GB18030; binary is 415."""
    if b"\x00" in data:
        raise FileTypeUnsupported()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise FileTypeUnsupported(
            detail_zh="CSV 文件应使用 UTF-8 或 GB18030 编码", detail_en="A CSV file is encoded in UTF-8 or GB18030",
        ) from None
    if any(unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\r\n\t" for ch in text[:65536]):
        raise FileTypeUnsupported()
    return text


def _csv_rows(data: bytes) -> Iterable[tuple[int, tuple[Any, ...]]]:
    text = decode_text(data)
    # Comma-separated; a header line with tabs (or semicolons) and no comma sets that separator instead.
    first = text[:8192].lstrip("\r\n").split("\n", 1)[0]
    delimiter = ","
    if "," not in first:
        delimiter = "\t" if "\t" in first else (";" if ";" in first else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return ((n, tuple(r)) for n, r in enumerate(reader, start=1))


# ---- headers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    names: tuple[str, ...]  # recognised headers, compared after `header_key`
    required: bool = True
    ignored: bool = False  # a known column this reader does not use (the roster's extra columns)


def header_key(text: str) -> str:
    """A header as compared: NFKC (full-width letters, digits and brackets to ASCII), lower case, no spaces,
    without a required-mark asterisk."""
    v = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s*＊]+", "", v)


def column_letter(index: int) -> str:
    """0 -> A, 26 -> AA."""
    out = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def map_header(table: Table, columns: Sequence[Column], *, alternatives: Sequence[Sequence[str]] = ()) -> dict[str, int]:
    """Column key -> cell index; a header no column knows, a column named twice or a required one missing is 422
    `spreadsheet_header_invalid`, naming each (with its column letter). `alternatives`: groups of keys of which
    exactly one must be present (a wage in fen or in yuan)."""
    lookup: dict[str, Column] = {}
    for known in columns:
        for name in (known.key, *known.names):
            lookup[header_key(name)] = known
    found: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    for i, text in enumerate(table.header):
        if not text:
            continue
        key = header_key(text)
        col: Column | None = lookup.get(key)
        if col is None:
            # A bilingual header ("身份证号码 id_number") is known by any of its words.
            for word in unicodedata.normalize("NFKC", text).split():
                col = lookup.get(header_key(word))
                if col is not None:
                    break
        where = column_letter(i)
        if col is None:
            errors.append({"row": table.header_row, "column": where, "header": text[:60], "code": "header_unknown",
                           "message_zh": f"无法识别的表头“{text[:60]}”（{where}列）",
                           "message_en": f"unknown header '{text[:60]}' in column {where}"})
            continue
        if col.key in found:
            errors.append({"row": table.header_row, "column": where, "header": text[:60], "code": "header_duplicate",
                           "message_zh": f"表头“{text[:60]}”重复（{where}列）",
                           "message_en": f"header '{text[:60]}' repeated in column {where}"})
            continue
        if not col.ignored:
            found[col.key] = i
    groups = [set(g) for g in alternatives]
    grouped = set().union(*groups) if groups else set()
    for known in columns:
        if known.required and not known.ignored and known.key not in grouped and known.key not in found:
            label = known.names[0] if known.names else known.key
            errors.append({"row": table.header_row, "column": None, "header": label, "code": "header_missing",
                           "message_zh": f"缺少“{label}”列（{known.key}）",
                           "message_en": f"missing column {known.key}"})
    for g in alternatives:
        present = [k for k in g if k in found]
        if len(present) != 1:
            names = " / ".join(g)
            errors.append({"row": table.header_row, "column": None, "header": names,
                           "code": "header_missing" if not present else "header_duplicate",
                           "message_zh": f"应有且只有一列：{names}", "message_en": f"exactly one column of: {names}"})
    if errors:
        raise HeaderInvalid(
            detail_zh="；".join(e["message_zh"] for e in errors[:10]),
            detail_en="; ".join(e["message_en"] for e in errors[:10]),
            errors=[{**e, "field": "file"} for e in errors],
        )
    return found


def cell(cells: tuple[Any, ...], index: int | None) -> Any:
    if index is None or index >= len(cells):
        return None
    return cells[index]


# ---- cells ----------------------------------------------------------------------------------


class CellError(ValueError):
    """A cell that cannot be read as its column's type; `code` is the row error's code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def text_cell(value: Any) -> str | None:
    """A text cell; None when empty. Numbers read as the digits typed (an id number typed as a number keeps
    its digits only while Excel kept them: 15 significant digits, so a float is not text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("invalid")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise CellError("invalid")
    if isinstance(value, datetime | date | time | timedelta):
        raise CellError("invalid")
    v = str(value).strip()
    return v or None


_DATE_RE = re.compile(r"^([0-9]{4})\s*[-/.年]\s*([0-9]{1,2})\s*[-/.月]\s*([0-9]{1,2})\s*日?$")


def date_cell(value: Any) -> date | None:
    """A date cell, or text 2026-03-01, 2026/3/1, 2026.3.1 or 2026年3月1日."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise CellError("date_invalid")
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise CellError("date_invalid")
    v = to_ascii(value).strip()
    if not v:
        return None
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]00:00(:00)?", v):
        v = v[:10]
    m = _DATE_RE.match(v)
    if m is None:
        raise CellError("date_invalid")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise CellError("date_invalid") from None


_FEN_RE = re.compile(r"^[0-9]{1,15}$")
_YUAN_RE = re.compile(r"^([0-9]{1,13}|[0-9]{1,3}(,[0-9]{3}){1,4})(\.[0-9]{1,2})?$")


def fen_cell(value: Any) -> int | None:
    """Whole fen: an integer cell, a number cell holding a whole number, or ASCII (or full-width) digits."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("wage_invalid")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise CellError("wage_invalid")
        return int(Decimal(repr(value)))
    if not isinstance(value, str):
        raise CellError("wage_invalid")
    v = to_ascii(value).strip()
    if not v:
        return None
    if not _FEN_RE.match(v):
        raise CellError("wage_invalid")
    return int(v)


def yuan_cell(value: Any) -> int | None:
    """Yuan with at most two decimals, as integer fen: 6957.5 -> 695750. A number cell is read through its
    shortest decimal form (`repr`), never multiplied as a float."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("wage_invalid")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise CellError("wage_invalid")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        v = to_ascii(value).strip()
        if not v:
            return None
        if not _YUAN_RE.match(v):
            raise CellError("wage_invalid")
        amount = Decimal(v.replace(",", ""))
    else:
        raise CellError("wage_invalid")
    try:
        fen = amount * 100
        if fen != fen.to_integral_value() or fen < 0 or fen > Decimal(10) ** 15:
            raise CellError("wage_invalid")
        return int(fen)
    except InvalidOperation:
        raise CellError("wage_invalid") from None


# ---- writing ---------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: object) -> str:
    """A cell's text as exported: one starting like a formula gets a leading apostrophe, so a spreadsheet shows
    it and never evaluates it (CSV injection)."""
    s = "" if value is None else str(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """CSV in UTF-8 with a byte-order mark (Excel opens it as UTF-8), every cell escaped."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([safe_text(h) for h in header])
    for row in rows:
        w.writerow([safe_text(c) for c in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def xlsx_bytes(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, sheet_title: str = "Sheet1",
    text_columns: Sequence[int] = (), widths: Sequence[int] = (),
) -> bytes:
    """An `.xlsx` with a bold header row. Every text cell is escaped like the CSV and stored as a string (never a
    formula); numbers stay numbers; `text_columns` are formatted as text so Excel keeps long digit strings."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet(title=sheet_title[:31])
    for i, w in enumerate(widths):
        ws.column_dimensions[column_letter(i)].width = w
    bold = Font(bold=True)

    def text(v: object, *, as_header: bool = False) -> WriteOnlyCell:
        c = WriteOnlyCell(ws, value=safe_text(v))
        c.data_type = "s"  # never a formula
        if as_header:
            c.font = bold
        return c

    ws.append([text(h, as_header=True) for h in header])
    text_set = set(text_columns)
    for row in rows:
        out: list[Any] = []
        for i, v in enumerate(row):
            if v is None or v == "":
                c = WriteOnlyCell(ws, value=None)
            elif isinstance(v, bool) or not isinstance(v, int | date):
                c = text(v)
            else:
                c = WriteOnlyCell(ws, value=v)
                if isinstance(v, date):
                    c.number_format = "yyyy-mm-dd"
            if i in text_set:
                c.number_format = "@"
            out.append(c)
        ws.append(out)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
