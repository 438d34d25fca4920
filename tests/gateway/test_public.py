"""The gateway's own routes: health, readiness, metrics, docs, the merged OpenAPI document, CORS."""

from __future__ import annotations

import json
import re

from devtools.openapi import OUT
from gateway.openapi import merged_openapi

EXTERNAL_URL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


class TestHealth:
    async def test_healthz(self, gw):
        r = await gw.client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}

    async def test_readyz_when_every_upstream_is_ready(self, gw):
        r = await gw.client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["upstreams"] == {n: "ok" for n in ("registration", "contribution", "card", "review")}
        assert set(r.json()["issuers"]) == {"sandbox-alipay", "sandbox-wechat"}

    async def test_readyz_lists_the_upstreams_down(self, gw):
        gw.upstreams["card"].ready = False
        r = await gw.client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["code"] == "not_ready" and body["upstreams_down"] == ["card"]

    async def test_metrics(self, make_gateway):
        gw = await make_gateway(client_address="127.0.0.1")  # the monitoring network: loopback by default
        await gw.client.get("/registration/v1/me")
        r = await gw.client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        for name in ("gateway_requests_total", "gateway_request_duration_seconds_bucket",
                     "gateway_upstream_errors_total", "gateway_token_failures_total", "gateway_rate_limited_total"):
            assert name in r.text or name.replace("_total", "") in r.text


    async def test_metrics_are_not_for_the_public(self, make_gateway):
        gw = await make_gateway(metrics_token="scrape-secret")  # a client out on the internet
        r = await gw.client.get("/metrics")
        assert r.status_code == 403 and r.json()["code"] == "metrics_forbidden"
        assert "gateway_requests" not in r.text
        r = await gw.client.get("/metrics", headers={"Authorization": "Bearer not-the-secret"})
        assert r.status_code == 403
        r = await gw.client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert r.status_code == 200 and "gateway_requests" in r.text

    async def test_metrics_network_is_configurable_and_forwarded_for_is_not_believed_from_strangers(self, make_gateway):
        gw = await make_gateway(client_address="10.20.0.5", metrics_networks="10.20.0.0/16")
        assert (await gw.client.get("/metrics")).status_code == 200
        stranger = await make_gateway(client_address="203.0.113.7", metrics_networks="10.20.0.0/16")
        r = await stranger.client.get("/metrics", headers={"X-Forwarded-For": "10.20.0.5"})
        assert r.status_code == 403


class TestDocs:
    async def test_docs_html_references_no_external_host(self, gw):
        r = await gw.client.get("/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert not EXTERNAL_URL.search(r.text), EXTERNAL_URL.search(r.text)
        assert "default-src 'self'" in r.headers["content-security-policy"]
        init = await gw.client.get("/docs/assets/init.js")
        assert init.status_code == 200 and "/openapi.json" in init.text
        assert not EXTERNAL_URL.search(init.text)
        for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            asset = await gw.client.get(src)
            assert asset.status_code == 200, src
            assert len(asset.content) > 100, src

    async def test_only_known_assets_are_served(self, gw):
        for path in ("/docs/assets/../../etc/passwd", "/docs/assets/index.html", "/docs/assets/swagger-ui.js.map"):
            assert (await gw.client.get(path)).status_code == 404, path


class TestOpenApi:
    async def test_merged_live_from_the_upstreams(self, gw):
        r = await gw.client.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
        for service in ("registration", "contribution", "card", "review"):
            assert f"/{service}/v1/things" in doc["paths"]
        assert doc["components"]["securitySchemes"]["platformToken"]["scheme"] == "bearer"
        assert {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
        # The four services all named a schema `Thing`, with different shapes: each keeps its own.
        schemas = doc["components"]["schemas"]
        assert {"Thing", "Contribution_Thing", "Registration_Thing", "Review_Thing"} <= set(schemas)

    async def test_an_upstream_down_is_marked_then_filled_in(self, gw):
        import httpx

        source = gw.public.state.openapi
        working = source.http
        card_url = gw.public.state.settings.card_url

        class CardDown(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if str(request.url).startswith(card_url):
                    raise httpx.ConnectError("card is down", request=request)
                return await working._transport.handle_async_request(request)

        async with httpx.AsyncClient(transport=CardDown()) as partial:
            source.http = partial
            doc = (await gw.client.get("/openapi.json")).json()
        assert doc["x-unavailable-services"] == ["card"]
        assert "/card/v1/things" not in doc["paths"] and "/review/v1/things" in doc["paths"]
        source.http = working
        doc = (await gw.client.get("/openapi.json")).json()
        assert "x-unavailable-services" not in doc and "/card/v1/things" in doc["paths"]

    def test_merging_the_committed_service_documents(self):
        docs = {n: json.loads((OUT / f"{n}.json").read_text()) for n in ("registration", "contribution", "card", "review")}
        merged = merged_openapi(docs)
        service_paths = {p for d in docs.values() for p in d["paths"] if not p.startswith(("/healthz", "/readyz"))}
        assert service_paths <= set(merged["paths"])
        refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(merged)))
        assert refs <= set(merged["components"]["schemas"]), refs - set(merged["components"]["schemas"])
        for item in merged["paths"].values():
            for op in item.values():
                if isinstance(op, dict) and "responses" in op and "security" not in op:
                    assert "401" in op["responses"]


class TestCors:
    async def test_preflight_for_a_configured_origin(self, make_gateway):
        gw = await make_gateway(cors_origins="https://m.example.cn, https://w.example.cn")
        r = await gw.client.options("/registration/v1/me", headers={
            "Origin": "https://m.example.cn", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Idempotency-Key"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://m.example.cn"
        r = await gw.client.options("/registration/v1/me", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers

    async def test_no_cors_by_default(self, gw):
        r = await gw.client.get("/registration/v1/me", headers={"Origin": "https://m.example.cn"})
        assert "access-control-allow-origin" not in r.headers
