"""Regional card rules: seeded, dated, changed by staff admins (audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.common.models import AuditEntry
from tests.helpers import channel, make_id_number, staff

RULE = {
    "region_code": "310000", "effective_from": "2026-03-12", "initial_pin_rule": "fixed", "initial_pin_fixed": "135790",
    "pin_max_tries": 5, "temporary_loss_days": 10, "reason": "沪人社发〔2026〕1号",
}


class TestListRules:
    async def test_anonymous_and_citizen(self, flow: Any, idn: str) -> None:
        assert (await flow.client.get("/card/v1/rules")).status_code == 401
        assert (await flow.client.get("/card/v1/rules", headers=flow.h(flow.citizen(idn)))).status_code == 403

    async def test_seeded_sample_regions(self, flow: Any) -> None:
        r = await flow.client.get("/card/v1/rules?limit=500", headers=flow.h(staff("operator")))
        assert r.status_code == 200
        rules = {x["region_code"]: x for x in r.json()["items"]}
        assert {"000000", "110000", "310000", "120000", "320000", "610100", "510100"} <= set(rules)
        assert rules["310000"]["temporary_loss_days"] == 5 and rules["310000"]["initial_pin_rule"] == "fixed"
        assert rules["610100"]["temporary_loss_days"] == 7 and rules["510100"]["temporary_loss_days"] == 7
        assert rules["110000"]["initial_pin_rule"] == "id_last6" and rules["110000"]["pin_max_tries"] == 3
        assert "initial_pin_fixed" not in rules["310000"]
        page = (await flow.client.get("/card/v1/rules?region_code=510100", headers=flow.h(staff()))).json()
        assert [x["region_code"] for x in page["items"]] == ["510100"]
        assert (await flow.client.get("/card/v1/rules?region_code=51", headers=flow.h(staff()))).status_code == 422


class TestCreateRule:
    async def test_anonymous_operator_and_channel(self, flow: Any) -> None:
        assert (await flow.client.post("/card/v1/rules", json=RULE)).status_code == 401
        r = await flow.client.post("/card/v1/rules", json=RULE, headers=flow.h(staff("operator")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"
        assert (await flow.client.post("/card/v1/rules", json=RULE, headers=flow.h(channel("window")))).status_code == 403

    async def test_bad_input(self, flow: Any) -> None:
        admin = flow.h(staff("admin"))
        for patch in (
            {"region_code": "31"}, {"pin_max_tries": 0}, {"temporary_loss_days": 1000},
            {"initial_pin_fixed": None}, {"initial_pin_fixed": "12345"}, {"reason": ""}, {"effective_from": "2026-02-30"},
            {"initial_pin_rule": "birthday"},
        ):
            r = await flow.client.post("/card/v1/rules", json={**RULE, **patch}, headers=admin)
            assert r.status_code == 422, patch
        r = await flow.client.post("/card/v1/rules", json={**RULE, "effective_from": "2026-03-09"}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "card_rule_effective_in_past"

    async def test_new_rule_takes_effect_on_its_day_and_is_audited(self, flow: Any) -> None:
        admin = flow.h(staff("admin", staff_id="A7"))
        r = await flow.client.post("/card/v1/rules", json=RULE, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["effective_from"] == "2026-03-12" and r.json()["effective_to"] is None
        again = await flow.client.post("/card/v1/rules", json=RULE, headers=admin)
        assert again.status_code == 409 and again.json()["code"] == "card_rule_exists"
        page = (await flow.client.get("/card/v1/rules?region_code=310000", headers=admin)).json()["items"]
        assert [(x["effective_from"], x["effective_to"]) for x in page] == [("2026-03-12", None), ("2020-01-01", "2026-03-11")]
        async with flow.svc.db.sessionmaker() as s:
            audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "card.rule.created"))).scalar_one()
        assert audit.actor == "staff:A7" and audit.reason == RULE["reason"]

        # Before the 12th the old rule (5 days) applies, from the 12th the new one (10 days).
        idn = make_id_number("310101", "19850615", "002")
        await flow.active_card(idn, region="310101")
        url = "/card/v1/me/card/loss-reports"
        r = await flow.client.post(url, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert r.json()["lifts_on"] == "2026-03-15"
        await flow.client.delete(f"{url}/current", headers=flow.h(flow.citizen(idn)))
        flow.svc.clock.advance(days=2)
        r = await flow.client.post(url, json={"kind": "temporary"}, headers=flow.h(flow.citizen(idn)))
        assert r.json()["lifts_on"] == "2026-03-22"
