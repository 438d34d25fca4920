"""Employee imports (批量增员): a spreadsheet of employees, each valid row enrolled through the same
service function as the JSON route (`employers.enrol_employee`), each invalid row reported with its row,
column, code and message; the import record is kept and can be read again."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock, aware
from services.common.enums import Insurance
from services.common.errors import DomainError
from services.common.identifiers import to_ascii
from services.common.models import OutboxEvent
from services.common.pii import cipher
from services.common.principal import Principal
from services.common.spreadsheets import (
    CellError,
    Column,
    Upload,
    cell,
    column_letter,
    date_cell,
    fen_cell,
    map_header,
    read_table,
    text_cell,
    xlsx_bytes,
)
from services.registration import employers
from services.registration.errors import EmployeeImportNotFound
from services.registration.models import EmployeeImport, Enrolment, Person, PersonChange
from services.registration.schemas import EmployeeImportOut, EmployeeIn, ImportRowError
from services.registration.service import emit_enrolled, new_id, new_person, open_keys

COLUMNS = (
    Column("id_number", ("身份证号码", "身份证号", "公民身份号码", "社会保障号码", "证件号码")),
    Column("name", ("姓名",)),
    Column("hire_date", ("入职日期", "参加工作日期", "用工日期")),
    Column("monthly_wage_fen", ("月工资(分)", "月工资（分）", "月工资分", "工资(分)")),
    Column("insurance_types", ("参保险种", "险种", "参保险种(多个用、分隔)")),
)

INSURANCE_NAMES: dict[str, Insurance] = {
    **{str(t): t for t in Insurance},
    "养老": Insurance.pension, "医疗": Insurance.medical, "失业": Insurance.unemployment,
    "工伤": Insurance.work_injury, "生育": Insurance.maternity,
    "基本养老": Insurance.pension, "基本医疗": Insurance.medical,
    "workinjury": Insurance.work_injury, "work-injury": Insurance.work_injury,
}
_TYPE_SPLIT = re.compile(r"[;；、,，\s]+")

# Messages of the row errors this module finds itself (the service's refusals bring their own titles).
MESSAGES: dict[str, tuple[str, str]] = {
    "missing": ("必填，不能为空", "required, empty"),
    "id_number_invalid": ("身份证号码无效", "invalid id number"),
    "name_invalid": ("姓名只能包含汉字、字母、间隔号（·）和空格", "a name holds letters, middle dots and spaces only"),
    "date_invalid": ("日期应为 2026-03-01 形式或日期单元格", "a date is 2026-03-01 or a date cell"),
    "wage_invalid": ("月工资应为大于0的整数（分）", "the monthly wage is a whole number of fen above 0"),
    "insurance_type_invalid": (
        "险种应为 养老、医疗、失业、工伤、生育（多个用；或、分隔）",
        "insurance types: pension, medical, unemployment, work_injury, maternity (separated by ; or 、)",
    ),
    "duplicate_row": ("同一身份证号码在表中重复", "the same id number appears twice in the file"),
    "invalid": ("取值无效", "invalid value"),
}

_FIELD_CODES = {
    "id_number": "id_number_invalid", "name": "name_invalid", "hire_date": "date_invalid",
    "monthly_wage_fen": "wage_invalid", "insurance_types": "insurance_type_invalid",
}


def insurance_cell(value: Any) -> list[str] | None:
    """Insurance types in one cell: English codes or Chinese names (养老, 养老保险 ...) separated by ; or 、."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise CellError("insurance_type_invalid")
    parts = [p for p in _TYPE_SPLIT.split(to_ascii(value).strip()) if p]
    if not parts:
        return None
    out: list[str] = []
    for p in parts:
        key = p.lower()
        t = INSURANCE_NAMES.get(key) or (INSURANCE_NAMES.get(key[:-2]) if key.endswith("保险") else None)
        if t is None:
            raise CellError("insurance_type_invalid")
        out.append(str(t))
    return out


def _error(row: int, field: str, code: str, index: dict[str, int], *, zh: str | None = None,
           en: str | None = None) -> dict[str, Any]:
    m_zh, m_en = MESSAGES.get(code, MESSAGES["invalid"])
    i = index.get(field)
    return {"row": row, "column": column_letter(i) if i is not None else None, "field": field, "code": code,
            "message_zh": zh or m_zh, "message_en": en or m_en}


