"""My profile, staff reading a person, the pension award, regional rules."""

from __future__ import annotations

from services.common.pii import id_hash
from tests.helpers import citizen, employer
from tests.registration.conftest import (
    BASE,
    CC_A,
    ID_1,
    ID_2,
    STAFF_ADMIN,
    STAFF_OPERATOR,
    STAFF_REVIEWER,
    Reg,
    problem,
)


class TestMe:
    async def test_anonymous_and_wrong_principal(self, reg: Reg) -> None:
        problem(await reg.client.get(f"{BASE}/me"), 401, "principal_required")
        problem(await reg.client.get(f"{BASE}/me", headers=reg.h(employer())), 403, "principal_kind_not_allowed")

    async def test_unregistered_citizen(self, reg: Reg) -> None:
        me = await reg.me(ID_2, "李梅")
        assert me == {"person_id": None, "registered": False, "id_number_masked": "320102********" + ID_2[-4:],
                      "name": "李梅", "birth_date": "1985-06-15", "sex": "female", "pensioner": False,
                      "pensioner_from": None, "enrolments": [], "history": []}
        assert await reg.rows("SELECT * FROM persons") == [], "reading creates nothing"

    async def test_profile_with_enrolments_and_history(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        emp = await reg.enrol(hire_date="2025-06-01")
        await reg.separate(emp["person_id"], date="2026-01-20")
        flex = await reg.enrol_self(start_month="2026-02")
        me = await reg.me()
        assert me["person_id"] == emp["person_id"] and me["registered"] is True
        assert me["id_number_masked"] == "110105********" + ID_1[-4:] and ID_1 not in str(me)
        assert (me["birth_date"], me["sex"], me["pensioner"]) == ("1990-01-01", "male", False)
        assert [(e["id"], e["category"], e["status"]) for e in me["enrolments"]] == [
            (emp["id"], "employee", "ended"), (flex["id"], "flexible", "active")]
        assert me["enrolments"][0]["employer"] == {"credit_code": CC_A, "name": "北京示例科技有限公司"}
        assert [(h["change"], h["month"]) for h in me["history"]] == [
            ("enrolled", "2025-06"), ("separated", "2026-01"), ("enrolment_ended", "2026-01"), ("enrolled", "2026-02")]


class TestStaffPerson:
    async def test_access_and_masking(self, reg: Reg) -> None:
        out = await reg.enrol_self()
        url = f"{BASE}/persons/{out['person_id']}"
        problem(await reg.client.get(url), 401, "principal_required")
        problem(await reg.client.get(url, headers=reg.h(citizen(ID_1))), 403, "principal_kind_not_allowed")
        problem(await reg.client.get(f"{BASE}/persons/00000000-0000-4000-8000-00000000dead", headers=reg.h(STAFF_REVIEWER)), 404, "person_not_found")
        masked = await reg.client.get(url, headers=reg.h(STAFF_REVIEWER))
        assert masked.status_code == 200 and masked.json()["id_number"] is None and ID_1 not in masked.text
        problem(await reg.client.get(url, params={"unmasked": "true"}, headers=reg.h(STAFF_REVIEWER)),
                403, "staff_role_required")
        assert await reg.audit() == [], "masked reads are not audited"

    async def test_operator_reads_unmasked_audited(self, reg: Reg) -> None:
        out = await reg.enrol_self()
        r = await reg.client.get(f"{BASE}/persons/{out['person_id']}", params={"unmasked": "true", "reason": "12333 来电核实"},
                                 headers=reg.h(STAFF_OPERATOR))
        assert r.status_code == 200 and r.json()["id_number"] == ID_1
        [entry] = await reg.audit()
        assert (entry.action, entry.target_id, entry.actor, entry.reason) == (
            "person.read_unmasked", out["person_id"], "staff:S1001", "12333 来电核实")
        r = await reg.client.get(f"{BASE}/persons/{out['person_id']}", params={"unmasked": "true"},
                                 headers=reg.h(STAFF_ADMIN))
        assert r.json()["id_number"] == ID_1 and len(await reg.audit()) == 2


class TestPensionAward:
    async def test_principals_and_input(self, reg: Reg) -> None:
        out = await reg.enrol_self()
        url = f"{BASE}/persons/{out['person_id']}/pension-award"
        problem(await reg.client.post(url, json={"from_date": "2026-03-01"}), 401, "principal_required")
        problem(await reg.client.post(url, json={"from_date": "2026-03-01"}, headers=reg.h(STAFF_REVIEWER)),
                403, "staff_role_required")
        problem(await reg.client.post(url, json={"from_date": "2026-03-01"}, headers=reg.h(citizen(ID_1))),
                403, "principal_kind_not_allowed")
        problem(await reg.client.post(f"{BASE}/persons/00000000-0000-4000-8000-00000000dead/pension-award", json={"from_date": "2026-03-01"},
                                      headers=reg.h(STAFF_OPERATOR)), 404, "person_not_found")
        for bad in ("1989-12-31", "2026-07-01"):
            problem(await reg.client.post(url, json={"from_date": bad}, headers=reg.h(STAFF_OPERATOR)),
                    422, "pension_from_date_invalid")
        problem(await reg.client.post(url, json={"from_date": "soon"}, headers=reg.h(STAFF_OPERATOR)),
                422, "validation_failed")

    async def test_award_ends_every_open_enrolment(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        emp = await reg.enrol(hire_date="2025-06-01")
        r = await reg.client.post(f"{BASE}/persons/{emp['person_id']}/pension-award",
                                  json={"from_date": "2025-12-01", "reason": "达到退休年龄"}, headers=reg.h(STAFF_OPERATOR))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["pensioner"] is True and out["pensioner_from"] == "2025-12-01"
        assert out["region_code"] == "110105" and out["scheme"] == "employee"
        assert [(e["id"], e["status"], e["end_month"], e["end_reason"]) for e in out["ended_enrolments"]] == [
            (emp["id"], "ended", "2025-11", "pension_award")]
        [row] = await reg.rows("SELECT pensioner_from, pension_scheme FROM persons")
        assert str(row["pensioner_from"]) == "2025-12-01" and row["pension_scheme"] == "employee"
        [awarded] = await reg.events("registration.person.pension_awarded.v1")
        data = awarded["data"]
        assert data["person_id"] == emp["person_id"] and data["id_hash"] == id_hash(ID_1)
        assert data["from_date"] == "2025-12-01" and data["scheme"] == "employee"
        assert data["ended_enrolment_ids"] == [emp["id"]] and data["region_code"] == "110105"
        [ended] = await reg.events("registration.person.enrolment_ended.v1")
        assert ended["data"]["reason"] == "pension_award" and ended["data"]["end_month"] == "2025-11"
        [entry] = await reg.audit()
        assert entry.action == "person.pension_award" and entry.reason == "达到退休年龄"
        # A pensioner cannot self-enrol, nor be enrolled for pension again, nor awarded twice.
        refused = await reg.enrol_self(expect=409)
        assert refused["code"] == "person_is_pensioner" and refused["pensioner_from"] == "2025-12-01"
        refused = await reg.enrol(hire_date="2026-03-01", expect=409)
        assert refused["code"] == "person_is_pensioner"
        await reg.enrol(hire_date="2026-03-01", types=["work_injury"])
        again = await reg.client.post(f"{BASE}/persons/{emp['person_id']}/pension-award",
                                      json={"from_date": "2025-12-01"}, headers=reg.h(STAFF_OPERATOR))
        problem(again, 409, "person_is_pensioner")
        me = await reg.me()
        assert me["pensioner"] is True and me["history"][-2]["change"] == "pension_awarded"

    async def test_resident_scheme_and_region_needed(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        emp = await reg.enrol(types=["work_injury"])
        r = await reg.client.post(f"{BASE}/persons/{emp['person_id']}/pension-award", json={"from_date": "2026-03-01"},
                                  headers=reg.h(STAFF_OPERATOR))
        problem(r, 422, "pension_region_required")
        r = await reg.client.post(f"{BASE}/persons/{emp['person_id']}/pension-award",
                                  json={"from_date": "2026-03-01", "region_code": "110000", "scheme": "resident"},
                                  headers=reg.h(STAFF_OPERATOR))
        assert r.status_code == 200 and r.json()["scheme"] == "resident"
        # The work-injury-only employment ended too: every open enrolment ends.
        assert r.json()["ended_enrolments"][0]["id"] == emp["id"]


class TestRegionalRules:
    async def test_public_read(self, reg: Reg) -> None:
        r = await reg.client.get(f"{BASE}/regional-rules/110105")
        assert r.status_code == 200 and r.json()["region_code"] == "110000"
        assert r.json()["flexible_non_local_allowed"] is False
        r = await reg.client.get(f"{BASE}/regional-rules/120101", params={"on": "2023-06-01"})
        assert r.json()["flexible_non_local_allowed"] is False and r.json()["effective_from"] == "2020-01-01"
        r = await reg.client.get(f"{BASE}/regional-rules/120101")
        assert r.json()["flexible_non_local_allowed"] is True and r.json()["effective_from"] == "2024-01-01"
        problem(await reg.client.get(f"{BASE}/regional-rules/440305"), 404, "regional_rule_not_found")

    async def test_put_is_admin_only_and_audited(self, reg: Reg) -> None:
        url = f"{BASE}/regional-rules/110000/2026-04-01"
        rule = {"flexible_non_local_allowed": True, "reason": "政策调整"}
        problem(await reg.client.put(url, json=rule), 401, "principal_required")
        problem(await reg.client.put(url, json=rule, headers=reg.h(STAFF_OPERATOR)), 403, "staff_role_required")
        problem(await reg.client.put(url, json={**rule, "flexible_non_local_allowed": "yes"},
                                     headers=reg.h(STAFF_ADMIN)), 422, "validation_failed")
        problem(await reg.client.put(url, json={"flexible_non_local_allowed": True}, headers=reg.h(STAFF_ADMIN)),
                422, "validation_failed")
        problem(await reg.client.put(f"{BASE}/regional-rules/11000/2026-04-01", json=rule, headers=reg.h(STAFF_ADMIN)),
                422, "region_code_invalid")
        created = await reg.client.put(url, json=rule, headers=reg.h(STAFF_ADMIN))
        assert created.status_code == 201 and created.json()["effective_from"] == "2026-04-01"
        replaced = await reg.client.put(url, json={**rule, "flexible_non_local_allowed": False, "note": "撤回"},
                                        headers=reg.h(STAFF_ADMIN))
        assert replaced.status_code == 200 and replaced.json()["note"] == "撤回"
        audit = await reg.audit()
        assert [(a.action, a.target_id, a.reason) for a in audit] == [
            ("regional_rule.put", "110000/2026-04-01", "政策调整"), ("regional_rule.put", "110000/2026-04-01", "政策调整")]
        assert audit[1].details["before"] == {"flexible_non_local_allowed": True, "note": None}
        # Not in force before its date.
        r = await reg.client.get(f"{BASE}/regional-rules/110000")
        assert r.json()["effective_from"] == "2020-01-01"


class TestLookup:
    async def test_staff_find_a_person_by_id_number(self, reg: Reg) -> None:
        out = await reg.enrol_self()
        url = f"{BASE}/persons/lookup"
        problem(await reg.client.post(url, json={"id_number": ID_1}), 401, "principal_required")
        problem(await reg.client.post(url, json={"id_number": ID_1}, headers=reg.h(citizen(ID_1))),
                403, "principal_kind_not_allowed")
        bad = ID_1[:-1] + ("0" if ID_1[-1] != "0" else "1")
        problem(await reg.client.post(url, json={"id_number": bad}, headers=reg.h(STAFF_REVIEWER)),
                422, "id_number_invalid")
        problem(await reg.client.post(url, json={"id_number": ID_2}, headers=reg.h(STAFF_REVIEWER)),
                404, "person_not_found")
        r = await reg.client.post(url, json={"id_number": ID_1}, headers=reg.h(STAFF_REVIEWER))
        assert r.status_code == 200 and r.json()["person_id"] == out["person_id"]
        assert r.json()["id_number"] is None and ID_1 not in r.text
