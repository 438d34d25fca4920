"""Employee enrolment by the employer, separation, and the PII at rest."""

from __future__ import annotations

from services.common.pii import cipher, id_hash
from tests.helpers import citizen, employer, make_id_number
from tests.registration.conftest import BASE, CC_A, CC_B, ID_1, ID_2, STAFF_OPERATOR, Reg, problem

VALID_X = "11010519491231002X"


def body(**over: object) -> dict[str, object]:
    return {"id_number": ID_1, "name": "张三", "hire_date": "2026-03-01", "monthly_wage_fen": 1_200_000,
            "insurance_types": ["pension", "medical", "unemployment", "work_injury", "maternity"], **over}


class TestEnrolEmployee:
    async def test_anonymous_and_wrong_principals(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees"
        problem(await reg.client.post(url, json=body()), 401, "principal_required")
        problem(await reg.client.post(url, json=body(), headers=reg.h(citizen())), 403, "principal_kind_not_allowed")
        problem(await reg.client.post(url, json=body(), headers=reg.h(STAFF_OPERATOR)), 403, "principal_kind_not_allowed")
        problem(await reg.client.post(url, json=body(), headers=reg.h(employer(CC_B))), 403, "not_own_employer")
        assert await reg.rows("SELECT * FROM persons") == []

    async def test_unregistered_employer_is_404(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(), headers=reg.h(employer(CC_A)))
        problem(r, 404, "employer_not_found")

    async def test_bad_id_numbers(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees"
        changed = ID_1[:10] + ("1" if ID_1[10] != "1" else "2") + ID_1[11:]
        future = make_id_number("110105", "20300101", "001")
        for bad in (changed, future, ID_1[:17], "11010519900231001X", "abcdefghijklmnopqr"):
            r = await reg.client.post(url, json=body(id_number=bad), headers=reg.h(employer(CC_A)))
            err = problem(r, 422, "id_number_invalid")
            assert bad not in r.text, "the refused number is not echoed"
            assert err["errors"][0]["field"] == "id_number"
        r = await reg.client.post(url, json=body(id_number=110105199001010010), headers=reg.h(employer(CC_A)))
        problem(r, 422, "validation_failed")
        assert await reg.rows("SELECT * FROM persons") == []

    async def test_lowercase_x_is_normalized(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(id_number=VALID_X.lower(), name="王五", hire_date="2026-03-01")
        assert out["id_number_masked"] == "110105********002X"
        [person] = await reg.rows("SELECT * FROM persons")
        assert person["id_hash"] == id_hash(VALID_X)
        assert cipher().decrypt(person["id_number"]) == VALID_X
        assert (str(person["birth_date"]), person["sex"]) == ("1949-12-31", "female")

    async def test_bad_fields(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees"
        cases = [
            {"monthly_wage_fen": 0}, {"monthly_wage_fen": -5}, {"monthly_wage_fen": 1200.5}, {"monthly_wage_fen": "1200"},
            {"insurance_types": []}, {"insurance_types": ["pension", "dental"]}, {"insurance_types": "pension"},
            {"name": ""}, {"name": "名" * 51}, {"hire_date": "2026-02-30"}, {"hire_date": "next monday"},
            {"unexpected": 1},
        ]
        for over in cases:
            r = await reg.client.post(url, json=body(**over), headers=reg.h(employer(CC_A)))
            assert r.status_code == 422, (over, r.text)
        r = await reg.client.post(url, json=body(insurance_types=["pension", "pension"]), headers=reg.h(employer(CC_A)))
        problem(r, 422, "insurance_type_not_allowed")
        assert await reg.rows("SELECT * FROM persons") == []

    async def test_hire_date_at_most_30_days_ahead(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(hire_date="2026-04-10"),
                                  headers=reg.h(employer(CC_A)))
        problem(r, 422, "hire_date_too_far_ahead")
        out = await reg.enrol(hire_date="2026-04-09")
        assert out["start_month"] == "2026-04" and out["late"] is False

    async def test_under_16_is_refused(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        child = make_id_number("110105", "20100302", "001")
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(id_number=child, hire_date="2026-03-01"),
                                  headers=reg.h(employer(CC_A)))
        problem(r, 422, "under_working_age")

    async def test_on_time_enrolment_with_event_and_no_plaintext(self, reg: Reg) -> None:
        await reg.register_employer(CC_A, region="110105")
        out = await reg.enrol(hire_date="2026-02-08")  # 30 days before 2026-03-10: still on time
        assert out["late"] is False and out["late_days"] == 0
        assert out["status"] == "active" and out["category"] == "employee" and out["start_month"] == "2026-02"
        assert out["employer"] == {"credit_code": CC_A, "name": "北京示例科技有限公司"}
        assert out["id_number_masked"] == "110105********" + ID_1[-4:] and ID_1 not in str(out)
        assert out["person_id"] and out["id"]
        persons = await reg.rows("SELECT * FROM persons")
        enrolments = await reg.rows("SELECT * FROM enrolments")
        outbox = await reg.rows("SELECT * FROM outbox")
        for table in (persons, enrolments, outbox):
            assert ID_1 not in repr(table), "no plaintext id number at rest"
        assert persons[0]["id_hash"] == id_hash(ID_1) and persons[0]["id"] == out["person_id"]
        assert cipher().decrypt(persons[0]["id_number"]) == ID_1
        [event] = await reg.events("registration.person.enrolled.v1")
        data = event["data"]
        assert event["subject"] == out["person_id"]
        assert cipher().decrypt(data.pop("id_number_enc")) == ID_1
        assert data == {
            "person_id": out["person_id"], "id_hash": id_hash(ID_1), "id_masked": out["id_number_masked"],
            "name": "张三", "birth_date": "1990-01-01", "sex": "male", "enrolment_id": out["id"],
            "category": "employee", "region_code": "110105",
            "insurance_types": ["pension", "medical", "unemployment", "work_injury", "maternity"],
            "start_month": "2026-02",
            "employer": {"credit_code": CC_A, "name": "北京示例科技有限公司", "region_code": "110105", "work_injury_class": 2},
            "hire_date": "2026-02-08", "monthly_wage_fen": 1_200_000, "late": False, "late_days": 0,
            "household_region_code": None,
        }

    async def test_late_registration_is_accepted_and_flagged(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(hire_date="2026-02-07")  # 31 days before
        assert (out["late"], out["late_days"]) == (True, 1)
        out2 = await reg.enrol(id_number=ID_2, name="李梅", hire_date="2025-12-10")  # 90 days before
        assert (out2["late"], out2["late_days"]) == (True, 60)
        rows = await reg.rows("SELECT late, late_days FROM enrolments ORDER BY seq")
        assert [(bool(r["late"]), r["late_days"]) for r in rows] == [(True, 1), (True, 60)]
        events = await reg.events("registration.person.enrolled.v1")
        assert [(e["data"]["late"], e["data"]["late_days"]) for e in events] == [(True, 1), (True, 60)]

    async def test_one_open_employment_per_employer(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        first = await reg.enrol()
        again = await reg.enrol(expect=409)
        assert again["code"] == "employee_already_enrolled" and again["enrolment_id"] == first["id"]
        assert len(await reg.rows("SELECT * FROM enrolments")) == 1

    async def test_second_employer_pension_conflicts_but_work_injury_only_is_allowed(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        await reg.register_employer(CC_B, region="310101")
        first = await reg.enrol(CC_A)
        refused = await reg.enrol(CC_B, expect=409)
        assert refused["code"] == "enrolment_conflict"
        assert refused["open_enrolment"]["id"] == first["id"]
        assert refused["open_enrolment"]["category"] == "employee"
        assert refused["open_enrolment"]["region_code"] == "110105"
        part_time = await reg.enrol(CC_B, types=["work_injury"])
        assert part_time["region_code"] == "310101" and part_time["insurance_types"] == ["work_injury"]

    async def test_name_must_match_the_registered_person(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        await reg.register_employer(CC_B)
        await reg.enrol(CC_A, types=["work_injury"])
        r = await reg.enrol(CC_B, name="张叁", types=["work_injury"], expect=422)
        assert r["code"] == "name_mismatch"

    async def test_flexible_enrolment_ends_from_the_hire_month(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        flexible = await reg.enrol_self(start_month="2026-01")
        out = await reg.enrol(hire_date="2026-03-02")
        assert out["ended_enrolments"] == [flexible["id"]]
        rows = await reg.rows("SELECT id, status, end_month, end_reason, open_pension_key FROM enrolments ORDER BY seq")
        assert rows[0] == {"id": flexible["id"], "status": "ended", "end_month": "2026-02", "end_reason": "employment",
                           "open_pension_key": None}
        assert rows[1]["status"] == "active"
        [ended] = await reg.events("registration.person.enrolment_ended.v1")
        assert ended["data"]["enrolment_id"] == flexible["id"]
        assert ended["data"]["end_month"] == "2026-02" and ended["data"]["reason"] == "employment"
        assert ended["data"]["category"] == "flexible"
        types = [e["type"] for e in await reg.events()]
        assert types[-3:] == ["registration.person.enrolled.v1", "registration.person.enrolment_ended.v1",
                              "registration.person.enrolled.v1"]


class TestSeparation:
    async def test_principals(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        await reg.register_employer(CC_B)
        out = await reg.enrol(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees/{out['person_id']}/separation"
        problem(await reg.client.post(url, json={"separation_date": "2026-03-05"}), 401, "principal_required")
        problem(await reg.client.post(url, json={"separation_date": "2026-03-05"}, headers=reg.h(employer(CC_B))),
                403, "not_own_employer")
        # Another employer's employee through one's own path: not found, existence not revealed.
        r = await reg.client.post(f"{BASE}/employers/{CC_B}/employees/{out['person_id']}/separation",
                                  json={"separation_date": "2026-03-05"}, headers=reg.h(employer(CC_B)))
        problem(r, 404, "employment_not_found")
        r = await reg.client.post(f"{BASE}/employers/{CC_A}/employees/00000000-0000-4000-8000-00000000dead/separation",
                                  json={"separation_date": "2026-03-05"}, headers=reg.h(employer(CC_A)))
        problem(r, 404, "employment_not_found")

    async def test_bad_dates(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(hire_date="2026-03-01")
        r = await reg.separate(out["person_id"], date="2026-02-28", expect=422)
        assert r["code"] == "separation_before_hire" and r["hire_date"] == "2026-03-01"
        r = await reg.separate(out["person_id"], date="2026-04-10", expect=422)
        assert r["code"] == "separation_too_far_ahead"
        r = await reg.separate(out["person_id"], date="yesterday", expect=422)
        assert r["code"] == "validation_failed"
        [row] = await reg.rows("SELECT status FROM enrolments")
        assert row["status"] == "active"

    async def test_separation_ends_the_enrolment(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(hire_date="2025-06-01")
        sep = await reg.separate(out["person_id"], date="2026-01-20")
        assert sep["status"] == "ended" and sep["end_month"] == "2026-01" and sep["end_reason"] == "separation"
        assert sep["separation_date"] == "2026-01-20" and sep["id"] == out["id"]
        [row] = await reg.rows("SELECT * FROM enrolments")
        assert row["open_employment_key"] is None and row["open_pension_key"] is None
        assert row["separation_reason"] == "合同到期"
        [separated] = await reg.events("registration.person.separated.v1")
        assert separated["data"] == {
            "person_id": out["person_id"], "id_hash": id_hash(ID_1), "enrolment_id": out["id"],
            "employer_credit_code": CC_A, "separation_date": "2026-01-20", "last_month": "2026-01", "reason": "合同到期",
        }
        [ended] = await reg.events("registration.person.enrolment_ended.v1")
        assert ended["data"]["reason"] == "separation" and ended["data"]["end_month"] == "2026-01"
        again = await reg.separate(out["person_id"], date="2026-01-20", expect=409)
        assert again["code"] == "enrolment_already_ended"
        # The same employer may hire the person again.
        rehired = await reg.enrol(hire_date="2026-03-01")
        assert rehired["person_id"] == out["person_id"] and rehired["id"] != out["id"]

    async def test_flexible_after_separation_from_the_next_month(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        out = await reg.enrol(hire_date="2025-06-01")
        await reg.separate(out["person_id"], date="2026-01-20")
        refused = await reg.enrol_self(start_month="2026-01", expect=422)
        assert refused["code"] == "start_month_overlaps" and refused["earliest_start_month"] == "2026-02"
        flexible = await reg.enrol_self(start_month="2026-02")
        assert flexible["category"] == "flexible" and flexible["person_id"] == out["person_id"]


class TestConcurrentEmployers:
    async def test_simultaneous_registrations_and_enrolments_one_wins(self, reg: Reg) -> None:
        import asyncio

        employer_body = {"credit_code": CC_A, "name": "北京示例科技有限公司", "region_code": "110105", "address": "示例路",
                         "contact": "李四", "work_injury_class": 2}
        results = await asyncio.gather(*[
            reg.client.post(f"{BASE}/employers", json=employer_body, headers=reg.h(employer(CC_A))) for _ in range(3)])
        assert sorted(r.status_code for r in results) == [201, 409, 409]
        results = await asyncio.gather(*[
            reg.client.post(f"{BASE}/employers/{CC_A}/employees", json=body(), headers=reg.h(employer(CC_A)))
            for _ in range(3)])
        assert sorted(r.status_code for r in results) == [201, 409, 409], [r.text for r in results]
        assert {r.json()["code"] for r in results if r.status_code == 409} == {"employee_already_enrolled"}
        assert len(await reg.rows("SELECT id FROM enrolments")) == 1
        assert len(await reg.rows("SELECT id FROM persons")) == 1
        assert len(await reg.events("registration.person.enrolled.v1")) == 1