def _row_errors_from_validation(row: int, exc: ValidationError, index: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else "row"
        code = _FIELD_CODES.get(field, "invalid")
        out.append(_error(row, field, code, index))
    return out


def parse_row(row: int, cells: tuple[Any, ...], index: dict[str, int]) -> tuple[EmployeeIn | None, list[dict[str, Any]]]:
    """One row to the JSON route's body (the same model, so the same rules), or its errors by column."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    readers = {
        "id_number": text_cell, "name": text_cell, "hire_date": date_cell, "monthly_wage_fen": fen_cell,
        "insurance_types": insurance_cell,
    }
    for key, reader in readers.items():
        try:
            value = reader(cell(cells, index.get(key)))
        except CellError as exc:
            code = _FIELD_CODES[key] if exc.code == "invalid" else exc.code
            errors.append(_error(row, key, code, index))
            continue
        if value is None:
            errors.append(_error(row, key, "missing", index))
            continue
        values[key] = value
    try:
        body = EmployeeIn.model_validate(values)
    except ValidationError as exc:
        done = {e["field"] for e in errors}
        errors += [e for e in _row_errors_from_validation(row, exc, index) if e["field"] not in done]
        errors.sort(key=lambda e: index.get(e["field"], 99))
        return None, errors
    return (None, errors) if errors else (body, [])


CHUNK = 1000


async def import_employees(
    *, session: AsyncSession, clock: Clock, principal: Principal, credit_code: str, upload: Upload,
) -> EmployeeImport:
    """Read the file and enrol each valid row; keep the record.

    The rules are the JSON route's: `employers.check_employee` for what needs no stored state, then, a thousand
    rows at a time, persons seen for the first time are enrolled together (one flush; nobody else can hold an
    enrolment of theirs), and rows of persons already known go through `employers.enrol_employee` one by one in a
    savepoint each (already enrolled, conflicting enrolments, pensioners, another name)."""
    employer = await employers.get_employer(session=session, credit_code=credit_code)
    table = read_table(upload.data)
    index = map_header(table, COLUMNS)
    today, now = clock.today(), clock.now()
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    valid: list[tuple[int, EmployeeIn]] = []
    for row, cells in table.rows:
        body, row_errors = parse_row(row, cells, index)
        if body is not None:
            first = seen.get(body.id_number)
            if first is not None:
                row_errors = [_error(row, "id_number", "duplicate_row", index,
                                     zh=f"与第{first}行的身份证号码重复", en=f"same id number as row {first}")]
            else:
                seen[body.id_number] = row
        if row_errors:
            errors += row_errors
            continue
        assert body is not None
        valid.append((row, body))

    def refused(row: int, exc: DomainError) -> None:
        errors.append(_error(row, _refusal_field(exc.code), exc.code, index, zh=exc.detail_zh or exc.title_zh,
                             en=exc.detail_en or exc.title_en))

    registered = 0
    ref = employers.employer_ref(employer)
    h = cipher().hash
    for start in range(0, len(valid), CHUNK):
        checked: list[tuple[int, EmployeeIn, list[str], str]] = []
        for row, body in valid[start:start + CHUNK]:
            try:
                types = employers.check_employee(body, today=today)
            except DomainError as exc:
                refused(row, exc)
                continue
            checked.append((row, body, types, h(body.id_number)))
        known_hashes = set((await session.execute(
            select(Person.id_hash).where(Person.id_hash.in_([c[3] for c in checked]))
        )).scalars()) if checked else set()
        fresh = [c for c in checked if c[3] not in known_hashes]
        known = [c for c in checked if c[3] in known_hashes]
        if fresh:
            try:
                async with session.begin_nested():
                    await session.flush()
                    persons = [new_person(id_number=body.id_number, name=body.name, now=now, hashed=hashed)
                               for _row, body, _types, hashed in fresh]
                    enrolments = []
                    for person, (_row, body, types, _hashed) in zip(persons, fresh, strict=True):
                        enrolment = employers.employee_enrolment(
                            employer=employer, person=person, body=body, types=types, today=today, now=now,
                            principal=principal,
                        )
                        open_keys(enrolment)
                        enrolments.append(enrolment)
                        emit_enrolled(session, person=person, enrolment=enrolment, now=now, employer=ref)
                    # The event and history rows the shared function added, written with the rest in a few
                    # multi-row statements instead of four round trips a row.
                    pending = list(session.new)
                    for obj in pending:
                        session.expunge(obj)
                    await _insert_many(session, Person, persons)
                    await _insert_many(session, Enrolment, enrolments)
                    await _insert_many(session, OutboxEvent, [o for o in pending if isinstance(o, OutboxEvent)])
                    await _insert_many(session, PersonChange, [o for o in pending if isinstance(o, PersonChange)])
                registered += len(fresh)
            except IntegrityError:
                # Someone registered one of these persons meanwhile: take the rows one by one.
                known = sorted(known + fresh, key=lambda c: c[0])
        for row, body, _types, _hashed in known:
            try:
                async with session.begin_nested():
                    await employers.enrol_employee(
                        session=session, clock=clock, principal=principal, credit_code=credit_code, body=body,
                    )
            except DomainError as exc:
                refused(row, exc)
                continue
            except IntegrityError:
                errors.append(_error(row, "id_number", "enrolment_conflict", index, zh="已有未终止的参保登记",
                                     en="The person already holds an open enrolment"))
                continue
            registered += 1
        # What is written is not needed again here: keep the session small over 100,000 rows.
        await session.flush()
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Person | Enrolment | PersonChange | OutboxEvent):
                session.expunge(obj)
    errors.sort(key=lambda e: (e["row"], index.get(e["field"], 99)))
    record = EmployeeImport(
        id=new_id(), credit_code=credit_code, file_name=upload.filename or None, file_format=table.format,
        file_sha256=hashlib.sha256(upload.data).hexdigest(), rows=len(table.rows), registered=registered,
        failed=len({e["row"] for e in errors}), errors=errors, created_at=now, created_by=principal.actor_id,
    )
    session.add(record)
    await session.flush()
    return record


async def _insert_many(session: AsyncSession, model: Any, objects: list[Any]) -> None:
    """Insert not-yet-added ORM objects as one multi-row statement per set of columns they carry (a primary key
    left to the database stays out)."""
    if not objects:
        return
    keys = [a.key for a in model.__mapper__.column_attrs]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for obj in objects:
        values = {k: obj.__dict__[k] for k in keys if k in obj.__dict__ and obj.__dict__[k] is not None}
        groups.setdefault(tuple(values), []).append(values)
    for rows in groups.values():
        await session.execute(insert(model.__table__), rows)


def _refusal_field(code: str) -> str:
    return {
        "hire_date_too_far_ahead": "hire_date", "under_working_age": "hire_date",
        "insurance_type_not_allowed": "insurance_types", "name_mismatch": "name",
    }.get(code, "id_number")


def import_out(record: EmployeeImport, *, en: bool) -> EmployeeImportOut:
    return EmployeeImportOut(
        id=record.id, credit_code=record.credit_code, file_name=record.file_name, format=record.file_format,
        rows=record.rows, registered=record.registered, failed=record.failed,
        errors=[
            ImportRowError(row=e["row"], column=e.get("column"), field=e["field"], code=e["code"],
                           message=e["message_en"] if en else e["message_zh"])
            for e in record.errors
        ],
        created_at=aware(record.created_at),
    )


async def get_import(*, session: AsyncSession, credit_code: str, import_id: str) -> EmployeeImport:
    record = await session.get(EmployeeImport, import_id)
    if record is None or record.credit_code != credit_code:
        raise EmployeeImportNotFound()
    return record


TEMPLATE_HEADER = ("身份证号码", "姓名", "入职日期", "月工资(分)", "参保险种")
TEMPLATE_SAMPLE = ("11010519491231002X", "张三", date(2026, 3, 1), 695750, "养老、医疗、失业、工伤、生育")


def template_xlsx() -> bytes:
    """The import template: Chinese headers and one sample row (replace it with your employees)."""
    return xlsx_bytes(TEMPLATE_HEADER, [TEMPLATE_SAMPLE], sheet_title="增员", text_columns=(0,),
                      widths=(22, 12, 14, 14, 36))
