"""Idempotency-Key on POSTs: same key and body replays the first answer; the database
enforces one effect per (principal, key) even for concurrent requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.common.errors import DomainError
from services.common.models import IdempotencyKey

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
# A claim is committed before its answer only by an action in two transactions (opening a
# payment commits before calling the platform); one still unanswered after this long was
# left by a crash, and the key may be used again.
IN_PROGRESS_LEASE = timedelta(minutes=5)


class IdempotencyKeyRequired(DomainError):
    status = 400
    code = "idempotency_key_required"
    title_zh = "此操作需要 Idempotency-Key 请求头"
    title_en = "This operation requires an Idempotency-Key header"


class IdempotencyKeyInvalid(DomainError):
    status = 400
    code = "idempotency_key_invalid"
    title_zh = "Idempotency-Key 无效（1-200 个可见字符）"
    title_en = "Invalid Idempotency-Key (1-200 visible characters)"


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency_key_reused"
    title_zh = "该 Idempotency-Key 已用于另一个请求"
    title_en = "This Idempotency-Key was used for a different request"


class IdempotencyInProgress(DomainError):
    status = 409
    code = "idempotency_request_in_progress"
    title_zh = "相同请求正在处理中"
    title_en = "The same request is still being processed"


async def request_fingerprint(request: Request) -> str:
    """Hash of method, path and body (JSON canonicalized, so key order does not matter)."""
    body = await request.body()
    try:
        canon = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
    except ValueError:
        canon = body
    h = hashlib.sha256()
    h.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
    h.update(canon)
    return h.hexdigest()


def _replay(row: IdempotencyKey) -> JSONResponse:
    resp = JSONResponse(json.loads(row.response_body or "null"), status_code=row.status_code or 200)
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


async def run_idempotent(
    session: AsyncSession,
    request: Request,
    *,
    scope: str,
    action: Callable[[], Awaitable[Any]],
    status_code: int = 201,
    required: bool = False,
) -> JSONResponse:
    """Run `action` once per (scope, Idempotency-Key); store and replay its answer.

    The key is claimed by an INSERT before the action, in the same transaction: a
    concurrent request with the same key waits on the unique index, then replays.
    """
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise IdempotencyKeyRequired()
        result = await action()
        return JSONResponse(jsonable_encoder(result), status_code=status_code)
    if not (1 <= len(key) <= 200) or not key.isprintable():
        raise IdempotencyKeyInvalid()
    fingerprint = await request_fingerprint(request)
    clock = request.app.state.clock
    now = clock.now()

    for _attempt in range(3):
        row = IdempotencyKey(
            scope=scope, key=key, request_hash=fingerprint, created_at=now, expires_at=now + TTL
        )
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            existing = (
                await session.execute(
                    select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
                )
            ).scalar_one_or_none()
            if existing is None:
                continue
            if aware(existing.expires_at) <= now:
                await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))
                await session.flush()
                continue
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused() from None
            if existing.status_code is None:
                if aware(existing.created_at) + IN_PROGRESS_LEASE <= now:  # its request never came back
                    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))
                    await session.flush()
                    continue
                raise IdempotencyInProgress() from None
            return _replay(existing)
        break
    try:
        result = await action()
    except DomainError as exc:
        if exc.keeps_changes:  # the transaction commits: the claim must not, so the key stays usable
            await session.delete(row)
            await session.flush()
        raise
    body = jsonable_encoder(result)
    row.status_code = status_code
    row.response_body = json.dumps(body, ensure_ascii=False)
    await session.flush()
    return JSONResponse(body, status_code=status_code)
