"""Every service trusts only the gateway's principal: reached directly, a missing, forged,
foreign-key or other-audience X-Principal is 401; the one the gateway forwards is accepted.

Each service's real application is used, with one extra read-only route that
returns the verified principal, plus the service's own protected routes found
by walking its routes.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from services.common.principal import AnyPrincipal, current_principal, encode_principal
from tests.conftest import KEYS
from tests.gateway.conftest import bearer, new_ec_pem, sandbox_token
from tests.helpers import citizen, principal_headers

SERVICES = ("registration", "contribution", "card", "review")


def whoami_factory(service: str) -> Any:
    """The service's own create_app, plus a route answering the principal it verified."""
    import importlib

    create_app = importlib.import_module(f"services.{service}.app").create_app

    def factory(**kwargs: Any) -> Any:
        app = create_app(**kwargs)
        router = APIRouter()

        @router.get(f"/{service}/v1/_whoami")
        def whoami(principal: AnyPrincipal) -> dict[str, Any]:
            return principal.model_dump(mode="json", exclude_none=True)

        app.include_router(router)
        return app

    return factory


def _guarded(dependant: Any) -> bool:
    for dep in dependant.dependencies:
        call = dep.call
        if call is current_principal or getattr(call, "__qualname__", "").startswith("require.<locals>"):
            return True
        if _guarded(dep):
            return True
    return False


def _api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute with its full path (included routers are walked: FastAPI keeps them nested)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append((prefix + route.path, route))
        elif hasattr(route, "original_router"):
            ctx = getattr(route, "include_context", None)
            out.extend(_api_routes(route.original_router.routes, prefix + getattr(ctx, "prefix", "")))
    return out


def protected_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path with sample parameters) of the routes guarded by the principal dependency."""
    from tests.helpers import make_credit_code

    samples = {"credit_code": make_credit_code(), "region_code": "110105", "number": "1"}
    out = []
    for full_path, route in _api_routes(app.router.routes):
        if _guarded(route.dependant) and not full_path.endswith("/_whoami"):
            path = full_path
            for param in route.dependant.path_params:
                sample = samples.get(param.name, "00000000-0000-0000-0000-000000000001")
                path = re.sub(r"\{" + param.name + r":month\}", "2026-07", path)
                path = re.sub(r"\{" + param.name + r"(:\w+)?\}", sample, path)
            out.append((sorted(route.methods)[0], path))
    return out


@pytest.mark.parametrize("service", SERVICES)
class TestServiceTrustsOnlyTheGateway:
    async def test_no_principal_is_401(self, make_service, service):
        svc = await make_service(service, app_factory=whoami_factory(service))
        r = await svc.client.get(f"/{service}/v1/_whoami")
        assert r.status_code == 401 and r.json()["code"] == "principal_required"
        for method, path in protected_routes(svc.app):
            r = await svc.client.request(method, path, json={} if method != "GET" else None)
            assert r.status_code == 401, (method, path, r.text)

    async def test_principal_signed_by_another_key_is_401(self, make_service, service):
        svc = await make_service(service, app_factory=whoami_factory(service))
        forged = encode_principal(citizen(), audience=service, private_key_pem=new_ec_pem())
        r = await svc.client.get(f"/{service}/v1/_whoami", headers={"X-Principal": forged})
        assert r.status_code == 401 and r.json()["code"] == "principal_invalid"
        for method, path in protected_routes(svc.app):
            r = await svc.client.request(method, path, headers={"X-Principal": forged}, json={} if method != "GET" else None)
            assert r.status_code == 401, (method, path, r.text)

    async def test_principal_minted_for_another_service_is_401(self, make_service, service):
        svc = await make_service(service, app_factory=whoami_factory(service))
        other = next(s for s in SERVICES if s != service)
        r = await svc.client.get(f"/{service}/v1/_whoami", headers=principal_headers(other, citizen()))
        assert r.status_code == 401 and r.json()["code"] == "principal_invalid"

    async def test_expired_or_plain_principal_is_401(self, make_service, service):
        svc = await make_service(service, app_factory=whoami_factory(service))
        key = (KEYS / "gateway-signing.pem").read_text()
        stale = encode_principal(citizen(), audience=service, private_key_pem=key, now=time.time() - 3600)
        for header in (stale, '{"kind": "citizen", "sub": "x"}'):
            r = await svc.client.get(f"/{service}/v1/_whoami", headers={"X-Principal": header})
            assert r.status_code == 401 and r.json()["code"] == "principal_invalid"

    async def test_the_gateways_principal_is_accepted(self, make_service, make_gateway, service):
        svc = await make_service(service, app_factory=whoami_factory(service))
        from tests.gateway.conftest import HostDispatch

        gw = await make_gateway(upstream_transport=HostDispatch({service: httpx.ASGITransport(app=svc.app)}))
        r = await gw.client.get(f"/{service}/v1/_whoami", headers={**bearer(sandbox_token("sandbox-wechat")),
                                                                   "X-Principal": "forged"})
        assert r.status_code == 200, r.text
        prn = r.json()
        assert prn["kind"] == "citizen" and prn["issuer"] == "sandbox-wechat" and prn["platform"] == "wechat"
        assert prn["id_number"] == "11010519491231002X" and prn["realname_level"] == 3
