"""Dated regional review rules: seeded, read publicly, changed by staff admins (audited)."""

from __future__ import annotations

from datetime import date

from tests.helpers import citizen, staff
from tests.review.conftest import audits, idn

RULE = {
    "certification_months": 6, "resident_certification_months": 6, "grace_days": 10,
    "declaration_deadline": "04-30", "bases_from_month": 7, "reason": "市人社局2026年第3号通知",
}


class TestGetRule:
    async def test_seeded_regions_and_lookup_by_province(self, svc):
        for region, months, resident, deadline in (
            ("110105", 12, 12, "05-31"), ("310104", 12, 6, "06-15"), ("120101", 12, 12, "03-31"), ("320102", 12, 6, "04-30"),
        ):
            r = await svc.client.get(f"/review/v1/rules/{region}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["region_code"] == region[:2] + "0000"
            assert (body["certification_months"], body["resident_certification_months"], body["declaration_deadline"]) == (
                months, resident, deadline,
            )

    async def test_unknown_region_and_bad_code(self, svc):
        r = await svc.client.get("/review/v1/rules/440300")
        assert (r.status_code, r.json()["code"]) == (404, "review_rule_not_found")
        r = await svc.client.get("/review/v1/rules/11A105")
        assert r.status_code == 422


class TestPutRule:
    URL = "/review/v1/rules/110000/2026-01-01"

    async def test_anonymous_citizen_operator(self, svc):
        assert (await svc.client.put(self.URL, json=RULE)).status_code == 401
        assert (await svc.client.put(self.URL, json=RULE, headers=svc.headers(citizen()))).status_code == 403
        r = await svc.client.put(self.URL, json=RULE, headers=svc.headers(staff("operator")))
        assert (r.status_code, r.json()["code"]) == (403, "staff_role_required")

    async def test_bad_input(self, svc):
        h = svc.headers(staff("admin"))
        for bad in ({**RULE, "declaration_deadline": "02-30"}, {**RULE, "grace_days": -1},
                    {**RULE, "certification_months": "twelve"}, {**RULE, "reason": "x" * 501}, {"grace_days": 1}):
            r = await svc.client.put(self.URL, json=bad, headers=h)
            assert r.status_code == 422, bad
        r = await svc.client.put(self.URL, json={**RULE, "declaration_deadline": "2-30"}, headers=h)
        assert r.json()["code"] == "declaration_deadline_invalid"
        r = await svc.client.put("/review/v1/rules/110000/2026-02-30", json=RULE, headers=h)
        assert r.status_code == 422

    async def test_new_dated_rule_applies_from_its_date_and_is_audited(self, svc, feed):
        await feed.award(idn(1), from_date=date(2025, 6, 1))
        me = svc.headers(citizen(idn(1)))
        assert (await svc.client.get("/review/v1/me/certification", headers=me)).json()["due_by"] == "2026-06-01"
        r = await svc.client.put(self.URL, json=RULE, headers=svc.headers(staff("admin", staff_id="A1")))
        assert r.status_code == 201, r.text
        r = await svc.client.put(self.URL, json={**RULE, "grace_days": 20}, headers=svc.headers(staff("admin", staff_id="A1")))
        assert (r.status_code, r.json()["grace_days"]) == (200, 20)
        body = (await svc.client.get("/review/v1/me/certification", headers=me)).json()
        assert (body["due_by"], body["state"], body["suspend_after"]) == ("2025-12-01", "suspended", "2025-12-21")
        r = await svc.client.get("/review/v1/rules/110105?on=2025-12-31")
        assert r.json()["certification_months"] == 12
        [first, second] = await audits(svc, "review_rule.put")
        assert (first.actor, first.target_id, first.reason) == ("staff:A1", "110000/2026-01-01", RULE["reason"])
        assert first.details["before"] is None and second.details["before"]["grace_days"] == 10
