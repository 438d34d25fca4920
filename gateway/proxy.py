"""Forwarding: authenticate, limit, sign the principal, send the request on and stream the answer.

Plain ASGI. A request body (at most GATEWAY_MAX_BODY_BYTES) is read whole within the client's
body deadline before the service is contacted; the answer is streamed back. Errors are the
kernel's problem+json documents.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import (
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RouteNotFound,
    TokenError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.issuers import IssuerRegistry
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimits
from gateway.tokens import bearer_token, verify_token
from gateway.upstream import Upstream, UpstreamError
from services.common.context import request_id_var
from services.common.errors import DomainError, MalformedBody, render_domain_error
from services.common.identifiers import ascii_digits
from services.common.principal import PRINCIPAL_TTL_SECONDS, encode_principal

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
# A signed principal is reused while it has at least this much of its lifetime left (and never at or past
# the token's exp), so a service always receives one with time to spare for its own checks.
PRINCIPAL_REUSE_MARGIN_SECONDS = 20


class ClientDisconnected(Exception):
    """The client went away before its body was read."""


@dataclass
class Forwarder:
    """Everything a forwarded request needs."""

    upstreams: dict[str, str]
    upstream: Upstream
    registry: Callable[[], IssuerRegistry]
    # (kid, key) the principal is signed with now: the signing key file is re-read when it changes.
    signer: Callable[[], tuple[str, Any]]
    limits: RateLimits
    metrics: GatewayMetrics
    now: Callable[[], float]
    timeout: float
    max_body_bytes: int
    client_body_timeout: float
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
            self.metrics.answered(service, scope["method"], status["code"], time.perf_counter() - started)

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
        signed: str | None = None
        if token is not None:
            now = self.now()
            verified = await verify_token(token, registry=self.registry(), now=now)
            principal = verified.principal
            retry = await self.limits.check("principal", f"{principal['issuer']}:{principal['sub']}")
            if retry is not None:
                self.metrics.rate_limited.labels("principal").inc()
                raise RateLimited(headers={"Retry-After": str(retry)}, params={"retry_after": retry})
            kid, key = self.signer()
            # Kept per signing key: once the key is switched, every principal is signed afresh with the new one.
            slot = f"{service} {kid}"
            signed = verified.signed_for(slot, now)
            if signed is None:
                issued = int(now)
                signed = encode_principal(principal, audience=service, private_key_pem=key, now=issued, kid=kid)
                verified.keep_signed(slot, signed, until=issued + PRINCIPAL_TTL_SECONDS - PRINCIPAL_REUSE_MARGIN_SECONDS)

        content_type = (_header(headers, b"content-type") or "").split(";", 1)[0].strip().lower()
        upload = content_type == "multipart/form-data"
        max_bytes = self.max_upload_bytes if upload else self.max_body_bytes
        length_header = _header(headers, b"content-length")
        length: int | None = None
        if length_header is not None:
            if not ascii_digits(length_header):
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
        if signed is not None:
            out.append((b"x-principal", signed.encode()))
        body = b""
        if (length is not None and length > 0) or chunked:
            # Read whole (at most GATEWAY_MAX_BODY_BYTES) before a service is contacted: a slow client is
            # the gateway's to answer (408), never holds a service's connection, and the upstream
            # timeout counts from when the request has been sent.
            body = await self._body(receive, max_bytes, self.upload_timeout if upload else self.client_body_timeout)

        try:
            async with asyncio.timeout(self.upload_timeout if upload else self.timeout):
                response = await self.upstream.request(service, scope["method"].encode(), _target(scope), out, body)
        except TimeoutError as exc:
            self.metrics.upstream_errors.labels(service, "timeout").inc()
            log.warning("upstream %s timed out", service)
            raise UpstreamTimeout(params={"service": service}) from exc
        except UpstreamError as exc:
            self.metrics.upstream_errors.labels(service, "unavailable").inc()
            log.warning("upstream %s unavailable: %s", service, exc)
            raise UpstreamUnavailable(params={"service": service}, headers={"Retry-After": "1"}) from exc
        try:
            answer = [(k, v) for k, v in response.headers if k not in DROPPED_RESPONSE]
            await send({"type": "http.response.start", "status": response.status, "headers": answer})
            async for chunk in response.body(self.timeout):
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, UpstreamError) as exc:
            # Headers are out: nothing left but to cut the answer short (the client sees an incomplete body).
            log.warning("upstream %s failed mid-answer: %s", service, type(exc).__name__)
            self.metrics.upstream_errors.labels(service, "broken").inc()
        finally:
            await response.release()

    async def _body(self, receive: Receive, max_bytes: int, deadline: float) -> bytes:
        """The client's whole body, within the client body deadline and the size limit."""
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnected()
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > max_bytes:
                        raise PayloadTooLarge(params={"max_bytes": max_bytes})
                    if chunk:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError as exc:
            self.metrics.client_timeouts.inc()
            raise RequestTimeout() from exc
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

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


def _target(scope: Scope) -> bytes:
    """The request target as the client sent it: raw path and query, never re-encoded."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]  # some servers put the query in raw_path
    query: bytes = scope.get("query_string") or b""
    return raw + b"?" + query if query else raw


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None

