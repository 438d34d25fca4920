"""Loss reports: temporary (lifting on its day, or sooner) and formal (void and replacement)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select

from services.card.app import loss_sweep
from services.card.events import CARD_LOST, CARD_REPLACED
from services.card.service import lift_expired_losses
from services.common.models import OutboxEvent
from tests.card.conftest import CARD_NO
from tests.helpers import channel, make_id_number, staff

URL = "/card/v1/me/card/loss-reports"


async def _events(flow: Any, type_: str) -> list[OutboxEvent]:
    async with flow.svc.db.sessionmaker() as s:
        return list((await s.execute(select(OutboxEvent).where(OutboxEvent.type == type_))).scalars().all())


class TestReportLoss:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.post(URL, json={"kind": "temporary"})).status_code == 401

    async def test_wrong_principals(self, flow: Any, idn: str) -> None:
        for prn in (channel("bank"), staff("admin")):
            r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(prn))
            assert r.status_code == 403
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn, level=1)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"

    async def test_bad_kind(self, flow: Any, idn: str) -> None:
        r = await flow.client.post(URL, json={"kind": "stolen"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 422

    async def test_temporary_by_citizen_lifts_on_its_day(self, flow: Any, idn: str) -> None:
        # Shanghai: 5 days. Reported on 2026-03-10 (Shanghai), lifts on 2026-03-15 at 00:00 Shanghai.
        idn = make_id_number("310101", "19850615", "002")
        card = await flow.active_card(idn, region="310101")
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["kind"] == "temporary" and body["lifts_on"] == "2026-03-15" and body["id"]
        assert body["card"]["status"] == "temporarily_lost"
        assert [e.data["kind"] for e in await _events(flow, CARD_LOST)] == ["temporary"]

        flow.svc.clock.set(datetime(2026, 3, 14, 15, 59, 59, tzinfo=UTC))  # 23:59:59 on the 14th in Shanghai
        mine = (await flow.my_card(idn)).json()
        assert mine["status"] == "temporarily_lost" and mine["loss_report"]["lifts_on"] == "2026-03-15"
        flow.svc.clock.set(datetime(2026, 3, 14, 16, 0, tzinfo=UTC))  # midnight, the 15th in Shanghai
        assert (await flow.my_card(idn)).json()["status"] == "active"
        assert (await flow.card_row(card["id"])).status == "active"

    async def test_sweep_lifts_without_a_read(self, flow: Any) -> None:
        idn = make_id_number("610113", "19700101", "001")  # Xi'an: 7 days
        card = await flow.active_card(idn, region="610113")
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert r.json()["lifts_on"] == "2026-03-17"
        flow.svc.clock.set(datetime(2026, 3, 16, 16, 0, tzinfo=UTC))
        async with flow.svc.db.sessionmaker() as s, s.begin():
            assert await lift_expired_losses(session=s, clock=flow.svc.clock) == 1
        assert (await flow.card_row(card["id"])).status == "active"

    async def test_background_sweep_lifts_on_its_day(self, flow: Any) -> None:
        idn = make_id_number("510104", "19700101", "001")  # Chengdu: 7 days
        card = await flow.active_card(idn, region="510104")
        await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))

        class OneRound(asyncio.Event):
            async def wait(self) -> Literal[True]:
                self.set()
                return True

        flow.svc.clock.set(datetime(2026, 3, 16, 15, 59, tzinfo=UTC))  # still the 16th in Chengdu
        await loss_sweep(flow.svc.app, OneRound())
        assert (await flow.card_row(card["id"])).status == "temporarily_lost"
        flow.svc.clock.set(datetime(2026, 3, 16, 16, 0, tzinfo=UTC))  # the 17th
        await loss_sweep(flow.svc.app, OneRound())
        assert (await flow.card_row(card["id"])).status == "active"

    async def test_hotline_names_the_holder(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        hotline = flow.h(channel("hotline", "12333-01"))
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=hotline)
        assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {"id_number", "name"}
        r = await flow.client.post(URL, json={"kind": "temporary", "id_number": idn, "name": "李四"}, headers=hotline)
        assert r.status_code == 422 and r.json()["code"] == "identity_mismatch"
        other = make_id_number("110105", "19900101", "003")
        r = await flow.client.post(URL, json={"kind": "temporary", "id_number": other, "name": "李四"}, headers=hotline)
        assert r.status_code == 404
        r = await flow.client.post(URL, json={"kind": "temporary", "id_number": idn, "name": "张三"}, headers=hotline)
        assert r.status_code == 201 and r.json()["reported_by"] == "hotline"
        assert r.json()["lifts_on"] == "2026-03-17"  # Beijing sample rule: 7 days

    async def test_lost_card_cannot_change_pin_or_be_activated(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        r = await flow.change_pin(idn, "010010", "285714")
        assert r.status_code == 409 and r.json()["current_state"] == "temporarily_lost"
        r = await flow.activate(CARD_NO, idn)
        assert r.status_code == 409 and r.json()["current_state"] == "temporarily_lost"
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 409

    async def test_applied_card_cannot_be_reported_temporarily(self, flow: Any, idn: str) -> None:
        await flow.enrol(idn)
        await flow.apply(idn)
        r = await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 409 and r.json()["current_state"] == "applied"

    async def test_formal_voids_and_replacement_replaces_when_activated(self, flow: Any, idn: str) -> None:
        old = await flow.active_card(idn)
        r = await flow.client.post(URL, json={"kind": "formal"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 201, r.text
        report = r.json()
        assert report["card"]["status"] == "formally_lost" and report["lifts_on"] is None
        new_id = report["replacement_card_id"]
        mine = (await flow.my_card(idn)).json()
        assert mine["id"] == new_id and mine["status"] == "applied" and mine["replaces_card_id"] == old["id"]
        # The void card stays void: it cannot be activated again.
        r = await flow.activate(CARD_NO, idn)
        assert r.status_code == 409 and r.json()["current_state"] == "formally_lost"

        await flow.issue(new_id, "J55550001")
        assert (await flow.card_row(old["id"])).status == "formally_lost"
        r = await flow.activate("J55550001", idn, by=channel("window", "W1"))
        assert r.status_code == 200 and r.json()["replaces_card_id"] == old["id"]
        old_row = await flow.card_row(old["id"])
        assert old_row.status == "replaced" and old_row.replaced_by_card_id == new_id
        replaced = await _events(flow, CARD_REPLACED)
        assert len(replaced) == 1 and replaced[0].data == {
            "card_id": old["id"], "id_hash": old_row.id_hash, "replacement_card_id": new_id,
            "replaced_at": replaced[0].data["replaced_at"],
        }
        lost = await _events(flow, CARD_LOST)
        assert lost[0].data["kind"] == "formal" and lost[0].data["replacement_card_id"] == new_id

    async def test_formal_after_temporary(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        r = await flow.client.post(URL, json={"kind": "formal"}, headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 201 and r.json()["card"]["status"] == "formally_lost"
        flow.svc.clock.advance(days=30)
        mine = (await flow.my_card(idn)).json()
        assert mine["status"] == "applied"


class TestLiftLoss:
    async def test_anonymous_is_401(self, flow: Any) -> None:
        assert (await flow.client.delete(f"{URL}/current")).status_code == 401

    async def test_level_three_needed(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        r = await flow.client.delete(f"{URL}/current", headers=flow.h(flow.citizen(idn, level=2)))
        assert r.status_code == 403 and r.json()["code"] == "realname_level_too_low"
        r = await flow.client.delete(f"{URL}/current", headers=flow.h(channel("hotline")))
        assert r.status_code == 403

    async def test_nothing_to_lift_is_409(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        r = await flow.client.delete(f"{URL}/current", headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 409 and r.json()["current_state"] == "active"

    async def test_lift_sooner(self, flow: Any, idn: str) -> None:
        await flow.active_card(idn)
        await flow.client.post(URL, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        flow.svc.clock.advance(days=1)
        r = await flow.client.delete(f"{URL}/current", headers=flow.h(flow.citizen(idn)))
        assert r.status_code == 204
        mine = (await flow.my_card(idn)).json()
        assert mine["status"] == "active" and mine["loss_report"] is None
        assert (await flow.change_pin(idn, "010010", "285714")).status_code == 200
