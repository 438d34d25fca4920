"""Employee imports from a spreadsheet: rows enrolled or reported, the record kept, limits and hostile files."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest

from services.common import spreadsheets
from tests.helpers import employer, make_id_number
from tests.registration.conftest import BASE, CC_A, CC_B, ID_1, ID_2, STAFF_OPERATOR, Reg, problem

ID_3 = make_id_number("440106", "19920304", "013")
ALL = "养老、医疗、失业、工伤、生育"
HEAD_ZH = ["身份证号码", "姓名", "入职日期", "月工资(分)", "参保险种"]
HEAD_EN = ["id_number", "name", "hire_date", "monthly_wage_fen", "insurance_types"]
URL = f"{BASE}/employers/{CC_A}/employee-imports"


def xlsx(rows: list[list[Any]], *, merge: str | None = None, formulas: dict[str, str] | None = None) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    if merge:
        ws.merge_cells(merge)
    for ref, f in (formulas or {}).items():
        ws[ref] = f
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def with_cached_values(data: bytes, values: dict[str, str]) -> bytes:
    """Give formula cells the value Excel would have cached (openpyxl writes none)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = content.decode()
                for ref, v in values.items():
                    text = re.sub(rf'(<c r="{ref}"[^>]*>)<f>([^<]*)</f><v\s*/?>(</v>)?', rf"\1<f>\2</f><v>{v}</v>", text)
                content = text.encode()
            dst.writestr(info, content)
    return out.getvalue()


def csv_text(rows: list[list[Any]]) -> str:
    return "\r\n".join(",".join(str(c) for c in r) for r in rows) + "\r\n"


async def upload(reg: Reg, data: bytes, name: str = "employees.xlsx", cc: str = CC_A, **headers: str) -> Any:
    return await reg.client.post(f"{BASE}/employers/{cc}/employee-imports", files={"file": (name, data)},
                                 headers=reg.h(employer(cc), **headers))


async def count(reg: Reg, sql: str) -> int:
    return len(await reg.rows(sql))


