"""The roster: access, status filter, keyset pages, and a 100,000-employee employer."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import event, insert

from services.common.pii import cipher, id_hash, mask_id_number
from services.registration.models import Enrolment, Person
from tests.helpers import citizen, employer, make_id_number
from tests.registration.conftest import BASE, CC_A, CC_B, STAFF_REVIEWER, Reg, problem


class TestRoster:
    async def test_access(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees"
        problem(await reg.client.get(url), 401, "principal_required")
        problem(await reg.client.get(url, headers=reg.h(employer(CC_B))), 403, "not_own_employer")
        problem(await reg.client.get(url, headers=reg.h(citizen())), 403, "principal_kind_not_allowed")
        assert (await reg.client.get(url, headers=reg.h(STAFF_REVIEWER))).json() == {"items": [], "next_cursor": None}
        problem(await reg.client.get(f"{BASE}/employers/{CC_B}/employees", headers=reg.h(employer(CC_B))),
                404, "employer_not_found")

    async def test_bad_query(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        url = f"{BASE}/employers/{CC_A}/employees"
        for params, code in (({"limit": 0}, "validation_failed"), ({"limit": 501}, "validation_failed"),
                             ({"status": "paused"}, "validation_failed"), ({"cursor": "!!"}, "cursor_invalid"),
                             ({"cursor": "WyJ4Il0"}, "cursor_invalid")):
            problem(await reg.client.get(url, params=params, headers=reg.h(employer(CC_A))), 422, code)

    async def test_pages_and_status_filter(self, reg: Reg) -> None:
        await reg.register_employer(CC_A)
        people = []
        for i in range(5):
            out = await reg.enrol(id_number=make_id_number("110105", "19900101", f"{i + 10:03d}"), name=f"员工{'甲乙丙丁戊'[i]}")
            people.append(out)
        await reg.separate(people[1]["person_id"])
        await reg.separate(people[3]["person_id"])
        url = f"{BASE}/employers/{CC_A}/employees"
        seen, cursor = [], None
        while True:
            r = await reg.client.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                     headers=reg.h(employer(CC_A)))
            assert r.status_code == 200
            page = r.json()
            seen += [(i["name"], i["status"]) for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [("员工甲", "active"), ("员工乙", "ended"), ("员工丙", "active"), ("员工丁", "ended"),
                        ("员工戊", "active")]
        active = (await reg.client.get(url, params={"status": "active"}, headers=reg.h(employer(CC_A)))).json()
        assert [i["name"] for i in active["items"]] == ["员工甲", "员工丙", "员工戊"]
        ended = (await reg.client.get(url, params={"status": "ended"}, headers=reg.h(employer(CC_A)))).json()
        assert [(i["name"], i["end_month"]) for i in ended["items"]] == [("员工乙", "2026-03"), ("员工丁", "2026-03")]
        item = active["items"][0]
        assert item["id_number_masked"].startswith("110105********") and "id_number" not in item

    async def test_100000_employees_page_through(self, reg: Reg) -> None:
        """A large employer pages through its roster with bounded queries (keyset, LIMIT per page)."""
        await reg.register_employer(CC_A)
        total = 100_000
        now = datetime(2026, 3, 1, tzinfo=UTC)
        enc = cipher().encrypt(make_id_number())  # the same ciphertext everywhere: only the shape matters here
        persons: list[dict[str, Any]] = []
        enrolments: list[dict[str, Any]] = []
        for i in range(total):
            pid = str(uuid.UUID(int=i + 1))
            fake_id = f"110105199001{i:06d}"
            persons.append({"id": pid, "id_hash": id_hash(fake_id), "id_number": enc, "id_masked": mask_id_number(fake_id),
                            "name": f"员工{i}", "birth_date": date(1990, 1, 1), "sex": "male", "created_at": now,
                            "updated_at": now})
            enrolments.append({"id": str(uuid.UUID(int=10**12 + i)), "person_id": pid, "category": "employee",
                               "status": "ended" if i % 10 == 0 else "active", "region_code": "110105",
                               "insurance_types": ["pension"], "start_month": "2026-03", "employer_credit_code": CC_A,
                               "hire_date": date(2026, 3, 1), "monthly_wage_fen": 800_000, "late": False,
                               "late_days": 0, "registered_on": date(2026, 3, 1), "created_at": now,
                               "created_by": "test"})
        async with reg.svc.db.sessionmaker() as s:
            # Raw inserts (the id column already holds ciphertext).
            await s.execute(insert(Person.__table__), persons)
            await s.execute(insert(Enrolment.__table__), enrolments)
            await s.commit()
        del persons, enrolments

        statements: list[str] = []

        def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "FROM enrolments" in statement:
                statements.append(statement)

        event.listen(reg.svc.db.engine.sync_engine, "before_cursor_execute", capture)
        url = f"{BASE}/employers/{CC_A}/employees"
        count, pages, cursor, timings = 0, 0, None, []
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            # A fresh principal per page: on a loaded machine the walk can outlast one principal's minute.
            r = await reg.client.get(url, params={"status": "active", "limit": 500, **({"cursor": cursor} if cursor else {})},
                                     headers=reg.h(employer(CC_A)))
            timings.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 500
            count += len(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        elapsed = time.perf_counter() - started
        event.remove(reg.svc.db.engine.sync_engine, "before_cursor_execute", capture)
        assert count == 90_000 and pages == 180
        # Every page is one keyset query (LIMIT page size; after the first, seq > last seen); SQLite renders a
        # constant OFFSET 0.
        assert len(statements) == pages and all("LIMIT" in s for s in statements)
        assert all("enrolments.seq >" in s for s in statements[1:])
        # Keyset: the last pages cost what the first ones do.
        first, last = sum(timings[:10]) / 10, sum(timings[-10:]) / 10
        print(f"\nroster: {count} items in {pages} pages, {elapsed:.2f}s; first pages {first * 1000:.1f} ms, "
              f"last pages {last * 1000:.1f} ms")
        assert last < first * 3 + 0.05
