"""End to end: the real gateway, services and sandbox processes; tokens from both sandbox platforms."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers import make_credit_code

pytestmark = pytest.mark.e2e


async def test_both_platforms_through_the_gateway(stack: Any) -> None:
    c = stack.client
    for issuer in ("sandbox-alipay", "sandbox-wechat"):
        headers = await stack.auth(issuer, kind="citizen", id_number="11010519491231002X", name="王芳",
                                   realname_level=3, auth_method="face")
        # A real protected route: the service verified the gateway's principal (a 401 would mean it did not).
        r = await c.get("/contribution/v1/me/declarations", headers=headers)
        assert r.status_code == 200, (issuer, r.text)
        assert "items" in r.json()
    employer = await stack.auth("sandbox-wechat", kind="employer", credit_code=make_credit_code("91110105MA00E2E01"),
                                unit_name="北京端到端科技有限公司", operator="经办人")
    r = await c.get("/contribution/v1/me/declarations", headers=employer)
    assert r.status_code == 403 and r.json()["code"] == "principal_kind_not_allowed"


async def test_refusals_at_the_gateway(stack: Any) -> None:
    c = stack.client
    r = await c.get("/contribution/v1/me/declarations")
    assert r.status_code == 401 and r.json()["code"] == "principal_required"  # the service's own refusal
    r = await c.get("/contribution/v1/me/declarations", headers={"Authorization": "Bearer a.b.c"})
    assert r.status_code == 401 and r.json()["code"] == "token_invalid"
    r = await c.get("/internal/v1/events")
    assert r.status_code == 404
    r = await c.get("/registration/v1/anything", headers={"X-Principal": "forged"})
    assert r.status_code in (401, 404)


async def test_a_service_reached_directly_refuses_a_forged_principal(stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.service_url("contribution"), timeout=10) as direct:
        r = await direct.get("/contribution/v1/me/declarations", headers={"X-Principal": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"})
        assert r.status_code == 401 and r.json()["code"] == "principal_invalid"


async def test_public_routes(stack: Any) -> None:
    c = stack.client
    assert (await c.get("/healthz")).status_code == 200
    r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    assert set(r.json()["upstreams"]) == {"registration", "contribution", "card", "review"}
    doc = (await c.get("/openapi.json")).json()
    prefixes = {p.split("/")[1] for p in doc["paths"]}
    assert {"registration", "contribution", "card", "review"} <= prefixes
    assert "x-unavailable-services" not in doc
    html = (await c.get("/docs")).text
    assert not re.search(r"https?://", html)
    assert (await c.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
    metrics = (await c.get("/metrics")).text
    assert "gateway_requests_total" in metrics
