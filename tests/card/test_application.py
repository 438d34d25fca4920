"""Applying for a card and listing cards by status."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, text

from services.card.models import Card
from services.contracts import registration as reg
from tests.helpers import channel, employer, make_id_number, staff


class TestApply:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        r = await flow.client.post("/card/v1/me/applications")
        assert r.status_code == 401
        assert r.json()["code"] == "principal_required"

    async def test_employer_is_refused(self, flow: Any) -> None:
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(employer()))
        assert r.status_code == 403
        assert r.json()["code"] == "principal_kind_not_allowed"

    async def test_level_one_must_step_up(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(flow.citizen(idn, level=1)))
        assert r.status_code == 403
        assert r.json()["code"] == "realname_level_too_low"

    async def test_without_enrolment_is_refused(self, flow: Any, idn: str) -> None:
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 409
        assert r.json()["code"] == "enrolment_required"

    async def test_token_without_a_name_is_refused(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        prn = {k: v for k, v in flow.citizen(idn).items() if k != "name"}
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(prn))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"

    async def test_malformed_body_is_400(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        r = await flow.client.post(
            "/card/v1/me/applications", content=b"{nope",
            headers=flow.h(flow.citizen(idn, level=2), **{"content-type": "application/json"}),
        )
        assert r.status_code == 400

    async def test_enrolled_person_applies_once(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn, region="110105")
        card = await flow.apply(idn)
        assert card["status"] == "applied"
        assert card["card_no_masked"] is None
        assert card["initial_pin_unchanged"] is True
        assert card["id_number_masked"] == idn[:6] + "********" + idn[-4:]
        assert card["region_code"] == "110105"

        r = await flow.my_card(idn, level=1)
        assert r.status_code == 200
        assert r.json()["id"] == card["id"] and r.json()["status"] == "applied"

        again = await flow.client.post("/card/v1/me/applications", headers=flow.h(flow.citizen(idn, level=2)))
        assert again.status_code == 409
        assert again.json()["code"] == "card_already_exists"

        # The id number is stored encrypted, found by its keyed hash.
        async with flow.svc.db.sessionmaker() as s:
            raw = (await s.execute(text("SELECT id_number, holder_name FROM cards"))).one()
        assert idn not in raw[0] and "张三" not in raw[1]

    async def test_idempotency_key_replays(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        h = flow.h(flow.citizen(idn, level=2), **{"Idempotency-Key": "apply-1"})
        first = await flow.client.post("/card/v1/me/applications", headers=h)
        second = await flow.client.post("/card/v1/me/applications", headers=h)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert second.headers.get("Idempotent-Replayed") == "true"

    async def test_ended_enrolment_is_not_enough(self, flow: Any, idn: str) -> None:
        eid = await flow.enrol(idn)
        await flow.deliver(reg.ENROLMENT_ENDED, reg.EnrolmentEnded(
            person_id="p", id_hash=flow.person_ref(idn)["id_hash"], enrolment_id=eid, category="flexible",
            region_code="110105", end_month="2026-02", reason="self",
        ))
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 409 and r.json()["code"] == "enrolment_required"

    async def test_separated_employee_is_not_enrolled(self, flow: Any, idn: str) -> None:
        eid = await flow.enrol(idn)
        await flow.deliver(reg.PERSON_SEPARATED, reg.PersonSeparated(
            person_id="p", id_hash=flow.person_ref(idn)["id_hash"], enrolment_id=eid,
            employer_credit_code="91110105MA00000017", separation_date=date(2026, 2, 28), last_month="2026-02",
        ))
        r = await flow.client.post("/card/v1/me/applications", headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 409 and r.json()["code"] == "enrolment_required"

    async def test_pensioner_may_apply(self, flow: Any, idn: str) -> None:
        eid = await flow.enrol(idn)
        await flow.deliver(reg.PENSION_AWARDED, reg.PensionAwarded(
            **flow.person_ref(idn), from_date=date(2026, 3, 1), region_code="310101", scheme="employee",
            ended_enrolment_ids=[eid],
        ))
        card = await flow.apply(idn)
        assert card["status"] == "applied"
        assert card["region_code"] == "310101"


class TestListCards:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.get("/card/v1/cards?status=applied")).status_code == 401

    async def test_citizen_and_hospital_are_refused(self, flow: Any, idn: str) -> None:
        r = await flow.client.get("/card/v1/cards", headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await flow.client.get("/card/v1/cards", headers=flow.h(channel("hospital", "H1")))
        assert r.status_code == 403

    async def test_bad_status_and_cursor(self, flow: Any) -> None:
        r = await flow.client.get("/card/v1/cards?status=made", headers=flow.h(staff("operator")))
        assert r.status_code == 422
        r = await flow.client.get("/card/v1/cards?cursor=!!!", headers=flow.h(staff("operator")))
        assert r.status_code == 422 and r.json()["code"] == "cursor_invalid"

    async def test_staff_and_bank_page_through_applied_cards(self, flow: Any) -> None:
        ids = []
        for seq in ("001", "003", "005"):
            idn = make_id_number("110105", "19900101", seq)
            await flow.enrol(idn)
            ids.append((await flow.apply(idn))["id"])
            flow.svc.clock.advance(seconds=1)
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            url = "/card/v1/cards?status=applied&limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await flow.client.get(url, headers=flow.h(channel("bank", "B001")))).json()
            seen += [c["id"] for c in page["items"]]
            assert all("*" in c["id_number_masked"] for c in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == ids
        await flow.issue(ids[0])
        r = await flow.client.get("/card/v1/cards?status=issued", headers=flow.h(staff("operator")))
        assert [c["id"] for c in r.json()["items"]] == [ids[0]]
        async with flow.svc.db.sessionmaker() as s:
            assert (await s.execute(select(Card.status).where(Card.id == ids[0]))).scalar_one() == "issued"
