"""Registration test fixtures: the service on a frozen clock, and short-hands for its routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from services.common.clock import FrozenClock
from services.common.models import AuditEntry, OutboxEvent
from tests.helpers import citizen, employer, make_credit_code, make_id_number, staff

# 2026-03-10 10:00 in Asia/Shanghai: the current month is 2026-03.
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
CC_A = make_credit_code("91110105MA0000001")
CC_B = make_credit_code("91310000MA0000002")
ID_1 = make_id_number("110105", "19900101", "001")  # male, Beijing Chaoyang
ID_2 = make_id_number("320102", "19850615", "002")  # female, Nanjing
BASE = "/registration/v1"


class Reg:
    """The registration service under test, with the calls most tests make."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.client = svc.client

    def h(self, prn: dict[str, Any] | None, **extra: str) -> dict[str, str]:
        return self.svc.headers(prn, **extra)

    async def register_employer(self, cc: str = CC_A, region: str = "110105", **over: Any) -> Any:
        body = {"credit_code": cc, "name": "北京示例科技有限公司", "region_code": region, "address": "北京市朝阳区示例路1号",
                "contact": "李四 13800000000", "work_injury_class": 2, **over}
        r = await self.client.post(f"{BASE}/employers", json=body, headers=self.h(employer(cc)))
        assert r.status_code == 201, r.text
        return r.json()

    async def enrol(self, cc: str = CC_A, id_number: str = ID_1, name: str = "张三", hire_date: str = "2026-03-01",
                    types: list[str] | None = None, expect: int = 201, **over: Any) -> Any:
        body = {"id_number": id_number, "name": name, "hire_date": hire_date, "monthly_wage_fen": 1_200_000,
                "insurance_types": types or ["pension", "medical", "unemployment", "work_injury", "maternity"], **over}
        r = await self.client.post(f"{BASE}/employers/{cc}/employees", json=body, headers=self.h(employer(cc)))
        assert r.status_code == expect, r.text
        return r.json()

    async def separate(self, person_id: str, cc: str = CC_A, date: str = "2026-03-05", expect: int = 200) -> Any:
        r = await self.client.post(f"{BASE}/employers/{cc}/employees/{person_id}/separation",
                                   json={"separation_date": date, "reason": "合同到期"}, headers=self.h(employer(cc)))
        assert r.status_code == expect, r.text
        return r.json()

    async def enrol_self(self, id_number: str = ID_1, name: str = "张三", expect: int = 201, level: int = 3,
                         **over: Any) -> Any:
        body = {"category": "flexible", "region_code": "110105", "household_region_code": "110105",
                "insurance_types": ["pension", "medical"], "start_month": "2026-03", **over}
        body = {k: v for k, v in body.items() if v is not None}
        r = await self.client.post(f"{BASE}/me/enrolments", json=body,
                                   headers=self.h(citizen(id_number, name, level=level)))
        assert r.status_code == expect, r.text
        return r.json()

    async def me(self, id_number: str = ID_1, name: str = "张三") -> Any:
        r = await self.client.get(f"{BASE}/me", headers=self.h(citizen(id_number, name)))
        assert r.status_code == 200, r.text
        return r.json()

    async def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows (as the feed will serve them), oldest first."""
        async with self.svc.db.sessionmaker() as s:
            stmt = select(OutboxEvent).order_by(OutboxEvent.seq)
            if type_:
                stmt = stmt.where(OutboxEvent.type == type_)
            return [{"type": r.type, "subject": r.subject, "data": r.data} for r in (await s.execute(stmt)).scalars()]

    async def audit(self) -> list[AuditEntry]:
        async with self.svc.db.sessionmaker() as s:
            return list((await s.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Raw rows, exactly as the database holds them."""
        async with self.svc.db.sessionmaker() as s:
            return [dict(r._mapping) for r in (await s.execute(text(sql), params)).all()]


@pytest.fixture
async def reg(make_service: Any) -> Reg:
    svc = await make_service("registration", clock=FrozenClock(NOW))
    return Reg(svc)


STAFF_OPERATOR = staff("operator")
STAFF_REVIEWER = staff("reviewer", staff_id="S2002")
STAFF_ADMIN = staff("admin", staff_id="S3003")


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json answer and return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    return body
