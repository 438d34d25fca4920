"""Plain ASGI middleware (Starlette's base HTTP middleware class breaks context variables and streaming)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.context import request_id_var

access_log = logging.getLogger("socialsec.access")
error_log = logging.getLogger("socialsec.errors")
_RID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Accepts or creates X-Request-ID, echoes it, and writes one access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _RID_RE.match(candidate):
                    rid = candidate
                break
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["started"] = True
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # The traceback goes to the log (which masks id numbers), never to the client.
            error_log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not status_holder["started"]:
                await _send_internal_error(scope, send_wrapper, rid)
        finally:
            path = scope.get("path", "")
            if not path.startswith(("/healthz", "/readyz", "/internal/")):
                access_log.info(
                    "%s %s %s",
                    scope.get("method"),
                    path,
                    status_holder["status"],
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status_holder["status"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": rid,
                    },
                )
            request_id_var.reset(token)


async def _send_internal_error(scope: Scope, send: Send, rid: str) -> None:
    """A 500 problem document in the caller's language."""
    from services.common.errors import InternalError

    accept = ""
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            accept = value.decode("latin-1").lower()
    title = InternalError.title_en if accept.startswith("en") else InternalError.title_zh
    body = json.dumps(
        {"type": "https://socialsec.example/problems/internal_error", "title": title, "status": 500,
         "detail": title, "code": InternalError.code, "errors": [], "request_id": rid},
        ensure_ascii=False,
    ).encode()
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_JSON_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Utf8JsonMiddleware:
    """JSON here is UTF-8 (RFC 8259): a JSON body in UTF-16 or UTF-32, or with invalid
    UTF-8, is answered 400 `malformed_body` before any route sees it (Python's
    `json.loads` would otherwise detect and accept those encodings)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _JSON_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = ""
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        if not _is_json(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not _utf8_json_text(body):
            from starlette.requests import Request

            from services.common.errors import MalformedBody, render_domain_error

            err = MalformedBody(detail_zh="JSON 请求体应使用 UTF-8 编码", detail_en="A JSON body must be encoded in UTF-8")
            await render_domain_error(Request(scope), err)(scope, receive, send)
            return
        await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)


def _utf8_json_text(body: bytes) -> bool:
    """True for UTF-8 (a leading byte-order mark tolerated) without NUL bytes."""
    if b"\x00" in body:
        return False
    try:
        body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive callable that hands the buffered message back, then defers to the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
