"""Citizen declarations: add, read, confirm, cancel, expire, and the payment hooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.common.errors import DomainError
from services.common.models import OutboxEvent
from services.common.pii import id_hash
from services.common.principal import Principal
from services.contribution.declarations.crediting import get_payable_declaration, mark_declaration_paid
from services.contribution.declarations.lifecycle import cancel_declaration, expire_due_declarations
from services.contribution.declarations.reading import declaration_view
from services.contribution.models import ContributionRecord, Declaration, DeclaredMonth
from tests.contribution.conftest import ALICE, BOB, UNIT, enrol_self, pay, rows
from tests.helpers import citizen, employer

D = "/contribution/v1/me/declarations"


def flexible(months: list[str], base: int = 695700) -> dict[str, Any]:
    return {"category": "flexible", "region_code": "110105", "base_fen": base, "months": months}


async def declare(svc: Any, who: str = ALICE, months: list[str] | None = None, **extra: Any) -> Any:
    body = flexible(months or ["2026-02", "2026-03", "2026-04"])
    return await svc.client.post(D, json=body, headers=svc.headers(citizen(who), **extra))


class TestCreateDeclaration:
    async def test_anonymous_wrong_principal_and_level(self, svc: Any) -> None:
        assert (await svc.client.post(D, json=flexible(["2026-03"]))).status_code == 401
        r = await svc.client.post(D, json=flexible(["2026-03"]), headers=svc.headers(employer(UNIT)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await svc.client.post(D, json=flexible(["2026-03"]), headers=svc.headers(citizen(ALICE, level=1)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_not_enrolled(self, svc: Any) -> None:
        r = await declare(svc)
        assert r.status_code == 422 and r.json()["code"] == "not_enrolled"
        await enrol_self(svc, ALICE, start_month="2026-03")
        r = await declare(svc)
        assert r.status_code == 422 and r.json()["code"] == "not_enrolled"
        assert r.json()["months"] == ["2026-02"]

    async def test_employee_category_is_for_employers(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        body = {**flexible(["2026-03"]), "category": "employee"}
        r = await svc.client.post(D, json=body, headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 422 and r.json()["code"] == "category_not_allowed"

    async def test_valid_draft_with_lines_and_held_months(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        r = await declare(svc, **{"Idempotency-Key": "k1"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "draft" and body["source"] == "citizen"
        assert body["total_fen"] == 626130 and len(body["lines"]) == 6 and body["payments"] == []
        assert body["months"] == ["2026-02", "2026-03", "2026-04"]
        again = await declare(svc, **{"Idempotency-Key": "k1"})
        assert again.status_code == 201 and again.json()["id"] == body["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        other = await svc.client.post(D, json=flexible(["2026-05"]), headers=svc.headers(citizen(ALICE), **{"Idempotency-Key": "k1"}))
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        held = await rows(svc, select(DeclaredMonth).where(DeclaredMonth.declaration_id == body["id"]))
        assert sorted((m.period, m.insurance) for m in held) == [
            ("2026-02", "medical"), ("2026-02", "pension"), ("2026-03", "medical"), ("2026-03", "pension"),
            ("2026-04", "medical"), ("2026-04", "pension"),
        ]
        decl = (await rows(svc, select(Declaration)))[0]
        assert decl.person_key == id_hash(ALICE) and ALICE not in str(decl.__dict__)

    async def test_a_month_held_by_another_declaration_is_409(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        assert (await declare(svc, months=["2026-03"])).status_code == 201
        r = await declare(svc, months=["2026-03", "2026-04"])
        assert r.status_code == 409 and r.json()["code"] == "month_already_declared"
        assert r.json()["months"] == ["2026-03"]
        assert len(await rows(svc, select(Declaration))) == 1

    async def test_resident_declares_one_grade_a_year(self, svc: Any) -> None:
        await enrol_self(svc, BOB, category="resident", start_month="2026-01")
        body = {"category": "resident", "region_code": "110105", "grade_fen": 50000, "year": 2026}
        r = await svc.client.post(D, json=body, headers=svc.headers(citizen(BOB)))
        assert r.status_code == 201, r.text
        assert (r.json()["total_fen"], r.json()["subsidy_fen"]) == (50000, 6000)
        r = await svc.client.post(D, json={**body, "grade_fen": 100000}, headers=svc.headers(citizen(BOB)))
        assert r.status_code == 409 and r.json()["code"] == "month_already_declared"

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(citizen(ALICE))
        for body in (flexible(["2026-13"]), flexible([]), flexible(["2026-03", "2026-03"]), flexible(["2026-03"], base=-5)):
            assert (await svc.client.post(D, json=body, headers=h)).status_code == 422
        r = await svc.client.post(D, json={**flexible(["2026-03"]), "region_code": "440305"}, headers=h)
        assert r.status_code == 404 and r.json()["code"] == "policy_not_found"


class TestReadConfirmCancel:
    async def test_someone_elses_declaration_is_404(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        for verb, url in (("get", f"{D}/{decl['id']}"), ("post", f"{D}/{decl['id']}/confirm"), ("post", f"{D}/{decl['id']}/cancel")):
            r = await svc.client.request(verb, url, headers=svc.headers(citizen(BOB)))
            assert r.status_code == 404, url
        assert (await svc.client.get(f"{D}/nope", headers=svc.headers(citizen(ALICE)))).status_code == 404
        # Not an id at all: the router matches ids only, so it is not found either.
        r = await svc.client.get(f"{D}/{'x' * 40}", headers=svc.headers(citizen(ALICE)))
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
        assert (await svc.client.get(f"{D}/{decl['id']}")).status_code == 401

    async def test_get_confirm_then_cancel_frees_the_months(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        h = svc.headers(citizen(ALICE))
        got = await svc.client.get(f"{D}/{decl['id']}", headers=h)
        assert got.status_code == 200 and got.json()["lines"] == decl["lines"]
        r = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "awaiting_payment" and r.json()["confirmed_at"]
        assert (await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)).json()["status"] == "awaiting_payment"
        listing = (await svc.client.get(D, headers=h)).json()
        assert [i["id"] for i in listing["items"]] == [decl["id"]] and listing["next_cursor"] is None
        r = await svc.client.post(f"{D}/{decl['id']}/cancel", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert await rows(svc, select(DeclaredMonth)) == []
        r = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)
        assert r.status_code == 409 and r.json()["code"] == "declaration_state_conflict"
        assert (await declare(svc)).status_code == 201  # the months are free again

    async def test_no_cancel_while_a_payment_is_open(self, svc: Any) -> None:
        from services.contribution.schemas import PaymentSummary

        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        h = svc.headers(citizen(ALICE))
        await svc.client.post(f"{D}/{decl['id']}/confirm", headers=h)

        async def one_open(session: Any, ids: list[str]) -> dict[str, list[PaymentSummary]]:
            return {i: [PaymentSummary(id="p-open", channel="alipay", status="open")] for i in ids}

        async with svc.db.sessionmaker() as s, s.begin():
            row = await s.get(Declaration, decl["id"])
            assert row is not None
            shown = await declaration_view(session=s, declaration=row, payments_of=one_open)
            assert [p.id for p in shown.payments] == ["p-open"]
            with pytest.raises(DomainError) as refused:
                await cancel_declaration(session=s, declaration=row, now=svc.clock.now(), payments_of=one_open)
            assert refused.value.code == "payment_in_progress"
        assert (await svc.client.post(f"{D}/{decl['id']}/cancel", headers=h)).json()["status"] == "cancelled"

    async def test_list_pages(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        for m in ("2026-02", "2026-03", "2026-04"):
            assert (await declare(svc, months=[m])).status_code == 201
            svc.clock.advance(seconds=1)
        h = svc.headers(citizen(ALICE))
        first = (await svc.client.get(D, params={"limit": 2}, headers=h)).json()
        assert [i["months"] for i in first["items"]] == [["2026-04"], ["2026-03"]]
        second = (await svc.client.get(D, params={"limit": 2, "cursor": first["next_cursor"]}, headers=h)).json()
        assert [i["months"] for i in second["items"]] == [["2026-02"]] and second["next_cursor"] is None
        assert (await svc.client.get(D, params={"cursor": "%%%"}, headers=h)).status_code == 422
        from services.common.pagination import encode_cursor

        naive = encode_cursor(["2026-03-10T02:00:01", "zzzz"])
        r = await svc.client.get(D, params={"cursor": naive}, headers=h)
        assert r.status_code == 200 and len(r.json()["items"]) == 2


class TestExpiry:
    async def test_unpaid_declarations_expire_and_free_their_months(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        async with svc.db.sessionmaker() as s, s.begin():
            assert await expire_due_declarations(session=s, now=svc.clock.now()) == 0
        svc.clock.advance(minutes=1441)
        r = await svc.client.post(f"{D}/{decl['id']}/confirm", headers=svc.headers(citizen(ALICE)))
        assert r.status_code == 409
        async with svc.db.sessionmaker() as s, s.begin():
            assert await expire_due_declarations(session=s, now=svc.clock.now()) == 1
        r = await svc.client.get(f"{D}/{decl['id']}", headers=svc.headers(citizen(ALICE)))
        assert r.json()["status"] == "expired"
        assert await rows(svc, select(DeclaredMonth)) == []

    async def test_a_paid_declaration_never_expires(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        await svc.client.post(f"{D}/{decl['id']}/confirm", headers=svc.headers(citizen(ALICE)))
        await pay(svc, decl["id"])
        svc.clock.advance(days=30)
        async with svc.db.sessionmaker() as s, s.begin():
            assert await expire_due_declarations(session=s, now=svc.clock.now()) == 0
        assert len(await rows(svc, select(DeclaredMonth))) == 6

    async def test_the_scheduled_job_expires_them(self, svc: Any) -> None:
        import asyncio

        from services.contribution.app import expire_declarations_job

        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        svc.clock.advance(days=2)
        stop = asyncio.Event()
        task = asyncio.create_task(expire_declarations_job(svc.app, stop))
        try:
            for _ in range(200):  # the job runs at once, then every expiry_interval_seconds
                found = await rows(svc, select(Declaration.status).where(Declaration.id == decl["id"]))
                if found == ["expired"]:
                    break
                await asyncio.sleep(0.02)
            assert found == ["expired"]
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)

    async def test_ttl_is_configurable(self, make_service: Any) -> None:
        from services.common.clock import FrozenClock
        from tests.contribution.conftest import NOW

        svc = await make_service("contribution", clock=FrozenClock(NOW), declaration_ttl_minutes=30)
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        assert decl["expires_at"].startswith((NOW + timedelta(minutes=30)).isoformat()[:16])


class TestPaymentHooks:
    async def test_mark_paid_records_months_emits_once_and_is_idempotent(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        await svc.client.post(f"{D}/{decl['id']}/confirm", headers=svc.headers(citizen(ALICE)))
        paid = await pay(svc, decl["id"])
        assert paid.status == "paid" and paid.paid_by == "self"
        await pay(svc, decl["id"])  # the same notification again
        with pytest.raises(DomainError) as exc:
            await pay(svc, decl["id"], payment_id="pay-2")
        assert exc.value.code == "declaration_already_paid"
        recs = await rows(svc, select(ContributionRecord))
        assert len(recs) == 6 and sum(r.amount_fen for r in recs) == 626130
        events = await rows(svc, select(OutboxEvent).where(OutboxEvent.type == "contribution.declaration.paid.v1"))
        assert len(events) == 1
        data = events[0].data
        assert (data["total_fen"], data["paid_by"], data["person_id_hash"]) == (626130, "self", id_hash(ALICE))
        assert data["months"] == ["2026-02", "2026-03", "2026-04"]
        r = await svc.client.get(f"{D}/{decl['id']}", headers=svc.headers(citizen(ALICE)))
        assert r.json()["status"] == "paid" and r.json()["paid_by"] == "self"
        assert (await declare(svc, months=["2026-03"])).json()["code"] == "month_already_declared"

    async def test_a_draft_cannot_be_paid_but_an_expired_one_is_credited(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        with pytest.raises(DomainError) as exc:
            await pay(svc, decl["id"])
        assert exc.value.code == "declaration_state_conflict"
        await svc.client.post(f"{D}/{decl['id']}/confirm", headers=svc.headers(citizen(ALICE)))
        svc.clock.advance(days=2)
        async with svc.db.sessionmaker() as s, s.begin():
            await expire_due_declarations(session=s, now=svc.clock.now())
        paid = await pay(svc, decl["id"])
        assert paid.status == "paid"
        assert len(await rows(svc, select(DeclaredMonth))) == 6

    async def test_get_payable_declaration_applies_ownership(self, svc: Any) -> None:
        await enrol_self(svc, ALICE)
        decl = (await declare(svc)).json()
        async with svc.db.sessionmaker() as s:
            got = await get_payable_declaration(session=s, declaration_id=decl["id"],
                                                principal=Principal.model_validate(citizen(ALICE)))
            assert got.id == decl["id"]
            for prn in (citizen(BOB), employer(UNIT)):
                with pytest.raises(DomainError) as exc:
                    await get_payable_declaration(session=s, declaration_id=decl["id"], principal=Principal.model_validate(prn))
                assert exc.value.status == 404
            with pytest.raises(DomainError):
                await mark_declaration_paid(session=s, declaration_id="missing", payment_id="p", channel="alipay",
                                            paid_at=svc.clock.now())
