"""Forwarding: authenticate, limit, sign the principal, stream the request and the answer.

Plain ASGI: the gateway never buffers a body it does not have to, and its errors are
the kernel's problem+json documents.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import (
    PayloadTooLarge,
    RateLimited,
    RouteNotFound,
    TokenError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.issuers import IssuerRegistry
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimits
from gateway.tokens import authenticate, bearer_token
from services.common.context import request_id_var
from services.common.errors import DomainError, MalformedBody, render_domain_error
from services.common.principal import encode_principal

log = logging.getLogger("socialsec.gateway")

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade",
})
# Never passed on from the client: the gateway sets these itself (or the service must not see them).
DROPPED_REQUEST = HOP_BY_HOP | {
    b"host", b"x-principal", b"authorization", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded", b"x-real-ip", b"content-length", b"expect",
}
# The gateway's own server adds these (and the request id middleware adds X-Request-ID).
DROPPED_RESPONSE = HOP_BY_HOP | {b"x-request-id", b"date", b"server"}
BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
HTTPX_DEFAULT_HEADERS = ("accept", "accept-encoding", "user-agent")


class BodyTooLarge(Exception):
    """The client's body went past the limit while streaming."""


class ClientDisconnected(Exception):
    """The client went away before its body was read."""


@dataclass
class Forwarder:
    """Everything a forwarded request needs."""

    upstreams: dict[str, str]
    http: httpx.AsyncClient
    registry: Callable[[], IssuerRegistry]
    signing_key: Any
    limits: RateLimits
    metrics: GatewayMetrics
    now: Callable[[], float]
    timeout: float
    max_body_bytes: int
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    # multipart/form-data (spreadsheet uploads) may be larger and take longer
    max_upload_bytes: int = 21 * 1_048_576
    upload_timeout: float = 180.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send, service: str) -> None:
        started = time.perf_counter()
        status = {"code": 500}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._forward(scope, receive, tracked_send, service)
        except ClientDisconnected:
            status["code"] = 499  # the client went away mid-request (nginx's convention)
        except DomainError as exc:
            if isinstance(exc, TokenError):
                self.metrics.token_failures.labels(exc.code).inc()
            await render_domain_error(Request(scope), exc)(scope, receive, tracked_send)
        finally:
            self.metrics.requests.labels(service, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(service).observe(time.perf_counter() - started)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, service: str) -> None:
        path: str = scope["path"]
        if any(seg in (".", "..") for seg in path.split("/")):
            raise RouteNotFound()
        headers = scope["headers"]
        client, forwarded_for = self.client_address(scope)
        retry = await self.limits.check("address", client)
        if retry is not None:
            self.metrics.rate_limited.labels("address").inc()
            raise RateLimited(headers={"Retry-After": str(retry)}, params={"retry_after": retry})

        authorization = _header(headers, b"authorization")
        token = bearer_token(authorization)
        principal = None
        if token is not None:
            principal = await authenticate(token, registry=self.registry(), now=self.now())
            retry = await self.limits.check("principal", f"{principal['issuer']}:{principal['sub']}")
            if retry is not None:
                self.metrics.rate_limited.labels("principal").inc()
                raise RateLimited(headers={"Retry-After": str(retry)}, params={"retry_after": retry})

        content_type = (_header(headers, b"content-type") or "").split(";", 1)[0].strip().lower()
        upload = content_type == "multipart/form-data"
        max_bytes = self.max_upload_bytes if upload else self.max_body_bytes
        length_header = _header(headers, b"content-length")
        length: int | None = None
        if length_header is not None:
            if not length_header.isdigit():
                raise MalformedBody(detail_en="invalid Content-Length", detail_zh="Content-Length 无效")
            length = int(length_header)
            if length > max_bytes:
                raise PayloadTooLarge(params={"max_bytes": max_bytes})
        chunked = _header(headers, b"transfer-encoding") is not None
        rid = request_id_var.get() or ""

        out: list[tuple[bytes, bytes]] = [(k, v) for k, v in headers if k not in DROPPED_REQUEST]
        out.append((b"x-request-id", rid.encode()))
        out.append((b"x-forwarded-for", forwarded_for.encode()))
        out.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()))
        host = _header(headers, b"host")
        if host:
            out.append((b"x-forwarded-host", host.encode("latin-1")))
        if principal is not None:
            signed = encode_principal(principal, audience=service, private_key_pem=self.signing_key, request_id=rid, now=self.now())
            out.append((b"x-principal", signed.encode()))
        content: AsyncIterator[bytes] | None = None
        if length is not None and length > 0:
            out.append((b"content-length", str(length).encode()))
            content = self._body(receive, max_bytes)
        elif chunked or (length is None and scope["method"] not in BODYLESS):
            content = self._body(receive, max_bytes)

        request = self.http.build_request(scope["method"], self._url(scope, service), headers=out, content=content)
        sent = {k for k, _ in out}
        for name in HTTPX_DEFAULT_HEADERS:
            if name.encode() not in sent and name in request.headers:
                del request.headers[name]
        try:
            async with asyncio.timeout(self.upload_timeout if upload else self.timeout):
                response = await self.http.send(request, stream=True)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(params={"max_bytes": max_bytes}) from exc
        except ClientDisconnected:
            raise  # nobody left to answer; the upstream saw an incomplete body and drops it
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            self.metrics.upstream_errors.labels(service, "timeout").inc()
            log.warning("upstream %s timed out", service)
            raise UpstreamTimeout(params={"service": service}) from exc
        except httpx.TransportError as exc:
            if _caused_by(exc, BodyTooLarge):
                raise PayloadTooLarge(params={"max_bytes": max_bytes}) from exc
            if _caused_by(exc, ClientDisconnected):
                raise ClientDisconnected() from exc
            self.metrics.upstream_errors.labels(service, "unavailable").inc()
            log.warning("upstream %s unavailable: %s", service, type(exc).__name__)
            raise UpstreamUnavailable(params={"service": service}, headers={"Retry-After": "1"}) from exc
        try:
            answer = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in DROPPED_RESPONSE]
            await send({"type": "http.response.start", "status": response.status_code, "headers": answer})
            if response.is_stream_consumed:  # a transport that answered with the body already read
                await send({"type": "http.response.body", "body": response.content, "more_body": False})
                return
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    def _url(self, scope: Scope, service: str) -> str:
        raw = scope.get("raw_path") or scope["path"].encode()
        raw = raw.split(b"?", 1)[0]  # some servers put the query in raw_path
        url = self.upstreams[service] + raw.decode("latin-1")
        query = scope.get("query_string") or b""
        return f"{url}?{query.decode('latin-1')}" if query else url

    async def _body(self, receive: Receive, max_bytes: int) -> AsyncIterator[bytes]:
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                raise BodyTooLarge()
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    def client_address(self, scope: Scope) -> tuple[str, str]:
        """The client's address (for limits) and the X-Forwarded-For chain to pass on."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        if not self.trusted_proxies or not self._trusted(peer):
            return peer, peer  # whatever X-Forwarded-For a direct client sent is its own invention
        chain = [a.strip() for a in (_header(scope["headers"], b"x-forwarded-for") or "").split(",") if a.strip()]
        client = peer
        for address in reversed(chain):
            client = address
            if not self._trusted(address):
                break
        return client, ", ".join([*chain, peer])

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None

