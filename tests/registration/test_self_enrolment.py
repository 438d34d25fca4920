"""Self-enrolment (flexible, resident), ending it, and the regional household rule."""

from __future__ import annotations

from typing import Any

from services.common.pii import id_hash
from tests.helpers import citizen, employer, make_id_number
from tests.registration.conftest import BASE, CC_A, ID_1, ID_2, STAFF_ADMIN, STAFF_OPERATOR, Reg, problem

FLEX = {"category": "flexible", "region_code": "110105", "household_region_code": "110105",
        "insurance_types": ["pension", "medical"], "start_month": "2026-03"}


class TestSelfEnrolment:
    async def test_anonymous_and_wrong_principals(self, reg: Reg) -> None:
        url = f"{BASE}/me/enrolments"
        problem(await reg.client.post(url, json=FLEX), 401, "principal_required")
        problem(await reg.client.post(url, json=FLEX, headers=reg.h(employer())), 403, "principal_kind_not_allowed")
        problem(await reg.client.post(url, json=FLEX, headers=reg.h(STAFF_OPERATOR)), 403, "principal_kind_not_allowed")
        r = await reg.client.post(url, json=FLEX, headers={"X-Principal": "forged.token.here"})
        problem(r, 401, "principal_invalid")

    async def test_identity_comes_from_the_token_never_the_body(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/me/enrolments", json={**FLEX, "id_number": ID_2},
                                  headers=reg.h(citizen(ID_1, "张三")))
        err = problem(r, 422, "validation_failed")
        assert err["errors"][0]["field"] == "id_number" and err["errors"][0]["code"] == "extra_forbidden"
        r = await reg.client.post(f"{BASE}/me/enrolments", json={**FLEX, "name": "冒名"},
                                  headers=reg.h(citizen(ID_1, "张三")))
        problem(r, 422, "validation_failed")
        assert await reg.rows("SELECT * FROM persons") == []
        out = await reg.enrol_self(ID_1, "张三")
        [person] = await reg.rows("SELECT id, id_hash, name FROM persons")
        assert person == {"id": out["person_id"], "id_hash": id_hash(ID_1), "name": "张三"}

    async def test_bad_input(self, reg: Reg) -> None:
        cases = [
            ({"category": "employee"}, "validation_failed"),
            ({"category": "pensioner"}, "validation_failed"),
            ({"insurance_types": ["pension", "unemployment"]}, "insurance_type_not_allowed"),
            ({"insurance_types": ["work_injury"]}, "insurance_type_not_allowed"),
            ({"insurance_types": []}, "validation_failed"),
            ({"household_region_code": None}, "household_region_required"),
            ({"region_code": "1101"}, "region_code_invalid"),
            ({"region_code": "11010a"}, "region_code_invalid"),
            ({"start_month": "2026-04"}, "start_month_out_of_range"),
            ({"start_month": "2025-12"}, "start_month_out_of_range"),
            ({"start_month": "2026-3"}, "month_invalid"),
            ({"start_month": "2026-13"}, "month_invalid"),
        ]
        for over, code in cases:
            body = {k: v for k, v in {**FLEX, **over}.items() if v is not None}
            r = await reg.client.post(f"{BASE}/me/enrolments", json=body, headers=reg.h(citizen(ID_1)))
            problem(r, 422, code)
        r = await reg.client.post(f"{BASE}/me/enrolments", json={**FLEX, "start_month": "2026-04"},
                                  headers=reg.h(citizen(ID_1), **{"Accept-Language": "en"}))
        err = problem(r, 422, "start_month_out_of_range")
        assert err["earliest_start_month"] == "2026-01" and err["latest_start_month"] == "2026-03"
        assert "calendar year" in err["title"]
        assert await reg.rows("SELECT * FROM enrolments") == []

    async def test_flexible_back_to_january(self, reg: Reg) -> None:
        out = await reg.enrol_self(start_month="2026-01")
        assert out["status"] == "active" and out["start_month"] == "2026-01" and out["end_month"] is None
        assert out["household_region_code"] == "110105" and out["employer"] is None
        [event] = await reg.events("registration.person.enrolled.v1")
        assert event["data"]["category"] == "flexible" and event["data"]["household_region_code"] == "110105"
        assert event["data"]["employer"] is None and event["data"]["insurance_types"] == ["pension", "medical"]

    async def test_resident_needs_no_household_region(self, reg: Reg) -> None:
        body = {"category": "resident", "region_code": "320102", "insurance_types": ["pension"], "start_month": "2026-02"}
        r = await reg.client.post(f"{BASE}/me/enrolments", json=body, headers=reg.h(citizen(ID_2, "李梅", level=1)))
        assert r.status_code == 201, r.text
        assert r.json()["category"] == "resident"

    async def test_one_open_pension_enrolment(self, reg: Reg) -> None:
        first = await reg.enrol_self(region_code="110105", household_region_code="110105")
        refused = await reg.enrol_self(region_code="320102", household_region_code="110105", expect=409)
        assert refused["code"] == "enrolment_conflict"
        assert refused["open_enrolment"] == {"id": first["id"], "category": "flexible", "region_code": "110105",
                                             "start_month": "2026-03", "employer_credit_code": None,
                                             "region_name": "北京市朝阳区"}
        refused = await reg.enrol_self(category="resident", household_region_code=None, insurance_types=["pension"],
                                       expect=409)
        assert refused["code"] == "enrolment_conflict"
        assert len(await reg.rows("SELECT * FROM enrolments")) == 1

    async def test_employee_cannot_also_enrol_flexible(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        emp = await reg.enrol()
        refused = await reg.enrol_self(expect=409)
        assert refused["open_enrolment"]["id"] == emp["id"]
        assert refused["open_enrolment"]["employer_credit_code"] == CC_A

    async def test_household_rule_beijing_local_only(self, reg: Reg) -> None:
        # Beijing (110000): flexible enrolment needs a Beijing household; any Beijing district is local.
        nanjing = make_id_number("320102", "19880101", "003")
        r = await reg.enrol_self(nanjing, "赵六", region_code="110105", household_region_code="320102", expect=422)
        assert r["code"] == "non_local_household_not_allowed" and r["region_code"] == "110000"
        out = await reg.enrol_self(ID_1, region_code="110105", household_region_code="110108")
        assert out["region_code"] == "110105"

    async def test_household_rule_jiangsu_allows_non_local(self, reg: Reg) -> None:
        out = await reg.enrol_self(ID_1, region_code="320102", household_region_code="110105")
        assert out["region_code"] == "320102"

    async def test_no_rule_means_same_city(self, reg: Reg) -> None:
        r = await reg.enrol_self(ID_1, region_code="440305", household_region_code="440106", expect=422)
        assert r["code"] == "non_local_household_not_allowed" and r["region_code"] == "440300"
        await reg.enrol_self(ID_1, region_code="440305", household_region_code="440304")

    async def test_dated_rule_changed_by_an_admin(self, reg: Reg) -> None:
        # Shanghai: local only, until an admin relaxes it from 2026-03-01.
        r = await reg.enrol_self(ID_1, region_code="310101", household_region_code="110105", expect=422)
        assert r["code"] == "non_local_household_not_allowed"
        rule = {"flexible_non_local_allowed": True, "note": "放开户籍限制", "reason": "市人社局通知"}
        put = await reg.client.put(f"{BASE}/regional-rules/310000/2026-03-01", json=rule, headers=reg.h(STAFF_ADMIN))
        assert put.status_code == 201, put.text
        await reg.enrol_self(ID_1, region_code="310101", household_region_code="110105")


class TestEndSelfEnrolment:
    async def test_principals_and_ownership(self, reg: Reg) -> None:
        out = await reg.enrol_self(ID_1)
        url = f"{BASE}/me/enrolments/{out['id']}/end"
        problem(await reg.client.post(url, json={"end_month": "2026-03"}), 401, "principal_required")
        problem(await reg.client.post(url, json={"end_month": "2026-03"}, headers=reg.h(citizen(ID_1, level=1))),
                403, "realname_level_too_low")
        # Someone else's enrolment id: 404, existence not revealed.
        problem(await reg.client.post(url, json={"end_month": "2026-03"}, headers=reg.h(citizen(ID_2, "李梅"))),
                404, "enrolment_not_found")
        problem(await reg.client.post(f"{BASE}/me/enrolments/00000000-0000-4000-8000-00000000dead/end", json={"end_month": "2026-03"},
                                      headers=reg.h(citizen(ID_1))), 404, "enrolment_not_found")
        problem(await reg.client.post(url, json={"end_month": "March"}, headers=reg.h(citizen(ID_1))), 422, "month_invalid")

    async def test_end_month_range(self, reg: Reg) -> None:
        out = await reg.enrol_self(ID_1, start_month="2026-01")
        url = f"{BASE}/me/enrolments/{out['id']}/end"
        for bad in ("2026-01", "2026-04", "2025-12"):
            err = problem(await reg.client.post(url, json={"end_month": bad}, headers=reg.h(citizen(ID_1))),
                          422, "end_month_out_of_range")
            assert (err["earliest_end_month"], err["latest_end_month"]) == ("2026-02", "2026-03")

    async def test_ends_and_frees_the_person(self, reg: Reg) -> None:
        out = await reg.enrol_self(ID_1, start_month="2026-01")
        r = await reg.client.post(f"{BASE}/me/enrolments/{out['id']}/end", json={"end_month": "2026-02"},
                                  headers=reg.h(citizen(ID_1)))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ended" and r.json()["end_month"] == "2026-02" and r.json()["end_reason"] == "self"
        [ended] = await reg.events("registration.person.enrolment_ended.v1")
        assert ended["data"] == {"person_id": out["person_id"], "id_hash": id_hash(ID_1), "enrolment_id": out["id"],
                                 "category": "flexible", "region_code": "110105", "end_month": "2026-02",
                                 "reason": "self"}
        again = await reg.client.post(f"{BASE}/me/enrolments/{out['id']}/end", json={"end_month": "2026-03"},
                                      headers=reg.h(citizen(ID_1)))
        problem(again, 409, "enrolment_already_ended")
        # Covered months cannot be covered twice; the month after is free.
        r = await reg.enrol_self(ID_1, start_month="2026-02", expect=422)
        assert r["earliest_start_month"] == "2026-03"
        await reg.enrol_self(ID_1, start_month="2026-03")

    async def test_employee_enrolment_is_ended_by_the_employer(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        emp = await reg.enrol()
        r = await reg.client.post(f"{BASE}/me/enrolments/{emp['id']}/end", json={"end_month": "2026-03"},
                                  headers=reg.h(citizen(ID_1)))
        problem(r, 409, "enrolment_not_self")


class TestTokenIdentity:
    async def test_malformed_identity_in_the_token_is_refused_not_a_500(self, reg: Reg) -> None:
        bad = ID_1[:-1] + ("0" if ID_1[-1] != "0" else "1")
        r = await reg.client.post(f"{BASE}/me/enrolments", json=FLEX, headers=reg.h(citizen(bad)))
        problem(r, 403, "realname_identity_invalid")
        problem(await reg.client.get(f"{BASE}/me", headers=reg.h(citizen(bad))), 403, "realname_identity_invalid")
        r = await reg.client.post(f"{BASE}/me/enrolments", json=FLEX, headers=reg.h(citizen(ID_1, name="")))
        problem(r, 403, "realname_identity_invalid")

    async def test_lowercase_x_in_the_token_is_the_same_person(self, reg: Reg) -> None:
        x_id = "11010519491231002X"
        await reg.enrol_self(x_id.lower(), "王五", household_region_code="110101")
        me = await reg.me(x_id, "王五")
        assert me["registered"] is True and me["id_number_masked"] == "110105********002X"

    async def test_verified_name_updates_the_record(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        await reg.enrol(types=["work_injury"], name="张三")
        await reg.enrol_self(ID_1, "張三")  # the platform's verified spelling wins
        [person] = await reg.rows("SELECT name FROM persons")
        assert person["name"] == "張三"


class TestConcurrency:
    async def test_two_simultaneous_enrolments_one_wins(self, reg: Reg) -> None:
        import asyncio

        async def attempt(region: str) -> Any:
            body = {**FLEX, "region_code": region, "household_region_code": "110105"}
            return await reg.client.post(f"{BASE}/me/enrolments", json=body, headers=reg.h(citizen(ID_1)))

        results = await asyncio.gather(attempt("110105"), attempt("320102"), attempt("110108"))
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 409, 409], [r.text for r in results]
        for r in results:
            if r.status_code == 409:
                assert r.json()["code"] == "enrolment_conflict"
        rows = await reg.rows("SELECT status FROM enrolments")
        assert [r["status"] for r in rows] == ["active"]
        assert len(await reg.rows("SELECT id FROM persons")) == 1
