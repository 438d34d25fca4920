"""Employer annual declaration: roster, lines and differences, submit, decision, overdue, receipt."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from sqlalchemy import func, select

from services.review.events import ANNUAL_DECLARATION_APPROVED
from services.review.models import AnnualDeclaration, DeclarationLine
from tests.helpers import citizen, employer, make_id_number, name_of, staff
from tests.review.conftest import CC, OTHER_CC, audits, many_id_numbers, outbox, person_uuid

BASE = "/review/v1/employers/{cc}/annual-declarations/{year}"
A, B, C, D = (make_id_number("110105", "19900101", s) for s in ("011", "022", "033", "044"))
GONE = make_id_number("110105", "19900101", "055")


def url(suffix: str = "", cc: str = CC, year: int = 2025) -> str:
    return BASE.format(cc=cc, year=year) + suffix


async def setup_roster(feed) -> None:
    await feed.employer()
    await feed.policy()  # Beijing from 2025-07: 6,957 to 35,283 CNY
    await feed.enrol(A, "张三", wage=1_000_000)
    await feed.enrol(B, "李四", wage=900_000)
    await feed.enrol(C, "王五", wage=800_000, start_month="2025-04")
    e = await feed.enrol(GONE, "赵六", wage=700_000, start_month="2023-01")
    await feed.separate(GONE, e, "2024-11")  # left before the wage year: not on its roster


def emp(svc, cc: str = CC):
    return svc.headers(employer(cc))


class TestRoster:
    async def test_anonymous_citizen_other_employer_unknown(self, svc, feed):
        await setup_roster(feed)
        assert (await svc.client.get(url("/roster"))).status_code == 401
        r = await svc.client.get(url("/roster"), headers=svc.headers(citizen()))
        assert r.status_code == 403
        r = await svc.client.get(url("/roster"), headers=emp(svc, OTHER_CC))
        assert (r.status_code, r.json()["code"]) == (403, "not_own_employer")
        r = await svc.client.get(url("/roster", cc=OTHER_CC), headers=emp(svc, OTHER_CC))
        assert (r.status_code, r.json()["code"]) == (404, "employer_not_found")
        r = await svc.client.get(url("/roster", year=1999), headers=emp(svc))
        assert r.status_code == 422
        r = await svc.client.get(url("/roster") + "?format=xls", headers=emp(svc))
        assert r.status_code == 422

    async def test_json_is_masked_and_paginated(self, svc, feed):
        await setup_roster(feed)
        r = await svc.client.get(url("/roster") + "?limit=2", headers=emp(svc))
        assert r.status_code == 200, r.text
        page = r.json()
        assert [i["name"] for i in page["items"]] == ["张三", "李四"]
        assert page["items"][0]["id_number_masked"] == A[:6] + "********" + A[-4:]
        assert A not in r.text
        r = await svc.client.get(url("/roster") + f"?limit=2&cursor={page['next_cursor']}", headers=emp(svc))
        assert [i["name"] for i in r.json()["items"]] == ["王五"]
        assert r.json()["next_cursor"] is None
        r = await svc.client.get(url("/roster") + "?cursor=%%%", headers=emp(svc))
        assert r.status_code == 422

    async def test_csv_has_a_bom_and_chinese_intact(self, svc, feed):
        await setup_roster(feed)
        r = await svc.client.get(url("/roster") + "?format=csv", headers=emp(svc))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["cache-control"] == "no-store"
        assert r.content.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert rows[0][0].startswith("身份证号码")
        assert [(x[0], x[1]) for x in rows[1:]] == [(A, "张三"), (B, "李四"), (C, "王五")]
        [a] = await audits(svc, "roster.export_csv")
        assert (a.actor, a.target_id, a.details) == (f"employer:{CC}", CC, {"year": 2025})


class TestPutLines:
    async def test_anonymous_and_other_employer(self, svc, feed):
        await setup_roster(feed)
        assert (await svc.client.put(url(), json={"lines": []})).status_code == 401
        r = await svc.client.put(url(), json={"lines": []}, headers=emp(svc, OTHER_CC))
        assert r.status_code == 403

    async def test_bad_body_and_year(self, svc, feed):
        await setup_roster(feed)
        r = await svc.client.put(url(), content=b"[", headers=emp(svc, **{}) | {"Content-Type": "application/json"})
        assert r.status_code == 400
        r = await svc.client.put(url(), json={"rows": []}, headers=emp(svc))
        assert r.status_code == 422
        r = await svc.client.put(url(year=2026), json={"lines": []}, headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (422, "year_not_declarable")

    async def test_differences_of_each_kind(self, svc, feed):
        await setup_roster(feed)
        lines = [
            {"id_number": A, "name": "张三", "avg_monthly_wage_fen": 1_000_000},
            {"id_number": B, "name": "李思", "avg_monthly_wage_fen": 500_000},  # name differs, below the band
            {"id_number": D.lower(), "name": "孙七", "avg_monthly_wage_fen": 4_000_000},  # unknown, above the band
        ]
        r = await svc.client.put(url(), json={"lines": lines}, headers=emp(svc))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["headcount"], body["total_wages_fen"]) == ("draft", 3, 5_500_000)
        assert body["effective_from"] == "2026-07"
        assert body["band"]["base_lower_fen"] == 695_700
        assert body["errors"] == []
        diff = body["differences"]
        assert [(x["name"], x["person_id"]) for x in diff["not_declared"]] == [("王五", person_uuid(C))]
        assert [(x["line"], x["name"]) for x in diff["not_registered"]] == [(3, "孙七")]
        assert [(x["line"], x["declared_name"], x["registered_name"]) for x in diff["name_differs"]] == [(2, "李思", "李四")]
        assert [(x["line"], x["new_base_fen"], x["below_band"]) for x in diff["outside_band"]] == [
            (2, 695_700, True), (3, 3_528_300, False),
        ]
        assert A not in r.text and D not in r.text
        async with svc.db.sessionmaker() as s:
            stored = (await s.execute(select(DeclarationLine).order_by(DeclarationLine.line_no))).scalars().all()
        assert [x.new_base_fen for x in stored] == [1_000_000, 695_700, 3_528_300]
        assert all(x.id_masked.count("*") == 8 for x in stored)

    async def test_errors_per_line_not_one_422(self, svc, feed):
        await setup_roster(feed)
        bad_check = A[:-1] + ("0" if A[-1] != "0" else "1")
        lines = [
            {"id_number": A, "name": "张三", "avg_monthly_wage_fen": 1_000_000},
            {"id_number": bad_check, "name": "某", "avg_monthly_wage_fen": 1},
            {"id_number": B, "avg_monthly_wage_fen": -5},
            {"id_number": A, "name": "张三", "avg_monthly_wage_fen": 1_000_000},
            {"id_number": C, "name": "王五", "avg_monthly_wage_fen": "8000"},
            {"id_number": C, "name": "王五", "avg_monthly_wage_fen": 12.5},
            "not an object",
            {"id_number": D, "name": "x" * 51, "avg_monthly_wage_fen": 10**12, "extra": 1},
        ]
        r = await svc.client.put(url(), json={"lines": lines}, headers=svc.headers(employer(CC), **{"Accept-Language": "en"}))
        assert r.status_code == 200, r.text
        errs = {(e["line"], e["field"], e["code"]) for e in r.json()["errors"]}
        assert errs == {
            (2, "id_number", "id_number_invalid"),
            (3, "name", "missing"), (3, "avg_monthly_wage_fen", "wage_invalid"),
            (4, "id_number", "duplicate_line"),
            (5, "avg_monthly_wage_fen", "wage_invalid"),
            (6, "id_number", "duplicate_line"), (6, "avg_monthly_wage_fen", "wage_invalid"),
            (7, "line", "line_not_object"),
            (8, "extra", "unknown_field"), (8, "name", "name_invalid"), (8, "avg_monthly_wage_fen", "wage_too_large"),
        }
        assert r.json()["invalid_lines"] == 7
        assert r.json()["headcount"] == 1
        assert all(e["message"] for e in r.json()["errors"])
        r = await svc.client.post(url("/submit"), headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (422, "annual_declaration_incomplete")

    async def test_five_thousand_lines_in_one_request(self, svc, feed):
        await setup_roster(feed)
        lines = [
            {"id_number": idn, "name": name_of(i), "avg_monthly_wage_fen": 690_000 + 2 * i}
            for i, idn in enumerate(many_id_numbers(5000))
        ]
        assert len({x["id_number"] for x in lines}) == 5000
        r = await svc.client.put(url(), json={"lines": lines}, headers=emp(svc))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["headcount"], body["invalid_lines"], body["errors"]) == (5000, 0, [])
        assert len(body["differences"]["not_registered"]) == 5000
        assert len(body["differences"]["outside_band"]) == 2850  # wages under 6,957 CNY are below the band
        async with svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(DeclarationLine))).scalar() == 5000
        # A second upload replaces the first.
        r = await svc.client.put(url(), json={"lines": lines[:10]}, headers=emp(svc))
        async with svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(DeclarationLine))).scalar() == 10


GOOD = [
    {"id_number": A, "name": "张三", "avg_monthly_wage_fen": 1_000_000},
    {"id_number": B, "name": "李四", "avg_monthly_wage_fen": 500_000},
    {"id_number": C, "name": "王五", "avg_monthly_wage_fen": 800_000},
]


async def submitted(svc, feed) -> str:
    await setup_roster(feed)
    r = await svc.client.put(url(), json={"lines": GOOD}, headers=emp(svc))
    assert r.status_code == 200, r.text
    r = await svc.client.post(url("/submit"), headers=emp(svc))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    return r.json()["id"]


class TestSubmitAndDecision:
    async def test_submit_anonymous_other_and_missing(self, svc, feed):
        await setup_roster(feed)
        assert (await svc.client.post(url("/submit"))).status_code == 401
        r = await svc.client.post(url("/submit"), headers=emp(svc, OTHER_CC))
        assert r.status_code == 403
        r = await svc.client.post(url("/submit"), headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (404, "annual_declaration_not_found")

    async def test_submitted_cannot_be_changed(self, svc, feed):
        await submitted(svc, feed)
        r = await svc.client.put(url(), json={"lines": GOOD}, headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (409, "annual_declaration_not_editable")
        r = await svc.client.post(url("/submit"), headers=emp(svc))
        assert r.status_code == 409

    async def test_decision_who(self, svc, feed):
        did = await submitted(svc, feed)
        d = f"/review/v1/annual-declarations/{did}/decision"
        assert (await svc.client.post(d, json={"decision": "approve"})).status_code == 401
        r = await svc.client.post(d, json={"decision": "approve"}, headers=emp(svc))
        assert r.status_code == 403
        r = await svc.client.post(d, json={"decision": "approve"}, headers=svc.headers(staff("operator")))
        assert (r.status_code, r.json()["code"]) == (403, "staff_role_required")
        r = await svc.client.post("/review/v1/annual-declarations/nope/decision", json={"decision": "approve"},
                                  headers=svc.headers(staff("reviewer")))
        assert r.status_code == 404

    async def test_return_needs_reasons(self, svc, feed):
        did = await submitted(svc, feed)
        d = f"/review/v1/annual-declarations/{did}/decision"
        r = await svc.client.post(d, json={"decision": "return"}, headers=svc.headers(staff("reviewer")))
        assert (r.status_code, r.json()["code"]) == (422, "reasons_required")
        r = await svc.client.post(d, json={"decision": "maybe"}, headers=svc.headers(staff("reviewer")))
        assert r.status_code == 422

    async def test_return_correct_resubmit_approve(self, svc, feed):
        did = await submitted(svc, feed)
        d = f"/review/v1/annual-declarations/{did}/decision"
        r = await svc.client.post(d, json={"decision": "return", "reasons": ["李四工资与个税申报不符"]},
                                  headers=svc.headers(staff("reviewer", staff_id="R1")))
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["reasons"]) == ("returned", ["李四工资与个税申报不符"])
        [a] = await audits(svc, "annual_declaration.return")
        assert (a.actor, a.target_id, a.reason) == ("staff:R1", did, "李四工资与个税申报不符")
        assert await outbox(svc, ANNUAL_DECLARATION_APPROVED) == []

        corrected = [dict(GOOD[0]), {**GOOD[1], "avg_monthly_wage_fen": 750_000}, dict(GOOD[2])]
        r = await svc.client.put(url(), json={"lines": corrected}, headers=emp(svc))
        assert r.status_code == 200 and r.json()["status"] == "returned"
        r = await svc.client.post(url("/submit"), headers=emp(svc))
        assert r.json()["status"] == "submitted"

        r = await svc.client.post(d, json={"decision": "approve"}, headers=svc.headers(staff("admin", staff_id="R2")))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "approved"
        [ev] = await outbox(svc, ANNUAL_DECLARATION_APPROVED)
        assert ev.subject == CC
        assert (ev.data["credit_code"], ev.data["year"], ev.data["effective_from"], ev.data["basis"]) == (
            CC, 2025, "2026-07", "declared",
        )
        assert [(x["avg_monthly_wage_fen"], x["new_base_fen"]) for x in ev.data["lines"]] == [
            (1_000_000, 1_000_000), (750_000, 750_000), (800_000, 800_000),
        ]
        assert [a.action for a in await audits(svc)] == ["annual_declaration.return", "annual_declaration.approve"]
        r = await svc.client.post(d, json={"decision": "approve"}, headers=svc.headers(staff("reviewer")))
        assert (r.status_code, r.json()["code"]) == (409, "annual_declaration_not_submitted")
        r = await svc.client.get(url(), headers=svc.headers(staff("reviewer")))
        assert r.json()["status"] == "approved"


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 2, 0, tzinfo=UTC)


class TestOverdue:
    URL = "/review/v1/annual-declarations/overdue"

    async def test_who(self, svc):
        assert (await svc.client.post(self.URL)).status_code == 401
        r = await svc.client.post(self.URL, headers=emp(svc))
        assert r.status_code == 403
        r = await svc.client.post(self.URL, json={"year": 2026}, headers=svc.headers(staff()))
        assert (r.status_code, r.json()["code"]) == (422, "year_not_declarable")

    async def test_flags_past_the_deadline_at_110_percent_of_previous_bases(self, svc, feed):
        await setup_roster(feed)
        await feed.employer(OTHER_CC, "天津迟报有限公司", region="120101")
        await feed.policy(region="120000", effective_from="2026-01", lower=501_300, upper=2_506_500)
        x = make_id_number("120101", "19850505", "101")
        await feed.enrol(x, "钱八", wage=500_000, credit_code=OTHER_CC, region="120101")
        # Last year CC's 2024 wages were approved: its previous bases come from there.
        svc.clock.set(at(2025, 3, 10))
        await feed.policy(effective_from="2024-07", effective_to="2025-06", lower=682_100, upper=3_528_300)
        r = await svc.client.put(url(year=2024), json={"lines": GOOD[:2]}, headers=emp(svc))
        assert r.status_code == 200, r.text
        await svc.client.post(url("/submit", year=2024), headers=emp(svc))
        did = (await svc.client.get(url(year=2024), headers=emp(svc))).json()["id"]
        r = await svc.client.post(f"/review/v1/annual-declarations/{did}/decision", json={"decision": "approve"},
                                  headers=svc.headers(staff("reviewer")))
        assert r.status_code == 200

        svc.clock.set(at(2026, 3, 31))  # Tianjin's deadline day, Beijing's is 05-31
        r = await svc.client.post(self.URL, headers=svc.headers(staff()))
        assert r.json() == {"year": 2025, "assessed": []}
        svc.clock.set(at(2026, 4, 1))
        r = await svc.client.post(self.URL, headers=svc.headers(staff("operator", staff_id="S9")))
        assert [(i["credit_code"], i["headcount"], i["total_bases_fen"]) for i in r.json()["assessed"]] == [
            (OTHER_CC, 1, 550_000),
        ]
        svc.clock.set(at(2026, 6, 1))
        r = await svc.client.post(self.URL, headers=svc.headers(staff()))
        [item] = r.json()["assessed"]
        assert item["credit_code"] == CC
        events = await outbox(svc, ANNUAL_DECLARATION_APPROVED)
        assert [e.data["basis"] for e in events] == ["declared", "assessed_overdue", "assessed_overdue"]
        cc_lines = {(x["avg_monthly_wage_fen"], x["new_base_fen"]) for x in events[2].data["lines"]}
        # A: 10,000 -> 11,000; B: last year's base (clamped to the 2025-07 band, 6,957) -> 7,652.70;
        # C: no previous base, registered wage 8,000 -> 8,800.
        assert cc_lines == {(1_000_000, 1_100_000), (695_700, 765_270), (800_000, 880_000)}
        r = await svc.client.post(self.URL, headers=svc.headers(staff()))
        assert r.json()["assessed"] == []  # idempotent
        async with svc.db.sessionmaker() as s:
            d = (await s.execute(select(AnnualDeclaration).where(AnnualDeclaration.credit_code == CC,
                                                                  AnnualDeclaration.year == 2025))).scalar_one()
            assert (d.status, d.overdue) == ("assessed", True)
        assert len(await audits(svc, "annual_declaration.assess_overdue")) == 2
        r = await svc.client.put(url(), json={"lines": GOOD}, headers=emp(svc))
        assert r.status_code == 409


class TestReceipt:
    async def test_who_and_missing(self, svc, feed):
        await setup_roster(feed)
        assert (await svc.client.get(url("/receipt"))).status_code == 401
        assert (await svc.client.get(url("/receipt"), headers=emp(svc, OTHER_CC))).status_code == 403
        r = await svc.client.get(url("/receipt"), headers=emp(svc))
        assert (r.status_code, r.json()["code"]) == (404, "annual_declaration_not_found")

    async def test_pdf_renders_in_chinese(self, svc, feed, tmp_path):
        import shutil

        import pytest

        did = await submitted(svc, feed)
        await svc.client.post(f"/review/v1/annual-declarations/{did}/decision",
                              json={"decision": "return", "reasons": ["李四的工资低于缴费基数下限，请核实"]},
                              headers=svc.headers(staff("reviewer")))
        r = await svc.client.get(url("/receipt"), headers=emp(svc))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF")
        assert b"FontFile2" in r.content  # the TrueType font is embedded
        if shutil.which("pdftoppm") is None:
            pytest.skip("pdftoppm not installed")
        dark, fonts = _render(r.content, tmp_path)
        assert dark > 2000  # text drawn, not an empty page
        assert "yes" in fonts.splitlines()[-1]  # the font is embedded


def _render(pdf_bytes: bytes, tmp_path) -> tuple[int, str]:
    """Rasterize the first page with pdftoppm: the count of dark pixels, and pdffonts' listing."""
    import subprocess

    from PIL import Image

    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(pdf_bytes)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-singlefile", str(pdf), str(tmp_path / "receipt")], check=True)
    img = Image.open(tmp_path / "receipt.png").convert("L")
    dark = sum(1 for p in img.getdata() if p < 128)
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    return dark, fonts


