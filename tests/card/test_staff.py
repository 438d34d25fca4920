"""Staff views of one card (masked, or unmasked and audited) and cancellation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.common.models import AuditEntry
from tests.card.conftest import CARD_NO
from tests.helpers import channel, staff


class TestGetCard:
    async def test_anonymous_and_citizen(self, flow: Any, idn: str) -> None:
        assert (await flow.client.get("/card/v1/cards/00000000-0000-4000-8000-00000000dead")).status_code == 401
        assert (await flow.client.get("/card/v1/cards/00000000-0000-4000-8000-00000000dead", headers=flow.h(flow.citizen(idn)))).status_code == 403

    async def test_unknown_is_404(self, flow: Any) -> None:
        r = await flow.client.get("/card/v1/cards/00000000-0000-4000-8000-00000000dead", headers=flow.h(staff()))
        assert r.status_code == 404 and r.json()["code"] == "card_not_found"

    async def test_masked_for_bank_unmasked_for_operator_with_audit(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        url = f"/card/v1/cards/{card['id']}"
        masked = (await flow.client.get(url, headers=flow.h(channel("bank")))).json()
        assert masked["card_no_masked"] == "J******78" and "card_no" not in masked and idn not in str(masked)
        r = await flow.client.get(f"{url}?unmasked=true", headers=flow.h(channel("bank")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"
        r = await flow.client.get(f"{url}?unmasked=true", headers=flow.h(staff("operator", staff_id="S42")))
        assert r.status_code == 200
        assert r.json()["card_no"] == CARD_NO and r.json()["id_number"] == idn and r.json()["holder_name"] == "张三"
        async with flow.svc.db.sessionmaker() as s:
            audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "card.read_unmasked"))).scalar_one()
        assert audit.actor == "staff:S42" and audit.target_id == card["id"]


class TestCancel:
    async def test_anonymous_and_wrong_principals(self, flow: Any, idn: str) -> None:
        url = "/card/v1/cards/00000000-0000-4000-8000-00000000dead/cancellation"
        assert (await flow.client.post(url, json={"reason": "r"})).status_code == 401
        for prn in (channel("bank"), flow.citizen(idn), staff("reviewer")):
            assert (await flow.client.post(url, json={"reason": "r"}, headers=flow.h(prn))).status_code == 403

    async def test_reason_required(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        for body in ({}, {"reason": "  "}, {"reason": "x" * 501}):
            r = await flow.client.post(f"/card/v1/cards/{card['id']}/cancellation", json=body, headers=flow.h(staff()))
            assert r.status_code == 422

    async def test_cancel_then_apply_again(self, flow: Any, idn: str) -> None:
        card = await flow.active_card(idn)
        url = f"/card/v1/cards/{card['id']}/cancellation"
        r = await flow.client.post(url, json={"reason": "重复制卡"}, headers=flow.h(staff("operator")))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = await flow.client.post(url, json={"reason": "重复制卡"}, headers=flow.h(staff("operator")))
        assert again.status_code == 409 and again.json()["current_state"] == "cancelled"
        assert (await flow.my_card(idn)).status_code == 404
        assert (await flow.activate(CARD_NO, idn)).json()["current_state"] == "cancelled"
        new = await flow.apply(idn)
        assert new["status"] == "applied" and new["id"] != card["id"]
        async with flow.svc.db.sessionmaker() as s:
            audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "card.cancelled"))).scalar_one()
        assert audit.reason == "重复制卡"
