"""The route class every service router uses: Idempotency-Key on every POST, and one
retry of a refusal that a lagging read model may explain.

`create_service_app` refuses to start when a POST route is not a `ServiceRoute`, so a
new route cannot forget either.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from services.common import idempotency
from services.common.errors import DomainError


def idempotency_key_required(description: str) -> dict[str, Any]:
    """`openapi_extra=` of a POST route on which Idempotency-Key is mandatory (opening a
    payment, a refund): the document says the header is required, and `ServiceRoute`
    answers 400 `idempotency_key_required` when it is missing."""
    return {"parameters": [{
        "name": idempotency.HEADER, "in": "header", "required": True, "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"},
    }]}


def _requires_key(openapi_extra: Mapping[str, Any] | None) -> bool:
    parameters = (openapi_extra or {}).get("parameters") or ()
    return any(p.get("in") == "header" and p.get("name") == idempotency.HEADER and p.get("required") for p in parameters)


_REQUEST_PARAM = "_idempotency_request"


def _requiring_key(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The endpoint, refusing with 400 `idempotency_key_required` when the header is missing.

    The check runs where the route body starts, after the principal and the input were
    accepted: a missing key on an unauthenticated or invalid request is still 401 or 422.
    """
    signature = inspect.signature(endpoint, eval_str=True)
    params = list(signature.parameters.values())
    # FastAPI hands the request to one parameter only: the endpoint's own, if it has one.
    own = next((p.name for p in params if p.annotation is Request), None)
    name = own or _REQUEST_PARAM
    if own is None:
        params.append(inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request))

    @functools.wraps(endpoint)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        request: Request = kwargs[name] if own else kwargs.pop(name)
        if request.headers.get(idempotency.HEADER) is None:
            raise idempotency.IdempotencyKeyRequired()
        return await endpoint(*args, **kwargs)

    checked.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return checked


class ServiceRoute(APIRoute):
    """An API route with the kernel's request rules.

    Idempotency: every POST gets `idempotency.claim_key` as a dependency. With an
    `Idempotency-Key` header the key is claimed in the request's own transaction
    before the route runs; the answer is stored in that same transaction when the
    route returns, so the effect and its stored answer commit together. The same key
    and body replays the stored answer; a refusal is answered, not stored (the claim
    rolls back with the refusal, or is released when the refusal keeps its changes).

    A route whose `openapi_extra` declares the Idempotency-Key header required (see
    `idempotency_key_required`) refuses a request without one with 400
    `idempotency_key_required`.

    Read models: a citizen who has just enrolled in registration and at once declares
    in contribution must not be told "not enrolled" because contribution's consumer
    has not polled yet. When a route refuses with a `DomainError` that names its
    `read_model` (the producer whose events it was read from), the request's
    transaction has already rolled back; the consumer of that producer applies what
    the producer has published up to now, and the whole route runs again with a new
    session. A refusal that stands after the catch-up is the answer; a producer that
    cannot be reached within `<SERVICE>_CATCH_UP_TIMEOUT_SECONDS` leaves the first
    refusal standing.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in (kwargs.get("methods") or ())}
        if "POST" in methods:
            deps: list[DependsParam] = list(kwargs.get("dependencies") or ())
            if not any(getattr(d, "dependency", None) is idempotency.claim_key for d in deps):
                deps.insert(0, Depends(idempotency.claim_key))
            kwargs["dependencies"] = deps
            if _requires_key(kwargs.get("openapi_extra")):
                endpoint = _requiring_key(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def attempt(request: Request) -> Response:
            # FastAPI closes the route's function-scoped dependencies (the
            # `DbSession`) when the whole route handler returns; each attempt gets
            # its own exit stack instead, so the first attempt's transaction is
            # rolled back and its connection given back before the catch-up (on
            # SQLite the consumer could not write while it is held), and the
            # answer is stored before the transaction commits.
            outer = request.scope.get("fastapi_function_astack")
            try:
                async with AsyncExitStack() as stack:
                    request.scope["fastapi_function_astack"] = stack
                    try:
                        response = await handler(request)
                    except DomainError as exc:
                        if exc.keeps_changes:
                            await idempotency.release_claim(request)
                        raise
                    await idempotency.record_answer(request, response)
                    return response
            except idempotency.Replay as replay:
                return replay.response
            except DomainError:
                # A refusal is answered, not stored: a claim that a mid-route commit made
                # durable is freed. An unexpected failure leaves it to its lease (as a crash would).
                await idempotency.forget_committed_claim(request)
                raise
            finally:
                request.scope["fastapi_function_astack"] = outer

        async def route(request: Request) -> Response:
            try:
                return await attempt(request)
            except DomainError as exc:
                consumers: Sequence[Any] = getattr(request.app.state, "feed_consumers", [])
                consumer = next((c for c in consumers if exc.read_model and c.producer == exc.read_model), None)
                if consumer is None:
                    raise
                if not await consumer.catch_up(request.app.state.settings.catch_up_timeout_seconds):
                    raise
            return await attempt(request)  # the request body is cached: it is read again as it was

        return route


def api_routes(routes: Sequence[Any]) -> list[APIRoute]:
    """Every API route of an app, through the routers it includes."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif getattr(r, "original_router", None) is not None:  # an included router
            out += api_routes(r.original_router.routes)
    return out


def unguarded_post_routes(routes: Sequence[Any]) -> list[str]:
    """POST routes that are not `ServiceRoute`s (and so would ignore Idempotency-Key)."""
    return [r.path for r in api_routes(routes) if "POST" in (r.methods or ()) and not isinstance(r, ServiceRoute)]
