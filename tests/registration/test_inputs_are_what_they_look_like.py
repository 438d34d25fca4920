"""Over HTTP: an identifier in full-width digits is the same identifier, other digits,
made-up provinces and names that are not names are refused, non-UTF-8 JSON is malformed,
and every time a client reads carries its offset."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers import citizen, employer, make_id_number, staff
from tests.registration.conftest import BASE, CC_A, ID_1, Reg, problem

OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def body(**over: object) -> dict[str, object]:
    return {"id_number": ID_1, "name": "张三", "hire_date": "2026-03-01", "monthly_wage_fen": 1_200_000,
            "insurance_types": ["pension", "medical"], **over}


def datetimes(doc: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in an answer that looks like a date and time."""
    out: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += datetimes(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += datetimes(v, f"{path}[{i}]")
    elif isinstance(doc, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", doc):
        out.append((path, doc))
    return out


class TestOnePersonWhateverTheDigits:
    async def test_full_width_id_number_is_the_same_person(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        first = await reg.enrol()
        again = await reg.enrol(id_number=ID_1.translate(FULL_WIDTH), expect=409)
        assert again["code"] == "employee_already_enrolled" and again["enrolment_id"] == first["id"]
        assert len(await reg.rows("SELECT * FROM persons")) == 1
        assert len(await reg.rows("SELECT * FROM enrolments")) == 1

    @pytest.mark.parametrize("zero", [0x0660, 0x06F0, 0x0966, 0x1D7CE])
    async def test_other_digits_are_refused(self, reg: Reg, zero: int) -> None:
        await reg.register_employer(CC_A)
        odd = "".join(chr(zero + int(c)) if c.isdigit() and c.isascii() else c for c in ID_1)
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(id_number=odd),
                                  headers=reg.h(employer(CC_A)))
        problem(r, 422, "id_number_invalid")
        assert await reg.rows("SELECT * FROM persons") == []

    @pytest.mark.parametrize("province", ["00", "10", "20", "60"])
    async def test_id_numbers_from_no_province(self, reg: Reg, province: str) -> None:
        await reg.register_employer(CC_A)
        idn = make_id_number(province + "0105", "19900101", "001")
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(id_number=idn),
                                  headers=reg.h(employer(CC_A)))
        problem(r, 422, "id_number_invalid")

    async def test_credit_code_with_letters_where_the_division_is(self, reg: Reg) -> None:
        cc = "91AB0100M000100Y4T"
        r = await reg.client.post(
            f"{BASE}/employers", headers=reg.h(employer(CC_A)),
            json={"credit_code": cc, "name": "某公司", "region_code": "110105", "address": "北京", "contact": "李四",
                  "work_injury_class": 1},
        )
        problem(r, 422, "credit_code_invalid")

    async def test_full_width_region_code_in_path_and_body(self, reg: Reg) -> None:
        r = await reg.client.get(f"{BASE}/regional-rules/1１0105")
        assert r.status_code == 200, r.text
        r = await reg.client.get(f"{BASE}/regional-rules/1٠0105")
        problem(r, 422, "region_code_invalid")
        out = await reg.register_employer(CC_A, region="１１０１０５")
        assert out["region_code"] == "110105"


class TestNames:
    @pytest.mark.parametrize("name", ["张\x00三", "张\u202e三", "\u200d", "张三😀", "e" + "\u0301" * 49, "张三1", " "])
    async def test_names_that_are_not_names(self, reg: Reg, name: str) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(name=name),
                                  headers=reg.h(employer(CC_A)))
        problem(r, 422, "name_invalid")
        assert await reg.rows("SELECT * FROM persons") == []

    async def test_minority_and_foreign_names(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(name="阿依古丽·买买提")
        assert out["person_id"]

    async def test_unit_name_with_a_control_character(self, reg: Reg) -> None:
        r = await reg.client.post(
            f"{BASE}/employers", headers=reg.h(employer(CC_A)),
            json={"credit_code": CC_A, "name": "某公司\u202e", "region_code": "110105", "address": "北京",
                  "contact": "李四", "work_injury_class": 1},
        )
        problem(r, 422, "text_invalid")


class TestBodiesAndNumbers:
    @pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
    async def test_json_is_utf8(self, reg: Reg, encoding: str) -> None:
        await reg.register_employer(CC_A)
        raw = json.dumps(body(), ensure_ascii=False).encode(encoding)
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", content=raw,
                                  headers={**reg.h(employer(CC_A)), "Content-Type": "application/json"})
        problem(r, 400, "malformed_body")
        assert await reg.rows("SELECT * FROM persons") == []

    async def test_utf8_with_a_byte_order_mark_is_read(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        raw = json.dumps(body(), ensure_ascii=False).encode("utf-8-sig")
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", content=raw,
                                  headers={**reg.h(employer(CC_A)), "Content-Type": "application/json"})
        assert r.status_code == 201, r.text

    @pytest.mark.parametrize("limit", ["2.0", "+2", "1_0", "٢"])
    async def test_query_numbers(self, reg: Reg, limit: str) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.get(f"{BASE}/employers/{CC_A}/employees", params={"limit": limit},
                                 headers=reg.h(employer(CC_A)))
        problem(r, 422, "validation_failed")


class TestTimesCarryTheirOffset:
    async def test_every_time_a_client_reads(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        enrolled = await reg.enrol()
        seen: list[tuple[str, str]] = []
        seen += datetimes(await reg.me())
        r = await reg.client.get(f"{BASE}/persons/{enrolled['person_id']}", headers=reg.h(staff("operator")))
        assert r.status_code == 200, r.text
        seen += datetimes(r.json())
        r = await reg.client.post(f"{BASE}/persons/lookup", json={"id_number": ID_1}, headers=reg.h(staff("operator")))
        assert r.status_code == 200, r.text
        seen += datetimes(r.json())
        r = await reg.client.get(f"{BASE}/regional-rules/110105")
        seen += datetimes(r.json())
        assert seen, "the answers hold times"
        assert [(p, v) for p, v in seen if not OFFSET.match(v)] == []

    async def test_citizen_profile_times(self, reg: Reg) -> None:
        await reg.enrol_self()
        me = await reg.client.get(f"{BASE}/me", headers=reg.h(citizen(ID_1, "张三")))
        times = datetimes(me.json())
        assert times and all(OFFSET.match(v) for _, v in times)
