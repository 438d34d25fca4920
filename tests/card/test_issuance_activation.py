"""Issuance (card made) and activation by every channel kind and by the holder online."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from services.card.events import CARD_ACTIVATED
from services.common.models import AuditEntry, OutboxEvent
from tests.card.conftest import CARD_NO
from tests.helpers import channel, make_id_number, staff


class TestIssuance:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        r = await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": CARD_NO, "bank": "b"})
        assert r.status_code == 401

    async def test_citizen_and_hospital_are_refused(self, flow: Any, idn: str) -> None:
        for prn in (flow.citizen(idn), channel("hospital", "H1")):
            r = await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": CARD_NO, "bank": "b"}, headers=flow.h(prn))
            assert r.status_code == 403

    async def test_reviewer_role_is_refused(self, flow: Any) -> None:
        r = await flow.client.post(
            "/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": CARD_NO, "bank": "b"}, headers=flow.h(staff("reviewer"))
        )
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"

    @pytest.mark.parametrize("card_no", ["12345678", "J1234567", "JJ12345678", "J123456789", "", "J1234567٨", "J1234567𝟠"])
    async def test_bad_card_numbers(self, flow: Any, idn: str, card_no: str) -> None:
        await flow.enrol(idn)
        card = await flow.apply(idn)
        r = await flow.client.post(
            f"/card/v1/cards/{card['id']}/issuance", json={"card_no": card_no, "bank": "工行"}, headers=flow.h(staff())
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "card_no"

    async def test_full_width_card_number_is_stored_in_ascii(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        card = await flow.apply(idn)
        r = await flow.client.post(
            f"/card/v1/cards/{card['id']}/issuance", json={"card_no": "ｊ１２３４５６７８", "bank": "工行"},
            headers=flow.h(staff()),
        )
        assert r.status_code == 200, r.text
        assert (await flow.card_row(card["id"])).card_no == "J12345678"

    async def test_oversized_bank_and_wrong_types(self, flow: Any) -> None:
        r = await flow.client.post(
            "/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": CARD_NO, "bank": "b" * 61}, headers=flow.h(staff())
        )
        assert r.status_code == 422
        r = await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": 12345678, "bank": []}, headers=flow.h(staff()))
        assert r.status_code == 422

    async def test_unknown_card_is_404(self, flow: Any) -> None:
        r = await flow.client.post("/card/v1/cards/00000000-0000-4000-8000-00000000dead/issuance", json={"card_no": CARD_NO, "bank": "b"}, headers=flow.h(staff()))
        assert r.status_code == 404 and r.json()["code"] == "card_not_found"

    async def test_issued_by_bank_then_not_again(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        card = await flow.apply(idn)
        r = await flow.client.post(
            f"/card/v1/cards/{card['id']}/issuance", json={"card_no": "j12345678", "bank": "中国银行"},
            headers=flow.h(channel("bank", "B007")),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "issued" and body["card_no_masked"] == "J******78" and body["bank"] == "中国银行"
        assert body["initial_pin_unchanged"] is True
        again = await flow.client.post(
            f"/card/v1/cards/{card['id']}/issuance", json={"card_no": "J87654321", "bank": "中国银行"}, headers=flow.h(staff())
        )
        assert again.status_code == 409
        assert again.json()["code"] == "card_state_conflict" and again.json()["current_state"] == "issued"
        row = await flow.card_row(card["id"])
        assert row.card_no == "J12345678" and row.pin_hash.startswith("$argon2id$")

    async def test_card_number_is_unique(self, flow: Any, idn: str) -> None:
        other = make_id_number("110105", "19900101", "003")
        for person in (idn, other):
            await flow.enrol(person)
        a, b = await flow.apply(idn), await flow.apply(other)
        await flow.issue(a["id"], CARD_NO)
        r = await flow.client.post(
            f"/card/v1/cards/{b['id']}/issuance", json={"card_no": CARD_NO, "bank": "b"}, headers=flow.h(staff())
        )
        assert r.status_code == 409 and r.json()["code"] == "card_no_taken"
        assert (await flow.card_row(b["id"])).status == "applied"


class TestActivation:
    async def _issued(self, flow: Any, idn: str) -> dict[str, Any]:
        await flow.enrol(idn)
        card = await flow.apply(idn)
        return await flow.issue(card["id"])

    async def test_anonymous_is_401(self, flow: Any, idn: str) -> None:
        r = await flow.client.post("/card/v1/activations", json={"card_no": CARD_NO, "id_number": idn, "name": "张三"})
        assert r.status_code == 401

    async def test_staff_and_level_two_citizen_are_refused(self, flow: Any, idn: str) -> None:
        await self._issued(flow, idn)
        r = await flow.activate(CARD_NO, idn, by=staff("admin"))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await flow.activate(CARD_NO, idn, by=flow.citizen(idn, level=2))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_bad_input(self, flow: Any, idn: str) -> None:
        bad_id = idn[:-1] + ("0" if idn[-1] != "0" else "1")
        r = await flow.activate(CARD_NO, bad_id)
        assert r.status_code == 422 and r.json()["code"] == "id_number_invalid"
        r = await flow.activate(CARD_NO, idn, name="张" * 51)
        assert r.status_code == 422

    @pytest.mark.parametrize("kind", ["bank", "hospital", "window", "hotline", "citizen"])
    async def test_activation_by_each_channel(self, flow: Any, idn: str, kind: str) -> None:
        card = await self._issued(flow, idn)
        by = flow.citizen(idn, level=3) if kind == "citizen" else channel(kind, f"{kind}-01")
        r = await flow.activate(CARD_NO, idn, "张三", by=by)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "active"
        expected_channel = "online" if kind == "citizen" else kind
        assert body["activation_channel"] == expected_channel
        assert body["activation_branch"] == (None if kind == "citizen" else f"{kind}-01")
        async with flow.svc.db.sessionmaker() as s:
            events = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == CARD_ACTIVATED))).scalars().all()
        assert len(events) == 1
        assert events[0].data["card_id"] == card["id"] and events[0].data["channel"] == expected_channel
        assert idn not in str(events[0].data)

    async def test_mismatched_name_is_counted_and_locks(self, flow: Any, idn: str) -> None:
        card = await self._issued(flow, idn)
        for left in (4, 3, 2, 1):
            r = await flow.activate(CARD_NO, idn, "李四")
            assert r.status_code == 422
            assert r.json()["code"] == "identity_mismatch" and r.json()["mismatches_left"] == left
        assert (await flow.card_row(card["id"])).activation_mismatches == 4
        r = await flow.activate(CARD_NO, idn, "李四")
        assert r.status_code == 423 and r.json()["code"] == "activation_locked"
        # Locked: even the right identity is refused at a bank ...
        r = await flow.activate(CARD_NO, idn, "张三")
        assert r.status_code == 423
        async with flow.svc.db.sessionmaker() as s:
            audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "card.activation_locked"))).scalars().all()
        assert len(audit) == 1 and audit[0].target_id == card["id"] and audit[0].actor == "channel:bank:B001"
        # ... but the bureau window, checking the identity card in person, may still activate.
        r = await flow.activate(CARD_NO, idn, "张三", by=channel("window", "W1"))
        assert r.status_code == 200 and r.json()["status"] == "active"

    async def test_mismatch_with_idempotency_key_is_answered_again(self, flow: Any, idn: str) -> None:
        await self._issued(flow, idn)
        h = flow.h(channel("bank", "B001"), **{"Idempotency-Key": "act-1"})
        body = {"card_no": CARD_NO, "id_number": idn, "name": "李四"}
        first = await flow.client.post("/card/v1/activations", json=body, headers=h)
        second = await flow.client.post("/card/v1/activations", json=body, headers=h)
        assert first.json()["code"] == second.json()["code"] == "identity_mismatch"
        assert second.json()["mismatches_left"] == 3

    async def test_wrong_id_number_and_unknown_card(self, flow: Any, idn: str) -> None:
        await self._issued(flow, idn)
        other = make_id_number("110105", "19900101", "003")
        r = await flow.activate(CARD_NO, other, "张三")
        assert r.status_code == 422 and r.json()["code"] == "identity_mismatch"
        r = await flow.activate("K00000001", idn, "张三")
        assert r.status_code == 422 and r.json()["code"] == "identity_mismatch"

    async def test_citizen_cannot_activate_another_persons_card(self, flow: Any, idn: str) -> None:
        await self._issued(flow, idn)
        stranger = make_id_number("110105", "19900101", "005")
        r = await flow.activate(CARD_NO, idn, "张三", by=flow.citizen(stranger, "王五"))
        assert r.status_code == 422 and r.json()["code"] == "identity_mismatch"

    async def test_applied_and_active_cards_cannot_be_activated(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        await flow.apply(idn)
        r = await flow.activate(CARD_NO, idn)
        assert r.status_code == 422  # no card carries this number yet
        mine = (await flow.my_card(idn)).json()
        await flow.issue(mine["id"])
        assert (await flow.activate(CARD_NO, idn)).status_code == 200
        r = await flow.activate(CARD_NO, idn)
        assert r.status_code == 409
        assert r.json()["code"] == "card_state_conflict" and r.json()["current_state"] == "active"
