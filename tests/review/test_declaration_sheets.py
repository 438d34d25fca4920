"""The annual declaration as a spreadsheet: the roster as .xlsx (escaped), lines PUT as .xlsx or CSV."""

from __future__ import annotations

import io

import openpyxl
from sqlalchemy import select

from services.common.spreadsheets import XLSX_MEDIA_TYPE
from services.review.models import DeclarationLine, RosterEntry
from tests.review.conftest import CC, audits
from tests.review.test_declaration import A, B, C, emp, setup_roster, url

HEAD = ["身份证号码", "姓名", "月平均工资(元)"]


def xlsx(rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def put_file(svc, data: bytes, name: str = "decl.xlsx", **headers: str):
    return await svc.client.put(url(), files={"file": (name, data)}, headers=emp(svc) | headers)


async def stored(svc) -> dict[str, int]:
    async with svc.db.sessionmaker() as s:
        rows = (await s.execute(select(DeclarationLine.name, DeclarationLine.avg_monthly_wage_fen))).all()
    return dict(rows)


class TestRosterXlsx:
    async def test_roster_as_xlsx_full_ids_as_text_cells_escaped_and_audited(self, svc, feed):
        await setup_roster(feed)
        async with svc.db.sessionmaker() as s:
            entry = (await s.execute(select(RosterEntry).where(RosterEntry.name == "王五"))).scalar_one()
            entry.name = "=HYPERLINK(\"http://x\")"  # as if a name had slipped through: never a formula
            await s.commit()
        r = await svc.client.get(url("/roster") + "?format=xlsx", headers=emp(svc))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == XLSX_MEDIA_TYPE
        assert r.headers["cache-control"] == "no-store"
        ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0][0].startswith("身份证号码") and rows[0][6].endswith("avg_monthly_wage_fen")
        assert [(x[0], x[1]) for x in rows[1:]] == [(A, "张三"), (B, "李四"), (C, "'=HYPERLINK(\"http://x\")")]
        assert all(ws.cell(row=i, column=2).data_type == "s" for i in range(2, 5))
        csv_r = await svc.client.get(url("/roster") + "?format=csv", headers=emp(svc))
        assert "'=HYPERLINK" in csv_r.content.decode("utf-8-sig")
        [a] = await audits(svc, "roster.export_xlsx")
        assert (a.target_id, a.details) == (CC, {"year": 2025})


class TestPutSpreadsheet:
    async def test_yuan_with_two_decimals_becomes_exact_fen(self, svc, feed):
        await setup_roster(feed)
        data = xlsx([HEAD, [A, "张三", 6957.5], [B, "李四", "8,000.05"], [C, "王五", 0.29]])
        r = await put_file(svc, data)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["headcount"], body["errors"]) == (3, [])
        assert await stored(svc) == {"张三": 695750, "李四": 800005, "王五": 29}

    async def test_the_roster_export_filled_in_goes_back_as_is(self, svc, feed):
        await setup_roster(feed)
        export = (await svc.client.get(url("/roster") + "?format=xlsx", headers=emp(svc))).content
        wb = openpyxl.load_workbook(io.BytesIO(export))
        ws = wb.active
        for i, wage in zip(range(2, 5), (1_000_000, 900_000, "８０００００"), strict=True):
            ws.cell(row=i, column=7, value=wage)
        buf = io.BytesIO()
        wb.save(buf)
        r = await put_file(svc, buf.getvalue())
        assert r.status_code == 200, r.text
        assert (r.json()["headcount"], r.json()["errors"]) == (3, [])
        assert await stored(svc) == {"张三": 1_000_000, "李四": 900_000, "王五": 800_000}
        # The CSV export, filled in and saved by Chinese Excel (GB18030)
        text = (await svc.client.get(url("/roster") + "?format=csv", headers=emp(svc))).content.decode("utf-8-sig")
        lines = text.strip("\r\n").split("\r\n")
        filled = "\r\n".join([lines[0]] + [ln[:-0 or None] + "700000" for ln in lines[1:]]) + "\r\n"
        r = await put_file(svc, filled.encode("gb18030"), name="roster.csv")
        assert r.status_code == 200, r.text
        assert set((await stored(svc)).values()) == {700000}

    async def test_row_errors_carry_row_numbers_and_columns(self, svc, feed):
        await setup_roster(feed)
        data = xlsx([["说明：请填写上年月平均工资"], [], HEAD, [A, "张三", 6957.555], [],
                     [A[:-1] + ("0" if A[-1] != "0" else "1"), "李四", 7000], [C, "王五", None]])
        r = await put_file(svc, data, **{"Accept-Language": "en"})
        # The first non-empty row is the header: a title row above it is a wrong header
        assert r.status_code == 422 and r.json()["code"] == "spreadsheet_header_invalid"
        data = xlsx([HEAD, [A, "张三", 6957.555], [], [A[:-1] + ("0" if A[-1] != "0" else "1"), "李四", 7000],
                     [C, "王五", None]])
        r = await put_file(svc, data)
        assert r.status_code == 200, r.text
        errs = [(e["line"], e["column"], e["field"], e["code"]) for e in r.json()["errors"]]
        assert errs == [(2, "C", "avg_monthly_wage_fen", "wage_invalid"), (4, "A", "id_number", "id_number_invalid"),
                        (5, "C", "avg_monthly_wage_fen", "missing")]

    async def test_wrong_or_ambiguous_header(self, svc, feed):
        await setup_roster(feed)
        r = await put_file(svc, xlsx([["身份证号码", "姓名", "工资"], [A, "张三", 1]]))
        body = r.json()
        assert (r.status_code, body["code"]) == (422, "spreadsheet_header_invalid")
        assert "工资" in body["detail"]
        both = xlsx([["身份证号码", "姓名", "月平均工资(元)", "月平均工资(分)"], [A, "张三", 1, 100]])
        r = await put_file(svc, both)
        assert (r.status_code, r.json()["code"]) == (422, "spreadsheet_header_invalid")

    async def test_bad_files(self, svc, feed):
        await setup_roster(feed)
        r = await put_file(svc, b"\x89PNG\r\n\x1a\n\x00\x00", name="x.png")
        assert (r.status_code, r.json()["code"]) == (415, "file_type_unsupported")
        r = await put_file(svc, b"1" * (20 * 1024 * 1024 + 1), name="x.csv")
        assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
        r = await svc.client.put(url(), files={"other": ("a.csv", b"x")}, headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (422, "file_missing")
        r = await svc.client.put(url(), data={"x": "1"}, headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (400, "malformed_body")
        # JSON still works as before
        r = await svc.client.put(url(), json={"lines": [{"id_number": A, "name": "张三", "avg_monthly_wage_fen": 1}]},
                                 headers=emp(svc))
        assert r.status_code == 200 and r.json()["headcount"] == 1
