"""Employers: registration, reading a unit."""

from __future__ import annotations

from tests.helpers import citizen, employer, make_credit_code
from tests.registration.conftest import BASE, CC_A, CC_B, STAFF_OPERATOR, STAFF_REVIEWER, Reg, problem

BODY = {"credit_code": CC_A, "name": "北京示例科技有限公司", "region_code": "110105", "address": "北京市朝阳区示例路1号",
        "contact": "李四 13800000000", "work_injury_class": 3}


class TestRegisterEmployer:
    async def test_anonymous_is_401(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers", json=BODY)
        problem(r, 401, "principal_required")

    async def test_citizen_is_403(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers", json=BODY, headers=reg.h(citizen()))
        problem(r, 403, "principal_kind_not_allowed")

    async def test_another_employers_code_is_403(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers", json={**BODY, "credit_code": CC_B}, headers=reg.h(employer(CC_A)))
        problem(r, 403, "not_own_employer")
        assert await reg.rows("SELECT * FROM employers") == []

    async def test_invalid_credit_code_is_422(self, reg: Reg) -> None:
        broken = CC_A[:-1] + ("0" if CC_A[-1] != "0" else "1")
        for bad in (broken, "91350100M000100Y4", "91350100M000100YI3", "x" * 40):
            r = await reg.client.post(f"{BASE}/employers", json={**BODY, "credit_code": bad}, headers=reg.h(employer(CC_A)))
            problem(r, 422, "credit_code_invalid" if len(bad) < 32 else "validation_failed")
        # A number where a string belongs: a plain type error on the field.
        r = await reg.client.post(f"{BASE}/employers", json={**BODY, "credit_code": 913501001},
                                  headers=reg.h(employer(CC_A)))
        body = problem(r, 422, "validation_failed")
        assert body["errors"][0]["field"] == "credit_code"

    async def test_bad_fields_are_422(self, reg: Reg) -> None:
        for field, value in (("work_injury_class", 9), ("work_injury_class", 0), ("work_injury_class", "3"),
                             ("region_code", "11010"), ("name", "x" * 101), ("address", ""), ("contact", None)):
            r = await reg.client.post(f"{BASE}/employers", json={**BODY, field: value}, headers=reg.h(employer(CC_A)))
            assert r.status_code == 422, (field, value, r.text)
        r = await reg.client.post(f"{BASE}/employers", content=b"{not json", headers={
            **reg.h(employer(CC_A)), "content-type": "application/json"})
        problem(r, 400, "malformed_body")

    async def test_registers_once_with_event(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers", json=BODY, headers=reg.h(employer(CC_A)))
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["id"] == CC_A and out["work_injury_class"] == 3 and out["registered_on"] == "2026-03-10"
        [row] = await reg.rows("SELECT * FROM employers")
        assert row["credit_code"] == CC_A and row["created_by"] == f"employer:{CC_A}"
        [event] = await reg.events("registration.employer.registered.v1")
        assert event["subject"] == CC_A
        assert event["data"] == {"credit_code": CC_A, "name": BODY["name"], "region_code": "110105",
                                 "work_injury_class": 3, "registered_on": "2026-03-10"}
        again = await reg.client.post(f"{BASE}/employers", json=BODY, headers=reg.h(employer(CC_A)))
        body = problem(again, 409, "employer_already_registered")
        assert body["credit_code"] == CC_A
        assert len(await reg.events("registration.employer.registered.v1")) == 1

    async def test_lowercase_code_is_normalized(self, reg: Reg) -> None:
        code = make_credit_code("91110105MA00000AB")
        r = await reg.client.post(f"{BASE}/employers", json={**BODY, "credit_code": code.lower()},
                                  headers=reg.h(employer(code)))
        assert r.status_code == 201, r.text
        assert r.json()["credit_code"] == code

    async def test_idempotent_replay(self, reg: Reg) -> None:
        h = reg.h(employer(CC_A), **{"Idempotency-Key": "k-1"})
        first = await reg.client.post(f"{BASE}/employers", json=BODY, headers=h)
        second = await reg.client.post(f"{BASE}/employers", json=BODY, headers=h)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"
        other = await reg.client.post(f"{BASE}/employers", json={**BODY, "name": "别的"}, headers=h)
        problem(other, 422, "idempotency_key_reused")
        assert len(await reg.rows("SELECT * FROM employers")) == 1

    async def test_staff_operator_registers_any_unit_audited(self, reg: Reg) -> None:
        r = await reg.client.post(f"{BASE}/employers", json={**BODY, "credit_code": CC_B}, headers=reg.h(STAFF_OPERATOR))
        assert r.status_code == 201, r.text
        [entry] = await reg.audit()
        assert (entry.action, entry.target_id, entry.actor) == ("employer.register", CC_B, "staff:S1001")
        r = await reg.client.post(f"{BASE}/employers", json=BODY, headers=reg.h(STAFF_REVIEWER))
        problem(r, 403, "staff_role_required")


class TestGetEmployer:
    async def test_access(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        r = await reg.client.get(f"{BASE}/employers/{CC_A}")
        problem(r, 401, "principal_required")
        r = await reg.client.get(f"{BASE}/employers/{CC_A}", headers=reg.h(employer(CC_B)))
        problem(r, 403, "not_own_employer")
        r = await reg.client.get(f"{BASE}/employers/{CC_A}", headers=reg.h(citizen()))
        problem(r, 403, "principal_kind_not_allowed")
        r = await reg.client.get(f"{BASE}/employers/{CC_A}", headers=reg.h(employer(CC_A)))
        assert r.status_code == 200 and r.json()["name"] == "北京示例科技有限公司"
        r = await reg.client.get(f"{BASE}/employers/{CC_A}", headers=reg.h(STAFF_REVIEWER))
        assert r.status_code == 200
        r = await reg.client.get(f"{BASE}/employers/{CC_B}", headers=reg.h(STAFF_REVIEWER))
        problem(r, 404, "employer_not_found")
        r = await reg.client.get(f"{BASE}/employers/NOTACODE", headers=reg.h(STAFF_REVIEWER))
        problem(r, 422, "credit_code_invalid")