class TestImport:
    async def test_valid_rows_enrolled_invalid_rows_reported(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        full_width = ID_2.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"})
        arabic_indic = ID_3.translate({ord(c): 0x0660 + int(c) for c in "0123456789"})
        data = xlsx([
            HEAD_ZH,
            [ID_1, "张三", date(2026, 3, 1), 695750, ALL],
            [],  # an empty row is skipped
            [full_width, "李四", "2026/3/2", "６９５７５０", "养老保险;医疗保险"],
            [arabic_indic, "王五", "2026-03-01", 695750, "pension"],
            [make_id_number("110105", "19900101", "003"), "赵六!", "2026-03-01", 6957.5, "牙科"],
            [make_id_number("110105", "19900101", "005"), "钱七", "2026-13-01", None, "pension"],
        ])
        r = await upload(reg, data)
        assert r.status_code == 201, r.text
        out = r.json()
        assert (out["rows"], out["registered"], out["failed"], out["format"]) == (5, 2, 3, "xlsx")
        errs = {(e["row"], e["column"], e["field"], e["code"]) for e in out["errors"]}
        assert errs == {
            (5, "A", "id_number", "id_number_invalid"),
            (6, "B", "name", "name_invalid"), (6, "D", "monthly_wage_fen", "wage_invalid"),
            (6, "E", "insurance_types", "insurance_type_invalid"),
            (7, "C", "hire_date", "date_invalid"), (7, "D", "monthly_wage_fen", "missing"),
        }
        assert all(re.search(r"[\u4e00-\u9fff]", e["message"]) for e in out["errors"])
        roster = (await reg.client.get(f"{BASE}/employers/{CC_A}/employees", headers=reg.h(employer(CC_A)))).json()
        got = {(i["name"], i["monthly_wage_fen"], i["hire_date"], tuple(i["insurance_types"])) for i in roster["items"]}
        assert got == {("张三", 695750, "2026-03-01",
                        ("pension", "medical", "unemployment", "work_injury", "maternity")),
                       ("李四", 695750, "2026-03-02", ("pension", "medical"))}
        assert len(await reg.events("registration.person.enrolled.v1")) == 2
        # Read again, in English
        again = await reg.client.get(f"{URL}/{out['id']}", headers=reg.h(employer(CC_A), **{"Accept-Language": "en"}))
        assert again.status_code == 200
        body = again.json()
        assert (body["id"], body["registered"], body["failed"]) == (out["id"], 2, 3)
        assert all(not re.search(r"[\u4e00-\u9fff]", e["message"]) for e in body["errors"])
        [rec] = await reg.rows("SELECT * FROM employee_imports")
        assert ID_1 not in str(rec["errors"]) and "110105" not in str(rec["errors"])

    async def test_same_file_twice_enrols_nobody_twice(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 695750, "pension;medical"],
                     [ID_2, "李四", "2026-03-01", 695750, "pension;medical"]])
        first = (await upload(reg, data)).json()
        assert first["registered"] == 2
        second = await upload(reg, data)
        assert second.status_code == 201
        out = second.json()
        assert (out["registered"], out["failed"]) == (0, 2)
        assert {e["code"] for e in out["errors"]} == {"employee_already_enrolled"}
        assert await count(reg, "SELECT * FROM enrolments") == 2
        assert await count(reg, "SELECT * FROM persons") == 2
        assert len(await reg.events("registration.person.enrolled.v1")) == 2
        assert await count(reg, "SELECT * FROM employee_imports") == 2

    async def test_idempotency_key_replays_the_import(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 695750, "pension"]])
        a = await upload(reg, data, **{"Idempotency-Key": "imp-1"})
        b = await upload(reg, data, **{"Idempotency-Key": "imp-1"})
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] == b.json()["id"]
        assert await count(reg, "SELECT * FROM employee_imports") == 1

    async def test_duplicate_row_in_the_file(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 695750, "pension"],
                     [ID_1.lower(), "张三", "2026-03-01", 695750, "pension"]])
        out = (await upload(reg, data)).json()
        assert out["registered"] == 1
        assert [(e["row"], e["code"]) for e in out["errors"]] == [(3, "duplicate_row")]

    async def test_refusals_of_the_json_route_per_row(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        young = make_id_number("110105", "20150101", "001")
        data = xlsx([HEAD_EN, [young, "小明", "2026-03-01", 695750, "pension"],
                     [ID_1, "张三", "2026-06-01", 695750, "pension"]])
        out = (await upload(reg, data)).json()
        assert {(e["row"], e["field"], e["code"]) for e in out["errors"]} == {
            (2, "hire_date", "under_working_age"), (3, "hire_date", "hire_date_too_far_ahead")}
        assert await count(reg, "SELECT * FROM persons") == 0

    async def test_merged_cells_and_bilingual_headers(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        head = [f"{z} {e}" for z, e in zip(HEAD_ZH, HEAD_EN, strict=True)]
        data = xlsx([head, [ID_1, "张三", "2026-03-01", 695750, "pension"], ["合计", None, None, None, None]],
                    merge="A3:E3")
        out = (await upload(reg, data)).json()
        assert out["registered"] == 1
        assert [(e["row"], e["code"]) for e in out["errors"]] == [
            (3, "id_number_invalid"), (3, "missing"), (3, "missing"), (3, "missing"), (3, "missing")]

    async def test_formulas_read_as_cached_values_or_refused(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", None, "pension"],
                     [ID_2, "李四", "2026-03-01", None, "pension"]], formulas={"D2": "=6957.5*100", "D3": "=1+1"})
        data = with_cached_values(data, {"D2": "695750"})
        out = (await upload(reg, data)).json()
        assert out["registered"] == 1
        assert [(e["row"], e["column"], e["code"]) for e in out["errors"]] == [(3, "D", "missing")]
        [row] = await reg.rows("SELECT monthly_wage_fen FROM enrolments")
        assert row["monthly_wage_fen"] == 695750

    @pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
    async def test_csv_encodings(self, reg: Reg, encoding: str) -> None:
        await reg.register_employer(CC_A)
        text = csv_text([HEAD_ZH, [ID_1, "张三", "2026-03-01", 695750, "养老、医疗"], ["", "", "", "", ""],
                         [ID_2, "欧阳·娜娜", "2026-03-01", 695750, "工伤保险"]])
        r = await upload(reg, text.encode(encoding), name="员工.csv")
        assert r.status_code == 201, r.text
        out = r.json()
        assert (out["format"], out["rows"], out["registered"], out["errors"]) == ("csv", 2, 2, [])
        names = {x["name"] for x in await reg.rows("SELECT name FROM persons")}
        assert names == {"张三", "欧阳·娜娜"}

    async def test_not_found_and_other_units(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        await reg.register_employer(CC_B)
        out = (await upload(reg, xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 1, "pension"]]))).json()
        problem(await reg.client.get(f"{URL}/{out['id']}", headers=reg.h(employer(CC_B))), 403, "not_own_employer")
        problem(await reg.client.get(f"{BASE}/employers/{CC_B}/employee-imports/{out['id']}",
                                     headers=reg.h(employer(CC_B))), 404, "employee_import_not_found")
        assert (await reg.client.get(f"{URL}/{out['id']}", headers=reg.h(STAFF_OPERATOR))).status_code == 200
        problem(await upload(reg, b"x", cc=CC_B, **{}), 422, "spreadsheet_header_invalid")
        r = await reg.client.post(URL, files={"file": ("a.csv", b"id_number\n")}, headers=reg.h(employer(CC_B)))
        problem(r, 403, "not_own_employer")

    async def test_unregistered_employer(self, reg: Reg) -> None:
        problem(await upload(reg, xlsx([HEAD_EN])), 404, "employer_not_found")


