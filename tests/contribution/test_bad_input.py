"""Odd and hostile input never yields a 500: every refusal is a problem document with a code."""

from __future__ import annotations

from typing import Any

from tests.contribution.conftest import ALICE, UNIT, enrol_self
from tests.helpers import agency, citizen, employer, staff


async def test_no_server_error_for_odd_input(svc: Any) -> None:
    await enrol_self(svc, ALICE)
    c, cit, unit, adm = svc.client, svc.headers(citizen(ALICE)), svc.headers(employer(UNIT)), svc.headers(staff("admin"))
    flex = {"category": "flexible", "region_code": "110105", "base_fen": 695700, "months": ["2026-03"]}
    cases: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/contribution/v1/quotes", cit, {**flex, "months": "2026-03"}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "months": [202603]}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "months": ["2026-03"] * 1000}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "base_fen": 10**30}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "base_fen": True}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "base_fen": None}),
        ("POST", "/contribution/v1/quotes", cit, {**flex, "region_code": "1" * 10000}),
        ("POST", "/contribution/v1/quotes", cit, {"category": "resident", "region_code": "110105", "grade_fen": 50000, "year": "2026"}),
        ("POST", "/contribution/v1/quotes", cit, {"category": "resident", "region_code": "110105", "grade_fen": 50000, "year": 1200}),
        ("POST", "/contribution/v1/quotes", cit, {"category": "employee", **{k: v for k, v in flex.items() if k != "category"},
                                                   "work_injury_class": 9}),
        ("POST", "/contribution/v1/quotes", cit, []),
        ("POST", "/contribution/v1/quotes", cit, "text"),
        ("POST", "/contribution/v1/me/declarations", cit, {**flex, "months": ["0000-01"]}),
        ("POST", "/contribution/v1/me/declarations", cit, {**flex, "months": ["9999-12"]}),
        ("GET", "/contribution/v1/me/declarations?limit=0", cit, None),
        ("GET", "/contribution/v1/me/declarations?limit=abc", cit, None),
        ("GET", "/contribution/v1/me/declarations?cursor=WyJ4Il0", cit, None),
        ("GET", "/contribution/v1/me/declarations/00000000-0000-0000-0000-000000000000", cit, None),
        ("GET", "/contribution/v1/me/records?year=-1", cit, None),
        ("POST", f"/contribution/v1/employers/{UNIT}/declarations", unit, {"month": "2026-03", "person_ids": ["x" * 37]}),
        ("POST", "/contribution/v1/employers/short/declarations", unit, {"month": "2026-03"}),
        ("POST", f"/contribution/v1/employers/{UNIT}/assessments", adm, {"month": "2026-03", "reason": "x" * 501}),
        ("PUT", "/contribution/v1/policies/110000/2026-7", adm, {}),
        ("PUT", "/contribution/v1/policies/110000/2026-07", adm, {"rates": {"foo": {}}}),
        ("PUT", "/contribution/v1/policies/110000/2026-07", adm, {"work_injury_rates": {"9": 1}}),
        ("GET", "/contribution/v1/policies/110000?on=2026-00", None, None),
        ("GET", "/contribution/v1/policies/000000", None, None),
        ("GET", "/contribution/v1/policies/110000/versions?cursor=bad", None, None),
        ("POST", "/contribution/v1/me/agency-authorizations", cit, {"credit_code": 123, "valid_until": "soon"}),
        ("DELETE", "/contribution/v1/me/agency-authorizations/" + "x" * 37, cit, None),
        ("POST", "/contribution/v1/agency/declarations", svc.headers(agency()), {**flex, "id_number": "1" * 100}),
    ]
    for method, url, headers, body in cases:
        r = await c.request(method, url, headers=headers or {}, json=body) if body is not None else \
            await c.request(method, url, headers=headers or {})
        assert r.status_code < 500, (method, url, body, r.text)
        assert r.status_code >= 400, (method, url, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), (url, r.text)
        assert r.json()["code"], (url, r.text)
