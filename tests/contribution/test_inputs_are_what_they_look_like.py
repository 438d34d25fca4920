"""Over HTTP: a month in full-width digits is the same month (never claimed twice),
`?year=2026.0` is not a year, every POST honours Idempotency-Key (confirm and cancel
included), and every time a client reads carries its offset."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from services.common.models import IdempotencyKey
from services.contribution.models import Declaration, DeclaredMonth
from tests.contribution.conftest import ALICE, enrol_self, rows
from tests.helpers import citizen, staff

D = "/contribution/v1/me/declarations"
OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def flexible(months: list[str]) -> dict[str, Any]:
    return {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": months}


def times(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [t for v in doc.values() for t in times(v)]
    if isinstance(doc, list):
        return [t for v in doc for t in times(v)]
    return [doc] if isinstance(doc, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", doc) else []


class TestOneMonthOneClaim:
    async def test_full_width_month_is_the_same_month(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        h = svc.headers(citizen(ALICE))
        first = await svc.client.post(D, json=flexible(["2026-02"]), headers=h)
        assert first.status_code == 201, first.text
        again = await svc.client.post(D, json=flexible(["２０２６-02"]), headers=h)
        assert again.status_code == 409 and again.json()["code"] == "month_already_declared"
        assert again.json()["months"] == ["2026-02"]
        assert len(await rows(svc, select(Declaration))) == 1
        assert {m.period for m in await rows(svc, select(DeclaredMonth))} == {"2026-02"}

    @pytest.mark.parametrize("month", ["٢٠٢٦-02", "2026-٠2", "𝟐𝟎𝟐𝟔-02", "0000-01"])
    async def test_other_digits_and_impossible_months(self, svc: Any, month: str) -> None:
        await enrol_self(svc, ALICE)
        r = await svc.client.post(D, json=flexible([month]), headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "month_invalid"
        assert await rows(svc, select(Declaration)) == []

    @pytest.mark.parametrize("year", ["2026.0", "+2026", "2_026", "٢٠٢٦"])
    async def test_a_year_is_plain_digits(self, svc: Any, year: str) -> None:
        r = await svc.client.get("/contribution/v1/me/records", params={"year": year}, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "validation_failed"
        r = await svc.client.get("/contribution/v1/me/records", params={"year": "2026"}, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 200


class TestEveryPostIsIdempotent:
    async def test_a_replayed_confirm_answers_what_it_answered(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        h = svc.headers(citizen(ALICE))
        decl = (await svc.client.post(D, json=flexible(["2026-02"]), headers=h)).json()
        keyed = {**h, "Idempotency-Key": "confirm-1"}
        first = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=keyed)
        assert first.status_code == 200 and first.json()["status"] == "awaiting_payment"
        cancelled = await svc.client.post(f"{D}/{decl['id']}/cancel", headers={**h, "Idempotency-Key": "cancel-1"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # The same confirm again: its first answer, not a 409 from the cancelled declaration.
        replay = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=keyed)
        assert replay.status_code == 200 and replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        again = await svc.client.post(f"{D}/{decl['id']}/cancel", headers={**h, "Idempotency-Key": "cancel-1"})
        assert again.status_code == 200 and again.json() == cancelled.json()
        # Without a key the state speaks.
        r = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)
        assert r.status_code == 409 and r.json()["code"] == "declaration_state_conflict"
        (row,) = await rows(svc, select(Declaration))
        assert row.status == "cancelled"

    async def test_one_key_for_two_declarations_is_refused(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        h = svc.headers(citizen(ALICE))
        a = (await svc.client.post(D, json=flexible(["2026-02"]), headers=h)).json()
        b = (await svc.client.post(D, json=flexible(["2026-03"]), headers=h)).json()
        keyed = {**h, "Idempotency-Key": "k"}
        assert (await svc.client.post(f"{D}/{a['id']}/confirm", headers=keyed)).status_code == 200
        r = await svc.client.post(f"{D}/{b['id']}/confirm", headers=keyed)
        assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
        assert {d.id: d.status for d in await rows(svc, select(Declaration))}[b["id"]] == "draft"

    async def test_a_refusal_is_not_stored(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        h = {**svc.headers(citizen(ALICE)), "Idempotency-Key": "nope"}
        r = await svc.client.post(f"{D}/no-such-declaration/confirm", headers=h)
        assert r.status_code == 404
        assert await rows(svc, select(IdempotencyKey)) == []

    async def test_every_post_route_claims_the_key(self, svc: Any) -> None:
        from services.common import idempotency
        from services.common.routing import api_routes

        posts = [r for r in api_routes(svc.app.routes) if "POST" in r.methods]
        assert posts
        for route in posts:
            deps = [d.call for d in route.dependant.dependencies]
            assert idempotency.claim_key in deps, route.path


class TestTimesCarryTheirOffset:
    async def test_policy_and_its_versions(self, svc: Any) -> None:
        seen: list[str] = []
        r = await svc.client.get("/contribution/v1/policies/110105")
        seen += times(r.json())
        r = await svc.client.get("/contribution/v1/policies/110000/versions")
        assert r.status_code == 200, r.text
        seen += times(r.json())
        assert seen and [t for t in seen if not OFFSET.match(t)] == []

    async def test_declaration_times(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        r = await svc.client.post(D, json=flexible(["2026-02"]), headers=svc.headers(citizen(ALICE)))
        seen = times(r.json())
        r = await svc.client.get(f"{D}/{r.json()['id']}", headers=svc.headers(citizen(ALICE)))
        seen += times(r.json())
        assert seen and [t for t in seen if not OFFSET.match(t)] == []

    async def test_staff_reads(self, svc: Any) -> None:
        r = await svc.client.get("/contribution/v1/policies/110000/versions", headers=svc.headers(staff("admin")))
        assert all(OFFSET.match(t) for t in times(r.json()))