class TestRaces:
    async def test_two_first_uploads_make_one_declaration(self, svc, feed):
        import asyncio

        await setup_roster(feed)
        a, b = await asyncio.gather(
            svc.client.put(url(), json={"lines": GOOD[:1]}, headers=emp(svc)),
            svc.client.put(url(), json={"lines": GOOD}, headers=emp(svc)),
        )
        assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
        assert a.json()["id"] == b.json()["id"]
        async with svc.db.sessionmaker() as s:
            assert (await s.execute(select(func.count()).select_from(AnnualDeclaration))).scalar() == 1

    async def test_two_concurrent_approvals_publish_once(self, svc, feed):
        import asyncio

        did = await submitted(svc, feed)
        d = f"/review/v1/annual-declarations/{did}/decision"
        a, b = await asyncio.gather(
            svc.client.post(d, json={"decision": "approve"}, headers=svc.headers(staff("reviewer", staff_id="R1"))),
            svc.client.post(d, json={"decision": "approve"}, headers=svc.headers(staff("reviewer", staff_id="R2"))),
        )
        assert sorted((a.status_code, b.status_code)) == [200, 409]
        assert len(await outbox(svc, ANNUAL_DECLARATION_APPROVED)) == 1
        assert len(await audits(svc, "annual_declaration.approve")) == 1


