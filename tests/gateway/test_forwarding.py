"""Forwarding: routing, headers, bodies, upstream failures, rate limits."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from tests.gateway.conftest import bearer, sandbox_token


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestRouting:
    async def test_paths_go_unchanged_to_the_owning_service(self, gw):
        for service in ("registration", "contribution", "card", "review"):
            r = await gw.client.get(f"/{service}/v1/some/thing?limit=5&cursor=a%2Fb")
            assert r.status_code == 200
            assert r.json()["service"] == service
            seen = gw.upstreams[service].seen[-1]
            assert seen["path"] == f"/{service}/v1/some/thing"
            assert seen["query"] == "limit=5&cursor=a%2Fb"

    async def test_internal_routes_are_404(self, gw):
        for path in ("/internal/v1/events", "/internal/v1/events?after=0", "/registration/../internal/v1/events",
                     "/registration/%2e%2e/internal/v1/events", "/nowhere/v1/x", "/"):
            r = await gw.client.get(path, headers={"Authorization": "Bearer whatever"})
            assert r.status_code == 404, path
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "not_found"
        assert not any(up.seen for up in gw.upstreams.values())

    async def test_dot_segments_never_reach_a_service(self, gw):
        # httpx would normalize these away: speak ASGI directly, as a server hands over a raw request line.
        for raw in (b"/registration/../internal/v1/events", b"/registration/%2e%2e/internal/v1/events",
                    b"/card/./v1/me"):
            from urllib.parse import unquote

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": unquote(raw.decode()), "raw_path": raw, "query_string": b"",
                     "headers": [(b"host", b"gateway")], "client": ("203.0.113.7", 1), "server": ("gateway", 80)}
            messages = []

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                messages.append(message)

            await gw.app(scope, receive, send)
            assert messages[0]["status"] == 404, raw
        assert not any(up.seen for up in gw.upstreams.values())

    async def test_post_body_and_status_pass_through(self, gw):
        payload = {"name": "王芳", "monthly_wage_fen": 800000}
        r = await gw.client.post("/registration/v1/employers", json=payload,
                                 headers={**bearer(sandbox_token()), "Idempotency-Key": "k-1"})
        assert r.status_code == 201
        seen = gw.upstreams["registration"].seen[-1]
        assert json.loads(seen["body"]) == payload
        assert seen["headers"]["idempotency-key"] == "k-1"
        assert seen["headers"]["content-type"] == "application/json"


class TestHeaders:
    async def test_forged_principal_from_a_client_is_dropped(self, gw):
        r = await gw.client.get("/card/v1/me", headers={"X-Principal": "eyJhbGciOiJFUzI1NiJ9.forged.sig"})
        assert r.status_code == 200
        assert "x-principal" not in gw.upstreams["card"].seen[-1]["headers"]

    async def test_forged_principal_is_replaced_by_the_gateways_own(self, gw):
        r = await gw.client.get("/card/v1/me", headers={**bearer(sandbox_token()), "X-Principal": "forged"})
        assert r.status_code == 200
        seen = gw.upstreams["card"].seen[-1]
        assert len(seen["header_list"]) == 1 and seen["header_list"][0] != "forged"

    async def test_platform_token_is_not_passed_on(self, gw):
        await gw.client.get("/card/v1/me", headers=bearer(sandbox_token()))
        assert "authorization" not in gw.upstreams["card"].seen[-1]["headers"]

    async def test_request_id_is_forwarded_and_echoed(self, gw):
        r = await gw.client.get("/card/v1/me", headers={"X-Request-ID": "abc-123"})
        assert r.headers.get_list("x-request-id") == ["abc-123"]
        assert gw.upstreams["card"].seen[-1]["headers"]["x-request-id"] == "abc-123"
        r = await gw.client.get("/card/v1/me")
        rid = r.headers["x-request-id"]
        assert len(rid) == 32 and gw.upstreams["card"].seen[-1]["headers"]["x-request-id"] == rid

    async def test_forwarded_for_is_the_peer_not_what_the_client_claims(self, gw):
        await gw.client.get("/card/v1/me", headers={"X-Forwarded-For": "10.9.9.9"})
        assert gw.upstreams["card"].seen[-1]["headers"]["x-forwarded-for"] == "203.0.113.7"

    async def test_forwarded_for_behind_a_trusted_proxy(self, make_gateway):
        gw = await make_gateway(trusted_proxies="203.0.113.0/24", client_address="203.0.113.7")
        await gw.client.get("/card/v1/me", headers={"X-Forwarded-For": "198.51.100.20"})
        assert gw.upstreams["card"].seen[-1]["headers"]["x-forwarded-for"] == "198.51.100.20, 203.0.113.7"

    async def test_hop_by_hop_headers_are_not_passed_back(self, gw):
        r = await gw.client.get("/card/v1/me")
        assert r.headers["x-upstream"] == "card"
        assert "connection" not in r.headers


class TestBodies:
    async def test_over_the_limit_by_content_length_is_413(self, gw):
        r = await gw.client.post("/registration/v1/employers", content=b"x" * (1_048_576 + 1),
                                 headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        assert not gw.upstreams["registration"].seen

    async def test_over_the_limit_while_streaming_is_413(self, make_gateway):
        gw = await make_gateway(max_body_bytes=1000)

        async def chunks():
            for _ in range(20):
                yield b"y" * 100

        r = await gw.client.post("/registration/v1/employers", content=chunks())
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"

    async def test_a_spreadsheet_upload_may_be_larger(self, make_gateway):
        gw = await make_gateway(max_body_bytes=1000, max_upload_bytes=5000)
        r = await gw.client.post("/registration/v1/upload", files={"file": ("a.csv", b"z" * 3000)})
        assert r.status_code == 201 and r.json()["length"] > 3000
        r = await gw.client.post("/registration/v1/upload", files={"file": ("a.csv", b"z" * 6000)})
        assert r.status_code == 413 and r.json()["max_bytes"] == 5000
        r = await gw.client.post("/registration/v1/upload", content=b"z" * 3000,
                                 headers={"Content-Type": "text/csv"})
        assert r.status_code == 413 and r.json()["max_bytes"] == 1000

    async def test_streamed_body_under_the_limit_arrives_whole(self, gw):
        async def chunks():
            for i in range(10):
                yield f"{i:03d}".encode() * 100

        r = await gw.client.post("/registration/v1/upload", content=chunks())
        assert r.status_code == 201 and r.json()["length"] == 3000


class TestUpstreamFailures:
    async def test_upstream_down_is_503_within_the_timeout(self, make_gateway):
        gw = await make_gateway(registration_url=f"http://127.0.0.1:{closed_port()}", upstream_timeout_seconds=2)
        started = time.monotonic()
        r = await gw.client.get("/registration/v1/me", headers=bearer(sandbox_token()))
        assert time.monotonic() - started < 2
        assert r.status_code == 503 and r.json()["code"] == "upstream_unavailable"
        assert r.json()["service"] == "registration"
        assert 'gateway_upstream_errors_total{kind="unavailable",service="registration"} 1.0' in gw.metrics_text()

    async def test_slow_upstream_is_504(self, make_gateway):
        gw = await make_gateway(upstream_timeout_seconds=0.2)
        started = time.monotonic()
        r = await gw.client.get("/card/v1/slow")
        assert time.monotonic() - started < 2
        assert r.status_code == 504 and r.json()["code"] == "upstream_timeout"
        gw.upstreams["card"].release.set()


class TestRateLimits:
    async def test_per_principal_limit_gives_429_with_retry_after(self, make_gateway):
        gw = await make_gateway(rate_limit_per_principal="3/minute")
        token = sandbox_token()
        codes = [(await gw.client.get("/card/v1/me", headers=bearer(token))).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await gw.client.get("/card/v1/me", headers=bearer(token))
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # another person is not affected
        other = sandbox_token("sandbox-wechat")
        assert (await gw.client.get("/card/v1/me", headers=bearer(other))).status_code == 200
        assert 'gateway_rate_limited_total{scope="principal"} 2.0' in gw.metrics_text()

    async def test_per_address_limit(self, make_gateway):
        gw = await make_gateway(rate_limit_per_address="2/minute")
        codes = [(await gw.client.get("/card/v1/me")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = await gw.client.get("/readyz")  # the gateway's own fan-out routes count too
        assert r.status_code == 429 and r.headers["retry-after"]
        assert (await gw.client.get("/healthz")).status_code == 200  # liveness never limited

    async def test_metrics_count_requests_by_service_and_status(self, gw):
        await gw.client.get("/card/v1/me")
        await gw.client.get("/card/v1/me", headers={"Authorization": "Bearer x.y.z"})
        text = gw.metrics_text()
        assert 'gateway_requests_total{method="GET",service="card",status="200"} 1.0' in text
        assert 'gateway_requests_total{method="GET",service="card",status="401"} 1.0' in text
        assert 'gateway_request_duration_seconds_count{service="card"} 2.0' in text


@pytest.fixture
def redis_url(tmp_path):
    """A throw-away redis-server on a loopback port (skipped where Redis is not installed)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    import redis

    port = closed_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:  # until it accepts connections (bounded)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TestRedisStorage:
    async def test_limits_shared_through_redis(self, make_gateway, redis_url):
        first = await make_gateway(rate_limit_storage=redis_url, rate_limit_per_address="3/minute")
        second = await make_gateway(rate_limit_storage=redis_url, rate_limit_per_address="3/minute")
        codes = [(await gw.client.get("/card/v1/me")).status_code for gw in (first, second, first, second)]
        assert codes == [200, 200, 200, 429]  # two gateway replicas share one budget

    async def test_storage_down_lets_traffic_through(self, make_gateway):
        gw = await make_gateway(rate_limit_storage=f"redis://127.0.0.1:{closed_port()}/0", rate_limit_per_address="1/minute")
        codes = [(await gw.client.get("/card/v1/me")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]


async def raw_exchange(base_url: str, head: bytes, pieces: list[tuple[float, bytes]]) -> tuple[int, dict[str, str], bytes]:
    """Speak HTTP/1.1 to a real server: the head, then each body piece after its pause; read the answer."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
        for pause, piece in pieces:
            done, _ = await asyncio.wait({answer}, timeout=pause)
            if done:
                break  # answered already (the gateway gave up on the body)
            writer.write(piece)
            await writer.drain()
        head_bytes = await asyncio.wait_for(answer, timeout=30)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout=30)
        return status, headers, body
    finally:
        writer.close()


class TestSlowClients:
    """A client that stalls while sending its body is the gateway's to answer, not a service's."""

    HEAD = (b"POST /contribution/v1/me/declarations HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n")

    async def test_a_stalled_body_is_408_from_the_gateway(self, make_gateway):
        from tests.gateway.conftest import serve

        gw = await make_gateway(client_body_timeout_seconds=0.5, upstream_timeout_seconds=30)
        url, stop = await serve(gw.app)
        try:
            for language, title in ((b"", "请求发送超时，请重试"), (b"Accept-Language: en\r\n", "The request body did not arrive in time")):
                status, headers, body = await raw_exchange(
                    url, self.HEAD + bearer_line() + language + b"\r\n", [(0, b'{"category'), (10, b"x" * 90)])
                problem = json.loads(body)
                assert status == 408, body
                assert headers["content-type"].startswith("application/problem+json")
                assert problem["code"] == "request_timeout" and problem["title"] == title
                assert problem["request_id"] == headers["x-request-id"]
                assert headers.get("connection") == "close"
            assert not gw.upstreams["contribution"].seen  # the service never heard of it
            assert "gateway_client_body_timeouts_total 2.0" in gw.metrics_text()
            assert 'status="408"' in gw.metrics_text()
        finally:
            await stop()

    async def test_the_upstream_timeout_starts_once_the_request_is_sent(self, make_gateway):
        from tests.gateway.conftest import serve

        # The body takes longer to arrive than the service is given to answer: still answered.
        gw = await make_gateway(client_body_timeout_seconds=10, upstream_timeout_seconds=0.5)
        url, stop = await serve(gw.app)
        try:
            body = b'{"category": "flexible", "pad": "' + b"p" * 65 + b'"}'
            assert len(body) == 100
            status, _, answer = await raw_exchange(
                url, self.HEAD + bearer_line() + b"\r\n", [(0, body[:10]), (1.0, body[10:])])
            assert status == 201, answer
            assert json.loads(answer)["length"] == 100
            assert gw.upstreams["contribution"].seen[-1]["body"].encode() == body
        finally:
            await stop()


def bearer_line() -> bytes:
    return f"Authorization: Bearer {sandbox_token()}\r\n".encode()
