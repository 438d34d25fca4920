"""Dated regional policies: seeded, looked up with fallback, added and replaced by staff admins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.common.models import AuditEntry, OutboxEvent
from services.common.pagination import encode_cursor
from services.contribution.models import Policy
from tests.contribution.conftest import rows
from tests.helpers import citizen, staff

P = "/contribution/v1/policies"


def policy_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "effective_to": None,
        "avg_wage_fen": 1200000,
        "base_lower_fen": 720000,
        "base_upper_fen": 3600000,
        "rates": {
            "pension": {"employer": 1600, "employee": 800, "individual": 2000},
            "medical": {"employer": 980, "employee": 200, "individual": 1000},
            "unemployment": {"employer": 50, "employee": 50},
        },
        "work_injury_rates": {str(c): r for c, r in zip(range(1, 9), (20, 40, 70, 90, 110, 130, 160, 190), strict=True)},
        "grades": [{"grade_fen": 10000, "subsidy_fen": 3000}, {"grade_fen": 50000, "subsidy_fen": 6000}],
        "frequencies": ["monthly", "yearly"],
        "back_pay_window": "current_year",
        "rounding": "fen_half_up",
        "deadline_day": 15,
        "late_fee_per_10000_per_day": 5,
        "reason": "2026 band published",
    }
    body.update(over)
    return body


class TestGetPolicy:
    async def test_public_and_falls_back_to_the_province(self, svc: Any) -> None:
        r = await svc.client.get(f"{P}/110105", params={"on": "2026-03"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["region_code"] == "110000"
        assert (body["effective_from"], body["effective_to"]) == ("2025-07", None)
        assert (body["base_lower_fen"], body["base_upper_fen"]) == (695700, 3528300)
        assert body["rates"]["pension"] == {"employer": 1600, "employee": 800, "individual": 2000}
        assert body["back_pay_window"] == "current_year" and body["rounding"] == "fen_half_up"
        assert body["grades"][0] == {"grade_fen": 10000, "subsidy_fen": 3000}

    async def test_dated_bands(self, svc: Any) -> None:
        old = (await svc.client.get(f"{P}/110000", params={"on": "2025-06"})).json()
        assert (old["base_lower_fen"], old["effective_to"]) == (682100, "2025-06")
        sh = (await svc.client.get(f"{P}/310104", params={"on": "2024-09"})).json()
        assert (sh["base_lower_fen"], sh["base_upper_fen"], sh["rounding"]) == (738400, 3692100, "jiao_up")
        tj = (await svc.client.get(f"{P}/120000", params={"on": "2024-05"})).json()
        assert (tj["base_lower_fen"], tj["base_upper_fen"]) == (501300, 2506500)
        js = (await svc.client.get(f"{P}/320102", params={"on": "2024-12"})).json()
        assert (js["base_lower_fen"], js["base_upper_fen"]) == (487900, 2439600)

    async def test_default_month_is_the_current_one(self, svc: Any) -> None:
        r = await svc.client.get(f"{P}/310000")
        assert r.json()["effective_from"] == "2025-07"

    async def test_unknown_region_and_month(self, svc: Any) -> None:
        r = await svc.client.get(f"{P}/440300", params={"on": "2026-03"})
        assert r.status_code == 404 and r.json()["code"] == "policy_not_found"
        r = await svc.client.get(f"{P}/110000", params={"on": "2020-01"})
        assert r.status_code == 404 and r.json()["code"] == "policy_not_found"

    async def test_bad_input(self, svc: Any) -> None:
        for bad in ("11010", "1101050", "A10105", "010105"):
            r = await svc.client.get(f"{P}/{bad}", params={"on": "2026-03"})
            assert r.status_code == 422 and r.json()["code"] == "region_code_invalid", (bad, r.text)
        for bad in ("2026-13", "２０２６-1３", "٢٠٢٦-03", "0000-01"):
            r = await svc.client.get(f"{P}/110000", params={"on": bad})
            assert r.status_code == 422 and r.json()["code"] == "month_invalid", bad
        r = await svc.client.get(f"{P}/1１0000", params={"on": "２０２６-03"})  # full-width forms are read as ASCII
        assert r.status_code == 200 and r.json()["region_code"] == "110000"

    async def test_seeded_policies_are_announced(self, svc: Any) -> None:
        events = await rows(svc, select(OutboxEvent).where(OutboxEvent.type == "contribution.policy.published.v1"))
        bands = {(e.data["region_code"], e.data["effective_from"]): (e.data["base_lower_fen"], e.data["base_upper_fen"])
                 for e in events}
        assert bands[("110000", "2025-07")] == (695700, 3528300)
        assert bands[("310000", "2024-07")] == (738400, 3692100)
        assert len(bands) == 8
        token = svc.app.state.internal_token
        r = await svc.client.get("/internal/v1/events", headers={"Authorization": f"Bearer {token}"})
        assert {e["type"] for e in r.json()["items"]} == {"contribution.policy.published.v1"}


class TestPutPolicy:
    async def test_anonymous_and_wrong_principal(self, svc: Any) -> None:
        url = f"{P}/110000/2026-07"
        assert (await svc.client.put(url, json=policy_body())).status_code == 401
        r = await svc.client.put(url, json=policy_body(), headers=svc.headers(citizen()))
        assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"
        r = await svc.client.put(url, json=policy_body(), headers=svc.headers(staff("operator")))
        assert r.status_code == 403 and r.json()["code"] == "staff_role_required"

    async def test_bad_input(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        url = f"{P}/110000/2026-07"
        for body in (
            policy_body(base_lower_fen=4000000),
            policy_body(base_lower_fen=7200.5),
            policy_body(base_lower_fen="720000"),
            policy_body(back_pay_window="forever"),
            policy_body(rounding="banker"),
            policy_body(work_injury_rates={"1": 20}),
            policy_body(rates={"pension": {"employer": 16000}}),
            policy_body(reason="x" * 501),
        ):
            r = await svc.client.put(url, json=body, headers=h)
            assert r.status_code == 422, body
        r = await svc.client.put(url, json=policy_body(effective_to="2026-06"), headers=h)
        assert r.status_code == 422 and r.json()["code"] == "policy_period_invalid"
        r = await svc.client.put(url, content=b"{not json", headers={**h, "content-type": "application/json"})
        assert r.status_code == 400

    async def test_add_closes_the_open_predecessor_keeps_history_audits_and_announces(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        r = await svc.client.put(f"{P}/110000/2026-07", json=policy_body(), headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["base_lower_fen"] == 720000 and r.json()["effective_to"] is None
        before = (await svc.client.get(f"{P}/110105", params={"on": "2026-06"})).json()
        assert (before["effective_from"], before["effective_to"], before["base_lower_fen"]) == ("2025-07", "2026-06", 695700)
        after = (await svc.client.get(f"{P}/110105", params={"on": "2026-07"})).json()
        assert after["base_lower_fen"] == 720000

        all_rows = await rows(svc, select(Policy).where(Policy.region_code == "110000"))
        superseded = [p for p in all_rows if p.superseded_at is not None]
        assert [(p.effective_from, p.effective_to) for p in superseded] == [("2025-07", None)]
        audits = await rows(svc, select(AuditEntry))
        assert [(a.action, a.target_id, a.actor) for a in audits] == [("policy.added", "110000/2026-07", "staff:S1001")]
        assert audits[0].reason == "2026 band published"
        events = await rows(svc, select(OutboxEvent).where(OutboxEvent.subject.in_(["110000/2025-07", "110000/2026-07"])))
        published = [(e.data["effective_from"], e.data["effective_to"]) for e in events]
        assert ("2025-07", "2026-06") in published and ("2026-07", None) in published

        history = (await svc.client.get(f"{P}/110000/versions")).json()["items"]
        assert len(history) == 4

    async def test_replace_answers_200_and_keeps_the_old_version(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        assert (await svc.client.put(f"{P}/110000/2026-07", json=policy_body(), headers=h)).status_code == 201
        r = await svc.client.put(f"{P}/110000/2026-07", json=policy_body(base_lower_fen=730000), headers=h)
        assert r.status_code == 200 and r.json()["base_lower_fen"] == 730000
        live = await rows(svc, select(Policy).where(Policy.region_code == "110000", Policy.effective_from == "2026-07"))
        assert sorted((p.base_lower_fen, p.superseded_at is None) for p in live) == [(720000, False), (730000, True)]

    async def test_a_policy_inside_a_running_one_splits_it(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        r = await svc.client.put(f"{P}/110000/2026-01", json=policy_body(effective_to="2026-06"), headers=h)
        assert r.status_code == 201, r.text
        spans = []
        for month in ("2025-12", "2026-01", "2026-06", "2026-07", "2030-01"):
            got = (await svc.client.get(f"{P}/110000", params={"on": month})).json()
            spans.append((month, got["effective_from"], got["effective_to"], got["base_lower_fen"]))
        assert spans == [
            ("2025-12", "2025-07", "2025-12", 695700),
            ("2026-01", "2026-01", "2026-06", 720000),
            ("2026-06", "2026-01", "2026-06", 720000),
            ("2026-07", "2026-07", None, 695700),
            ("2030-01", "2026-07", None, 695700),
        ]

    async def test_overlap_with_a_later_policy(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        assert (await svc.client.put(f"{P}/110000/2026-07", json=policy_body(), headers=h)).status_code == 201
        r = await svc.client.put(f"{P}/110000/2026-01", json=policy_body(), headers=h)
        assert r.status_code == 409 and r.json()["code"] == "policy_overlap"
        assert r.json()["conflicting_effective_from"] == "2026-07"

    async def test_concurrent_additions_never_overlap(self, svc: Any) -> None:
        import asyncio

        h = svc.headers(staff("admin"))
        results = await asyncio.gather(
            svc.client.put(f"{P}/110000/2026-07", json=policy_body(), headers=h),
            svc.client.put(f"{P}/110000/2026-09", json=policy_body(), headers=h),
        )
        codes = sorted(r.status_code for r in results)
        assert codes in ([201, 201], [201, 409]), [r.text for r in results]
        live = await rows(svc, select(Policy).where(Policy.region_code == "110000", Policy.superseded_at.is_(None)))
        spans = sorted((p.from_index, p.to_index if p.to_index is not None else 10**9) for p in live)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), spans

    async def test_new_region_policy_wins_over_the_province(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        r = await svc.client.put(f"{P}/110105/2026-01", json=policy_body(base_lower_fen=700000), headers=h)
        assert r.status_code == 201
        assert (await svc.client.get(f"{P}/110105", params={"on": "2026-03"})).json()["region_code"] == "110105"
        assert (await svc.client.get(f"{P}/110108", params={"on": "2026-03"})).json()["region_code"] == "110000"


class TestPolicyVersionPages:
    async def test_pages_walk_the_history_newest_first_and_an_earlier_cursor_still_works(self, svc: Any) -> None:
        h = svc.headers(staff("admin"))
        assert (await svc.client.put(f"{P}/110000/2026-07", json=policy_body(), headers=h)).status_code == 201
        whole = (await svc.client.get(f"{P}/110000/versions")).json()
        assert whole["next_cursor"] is None and len(whole["items"]) == 4
        walked, cursor = [], None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await svc.client.get(f"{P}/110000/versions", params=params)).json()
            walked += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == whole["items"]

        # A cursor of the earlier form held the id of the last version served: the page after it is answered.
        ids = [p.id for p in sorted(await rows(svc, select(Policy).where(Policy.region_code == "110000")),
                                    key=lambda p: (p.from_index, p.id), reverse=True)]
        earlier = encode_cursor([ids[0]])
        page = (await svc.client.get(f"{P}/110000/versions", params={"limit": 2, "cursor": earlier})).json()
        assert page["items"] == whole["items"][1:3] and page["next_cursor"] is not None
        unknown = (await svc.client.get(f"{P}/110000/versions", params={"cursor": encode_cursor([10**9])})).json()
        assert unknown == {"items": [], "next_cursor": None}