class TestOverdueEdges:
    async def test_an_employer_without_employees_is_not_assessed(self, svc, feed):
        await feed.employer(OTHER_CC, "空壳有限公司", region="110105")
        svc.clock.set(at(2026, 6, 1))
        r = await svc.client.post("/review/v1/annual-declarations/overdue", json={"year": 2025}, headers=svc.headers(staff()))
        assert r.status_code == 200 and r.json()["assessed"] == []
        assert await outbox(svc, ANNUAL_DECLARATION_APPROVED) == []


class TestReviewerQueue:
    async def test_who(self, svc):
        assert (await svc.client.get("/review/v1/annual-declarations")).status_code == 401
        r = await svc.client.get("/review/v1/annual-declarations", headers=emp(svc))
        assert r.status_code == 403
        r = await svc.client.get("/review/v1/annual-declarations", headers=svc.headers(staff("operator")))
        assert r.status_code == 403
        r = await svc.client.get("/review/v1/annual-declarations?status=lost", headers=svc.headers(staff("reviewer")))
        assert r.status_code == 422
        r = await svc.client.get("/review/v1/annual-declarations?cursor=WyJ4Il0", headers=svc.headers(staff("reviewer")))
        assert (r.status_code, r.json()["code"]) == (422, "cursor_invalid")

    async def test_queue_pages_and_lines(self, svc, feed):
        did = await submitted(svc, feed)
        await feed.employer(OTHER_CC, "第二家公司")
        svc.clock.advance(minutes=5)
        r = await svc.client.put(url(cc=OTHER_CC), json={"lines": GOOD[:1]}, headers=emp(svc, OTHER_CC))
        await svc.client.post(url("/submit", cc=OTHER_CC), headers=emp(svc, OTHER_CC))
        other = r.json()["id"]
        await svc.client.put(url(year=2024), json={"lines": GOOD[:1]}, headers=emp(svc))  # a draft: not in the queue
        h = svc.headers(staff("reviewer"))
        r = await svc.client.get("/review/v1/annual-declarations?status=submitted&limit=1", headers=h)
        assert r.status_code == 200, r.text
        assert [d["id"] for d in r.json()["items"]] == [did]
        r = await svc.client.get(f"/review/v1/annual-declarations?status=submitted&limit=1&cursor={r.json()['next_cursor']}",
                                 headers=h)
        assert [d["id"] for d in r.json()["items"]] == [other]
        assert r.json()["next_cursor"] is None
        r = await svc.client.get(f"/review/v1/annual-declarations/{did}/lines?limit=2", headers=h)
        assert [(x["line"], x["name"], x["new_base_fen"]) for x in r.json()["items"]] == [
            (1, "张三", 1_000_000), (2, "李四", 695_700),
        ]
        assert A not in r.text
        r = await svc.client.get(f"/review/v1/annual-declarations/{did}/lines?cursor={r.json()['next_cursor']}", headers=h)
        assert [x["line"] for x in r.json()["items"]] == [3]
        r = await svc.client.get("/review/v1/annual-declarations/nope/lines", headers=h)
        assert r.status_code == 404
