"""Idempotency-Key on every POST: the same key and body replays the first answer; the
database enforces one effect per (principal, key) even for concurrent requests.

`routing.ServiceRoute` applies it to every POST route: `claim_key` (a dependency)
claims the key in the request's transaction before the route runs, `record_answer`
stores the answer in the same transaction when the route returns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy import delete, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware, request_clock
from services.common.db import DbSession
from services.common.errors import DomainError
from services.common.models import IdempotencyKey
from services.common.pii import cipher
from services.common.principal import optional_principal

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
_CLAIM = "socialsec.idempotency_claim"
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


def _multipart_boundary(content_type: str) -> bytes | None:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1")
    return None


async def request_fingerprint(request: Request) -> str:
    """Hash of method, path and body (JSON canonicalized, so key order does not matter)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    boundary = _multipart_boundary(content_type)
    if boundary:
        # The same file sent again comes in a new envelope: the boundary is not part of the request.
        canon = body.replace(boundary, b"\x00boundary\x00")
    else:
        try:
            canon = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
        except ValueError:
            canon = body
    h = hashlib.sha256()
    h.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
    h.update(canon)
    return h.hexdigest()


class Replay(Exception):  # noqa: N818 - not an error: the stored answer, given again
    """The key was used before with the same request: its stored answer."""

    def __init__(self, response: Response) -> None:
        super().__init__("replay")
        self.response = response


@dataclass
class Claim:
    """A key claimed by this request, in its session."""

    session: AsyncSession
    row: IdempotencyKey
    committed: bool = False  # the route committed mid-way (the claim outlives a later failure)
    answered: bool = False


# Stored answers are encrypted with the PII key: an answer may hold what is shown once
# (a webhook secret) or personal data, and must not sit readable in the table for 24 h.
_SEALED = "enc:"


def _seal(text: str) -> str:
    return _SEALED + cipher().encrypt(text)


def _unseal(stored: str | None) -> str:
    if not stored:
        return ""
    return cipher().decrypt(stored[len(_SEALED):]) if stored.startswith(_SEALED) else stored


def _replay(row: IdempotencyKey) -> Response:
    body = _unseal(row.response_body).encode()
    media = "application/json" if body else None
    resp = Response(body, status_code=row.status_code or 200, media_type=media)
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


async def claim_key(request: Request, session: DbSession) -> None:
    """Claim (principal, Idempotency-Key) for this POST, or replay what that key answered.

    The key is claimed by an INSERT in the request's transaction: a concurrent request
    with the same key waits on the unique index, then replays. (Read from the headers
    rather than declared as a parameter: a route that requires the key documents it.)
    """
    key = request.headers.get(HEADER)
    if key is None:
        return
    if not (1 <= len(key) <= 200) or not key.isprintable() or not key.isascii():
        raise IdempotencyKeyInvalid()
    principal = optional_principal(request)
    scope = principal.actor_id if principal is not None else "anonymous"
    fingerprint = await request_fingerprint(request)
    now = request_clock(request).now()
    for _attempt in range(3):
        row = IdempotencyKey(scope=scope, key=key, request_hash=fingerprint, created_at=now, expires_at=now + TTL)
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
            raise Replay(_replay(existing)) from None
        claim = Claim(session=session, row=row)

        def _committed(_session: object, claim: Claim = claim) -> None:
            claim.committed = True

        event.listen(session.sync_session, "after_commit", _committed)
        request.scope[_CLAIM] = claim
        return
    raise IdempotencyInProgress()


async def record_answer(request: Request, response: Response) -> None:
    """Store the route's answer with the claim, in the transaction about to commit."""
    claim: Claim | None = request.scope.get(_CLAIM)
    if claim is None or claim.answered:
        return
    body = getattr(response, "body", None)
    if not isinstance(body, bytes | bytearray | memoryview):
        # A streamed answer cannot be stored: release the key rather than hold it.
        await release_claim(request)
        return
    claim.row.status_code = response.status_code
    claim.row.response_body = _seal(bytes(body).decode("utf-8", errors="replace"))
    await claim.session.flush()
    claim.answered = True


async def release_claim(request: Request) -> None:
    """A refusal that keeps its changes commits: the claim must not, so the key stays usable."""
    claim: Claim | None = request.scope.pop(_CLAIM, None)
    if claim is None:
        return
    await claim.session.delete(claim.row)
    await claim.session.flush()


async def forget_committed_claim(request: Request) -> None:
    """After a failure, free a claim that a mid-route commit had already made durable.

    Normally the claim rolls back with the failed request; a route that commits part
    of its work before an outside call (opening a payment) has made the claim durable,
    and without this the key would answer "in progress" until it expires.
    """
    claim: Claim | None = request.scope.pop(_CLAIM, None)
    if claim is None or not claim.committed or claim.answered:
        return
    db = request.app.state.db
    async with db.sessionmaker() as session:
        await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.id == claim.row.id, IdempotencyKey.status_code.is_(None))
        )
        await session.commit()
