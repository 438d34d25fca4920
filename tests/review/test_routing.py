"""Fixed path segments win over ids: `/annual-declarations/overdue` is not a declaration id."""

from __future__ import annotations

import pytest

from services.common.clock import FrozenClock
from tests.helpers import staff
from tests.review.conftest import START


@pytest.fixture
async def svc(make_service):
    return await make_service("review", clock=FrozenClock(START))


async def test_options_on_a_fixed_segment_answers_its_own_methods(svc):
    r = await svc.client.options("/review/v1/annual-declarations/overdue", headers=svc.headers(staff("operator")))
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await svc.client.get("/review/v1/annual-declarations/overdue", headers=svc.headers(staff("reviewer")))
    assert (r.status_code, r.headers["allow"], r.json()["code"]) == (405, "POST", "method_not_allowed")


async def test_an_id_segment_that_is_not_an_id_is_not_found(svc):
    h = svc.headers(staff("reviewer"))
    for path in ("/review/v1/annual-declarations/not-an-id", "/review/v1/annual-declarations/" + "a" * 36):
        r = await svc.client.get(path, headers=h)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), path
    r = await svc.client.get("/review/v1/annual-declarations/00000000-0000-4000-8000-000000000000", headers=h)
    assert r.status_code == 404


async def test_an_empty_or_foreign_cursor_is_cursor_invalid(svc):
    h = svc.headers(staff("reviewer"))
    for cursor in ("", "!!", "a" * 401):
        r = await svc.client.get("/review/v1/annual-declarations", params={"cursor": cursor}, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "cursor_invalid"), cursor


async def test_allow_lists_every_method_of_the_path(make_service):
    card = await make_service("card")
    r = await card.client.request("OPTIONS", "/card/v1/rules", headers=card.headers(staff("admin")))
    assert (r.status_code, r.headers["allow"]) == (405, "GET, POST")
    r = await card.client.delete("/card/v1/rules", headers=card.headers(staff("admin")))
    assert (r.status_code, r.headers["allow"]) == (405, "GET, POST")


async def test_a_fixed_segment_beside_a_month_is_not_a_month(make_service):
    contribution = await make_service("contribution")
    h = contribution.headers(staff("admin"))
    r = await contribution.client.put("/contribution/v1/policies/110000/versions", json={}, headers=h)
    assert (r.status_code, r.headers["allow"]) == (405, "GET")
    r = await contribution.client.put("/contribution/v1/policies/110000/2026-7", json={}, headers=h)
    assert r.status_code == 422