class TestTemplate:
    async def test_template_has_chinese_headers_and_a_sample_row_it_can_import(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.get(f"{URL}/template", headers=reg.h(employer(CC_A)))
        assert r.status_code == 200
        assert r.headers["content-type"] == spreadsheets.XLSX_MEDIA_TYPE
        ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
        rows = list(ws.iter_rows(values_only=True))
        assert list(rows[0]) == HEAD_ZH
        assert rows[1][0] == "11010519491231002X" and rows[1][1] == "张三"
        out = (await upload(reg, r.content)).json()
        assert (out["rows"], out["registered"]) == (1, 1)


class TestBadFiles:
    async def test_wrong_header_is_named(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([["身份正号", "姓名", "入职日期", "月工资(分)", "参保险种"], [ID_1, "张三", "2026-03-01", 1, "pension"]])
        body = problem(await upload(reg, data), 422, "spreadsheet_header_invalid")
        assert "身份正号" in body["detail"]
        codes = {(e["code"], e.get("column"), e.get("header")) for e in body["errors"]}
        assert ("header_unknown", "A", "身份正号") in codes
        assert ("header_missing", None, "身份证号码") in codes
        en = problem(await upload(reg, data, **{"Accept-Language": "en"}), 422, "spreadsheet_header_invalid")
        assert "unknown header '身份正号' in column A" in en["detail"]
        assert await count(reg, "SELECT * FROM persons") == 0

    async def test_no_file(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.post(URL, data={"x": "1"}, headers=reg.h(employer(CC_A)))
        problem(r, 422, "file_missing")
        r = await reg.client.post(URL, json={"rows": []}, headers=reg.h(employer(CC_A)))
        problem(r, 422, "file_missing")

    async def test_empty_file(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        problem(await upload(reg, b"", name="a.csv"), 422, "spreadsheet_empty")
        problem(await upload(reg, b"\r\n,,,\r\n", name="a.csv"), 422, "spreadsheet_empty")

    async def test_too_large(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        big = b"id_number\n" + b"1" * spreadsheets.MAX_BYTES
        body = problem(await upload(reg, big, name="big.csv"), 413, "file_too_large")
        assert body["max_bytes"] == 20 * 1024 * 1024

    async def test_too_many_rows(self, reg: Reg, monkeypatch: pytest.MonkeyPatch) -> None:
        await reg.register_employer(CC_A)
        line = f"{ID_1},张三,2026-03-01,1,pension\n"
        data = (",".join(HEAD_EN) + "\n" + line * (spreadsheets.MAX_ROWS + 1)).encode()
        problem(await upload(reg, data, name="many.csv"), 413, "spreadsheet_too_many_rows")
        assert await count(reg, "SELECT * FROM persons") == 0

    async def test_not_a_spreadsheet(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
        problem(await upload(reg, png, name="photo.png"), 415, "file_type_unsupported")
        xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
        problem(await upload(reg, xls, name="old.xls"), 415, "file_type_unsupported")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("readme.txt", "hello")
        problem(await upload(reg, buf.getvalue(), name="a.zip"), 415, "file_type_unsupported")

    async def test_damaged_workbook(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 1, "pension"]])
        problem(await upload(reg, data[: len(data) // 2]), 422, "spreadsheet_unreadable")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("xl/workbook.xml", "<not xml")
        problem(await upload(reg, buf.getvalue()), 422, "spreadsheet_unreadable")

    async def test_zip_bomb(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("xl/workbook.xml", "<workbook/>")
            z.writestr("xl/worksheets/sheet1.xml", b"<" + b" " * (100 * 1024 * 1024) + b"/>")
        assert len(buf.getvalue()) < 1024 * 1024
        body = problem(await upload(reg, buf.getvalue()), 422, "spreadsheet_unreadable")
        assert "zip bomb" in (await upload(reg, buf.getvalue(), **{"Accept-Language": "en"})).json()["detail"]
        del body

    async def test_xml_entity_bomb(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        data = xlsx([HEAD_EN, [ID_1, "张三", "2026-03-01", 1, "pension"]])
        src = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        doctype = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
                   + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">'
                             for i in range(9)) + "]>")
        with zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                content = src.read(info.filename)
                if info.filename == "xl/worksheets/sheet1.xml":
                    text = content.decode()
                    assert "张三" in text
                    text = text.replace("张三", "&lol8;")
                    end = text.index("?>") + 2 if text.startswith("<?xml") else 0
                    content = (text[:end] + doctype + text[end:]).encode()
                dst.writestr(info, content)
        problem(await upload(reg, out.getvalue()), 422, "spreadsheet_unreadable")


class TestCells:
    def test_yuan_cells_are_exact(self) -> None:
        assert spreadsheets.yuan_cell(6957.5) == 695750
        assert spreadsheets.yuan_cell(0.29) == 29
        assert spreadsheets.yuan_cell(1234567.89) == 123456789
        assert spreadsheets.yuan_cell("6,957.50") == 695750
        assert spreadsheets.yuan_cell("６９５７.５") == 695750
        assert spreadsheets.yuan_cell(7000) == 700000
        for bad in (6957.555, "6957.555", "abc", "-1", "1e3", True, "٦٩٥٧"):
            with pytest.raises(spreadsheets.CellError):
                spreadsheets.yuan_cell(bad)

    def test_fen_cells_are_whole(self) -> None:
        assert spreadsheets.fen_cell(695750.0) == 695750
        assert spreadsheets.fen_cell("695750") == 695750
        for bad in (6957.5, "6957.50", "٦٩٥٧", "1e3"):
            with pytest.raises(spreadsheets.CellError):
                spreadsheets.fen_cell(bad)

    def test_dates(self) -> None:
        assert spreadsheets.date_cell(datetime(2026, 3, 1)) == date(2026, 3, 1)
        assert spreadsheets.date_cell("2026年3月1日") == date(2026, 3, 1)
        assert spreadsheets.date_cell("２０２６-０３-０１") == date(2026, 3, 1)
        for bad in ("2026-02-30", 46000, "tomorrow"):
            with pytest.raises(spreadsheets.CellError):
                spreadsheets.date_cell(bad)

    def test_exports_escape_formula_starts(self) -> None:
        assert [spreadsheets.safe_text(v) for v in ("=1+1", "+86", "-2", "@SUM(A1)", "张三", None)] == [
            "'=1+1", "'+86", "'-2", "'@SUM(A1)", "张三", ""]
        data = spreadsheets.xlsx_bytes(["h"], [["=HYPERLINK(\"x\")"], [5]])
        ws = openpyxl.load_workbook(io.BytesIO(data)).active
        assert [c.value for c in ws["A"]] == ["h", "'=HYPERLINK(\"x\")", 5]
        assert ws["A2"].data_type == "s"
