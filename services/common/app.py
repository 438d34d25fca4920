"""Building a service application: the kernel wiring every service shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.clock import Clock
from services.common.db import Database
from services.common.dead_letters import dead_letters_router
from services.common.errors import (
    PROBLEM_SCHEMA,
    DomainError,
    install_error_handlers,
    problem_content,
    problem_response,
)
from services.common.events import FeedConsumer, Handler, feed_router
from services.common.jobs import BackgroundJob
from services.common.logging import configure_logging
from services.common.middleware import RequestContextMiddleware, Utf8JsonMiddleware
from services.common.migrate import upgrade_async
from services.common.nats_events import NatsEvents
from services.common.openapi_docs import document_operations
from services.common.paths import IdConvertor, MonthConvertor, is_id_parameter
from services.common.pii import configure_pii
from services.common.principal import decode_principal
from services.common.routing import unguarded_post_routes
from services.common.settings import CommonSettings, ServiceSettings
from services.common.transport import EventConsumer

log = logging.getLogger("socialsec.app")



class NotReady(DomainError):
    status = 503
    code = "not_ready"
    title_zh = "服务暂不可用"
    title_en = "Service not ready"


async def event_transport_state(app: FastAPI) -> dict[str, Any]:
    """The transport, its connection (NATS), the relay's backlog and each consumer's lag (events waiting)."""
    common: CommonSettings = app.state.common
    nats_events: NatsEvents | None = getattr(app.state, "nats_events", None)
    out: dict[str, Any] = {"transport": common.event_transport, "connection": None, "relay_backlog": None, "consumers": []}
    if nats_events is not None:
        out["connection"] = "ok" if nats_events.connected else "down"
        if nats_events.relay is not None:
            with contextlib.suppress(Exception):
                out["relay_backlog"] = await asyncio.wait_for(nats_events.relay.backlog(), timeout=2.0)
    for c in getattr(app.state, "feed_consumers", []):
        entry: dict[str, Any] = {"producer": c.producer, "status": "ok", "lag": None}
        try:
            entry["lag"] = await asyncio.wait_for(c.lag(), timeout=2.0)
        except Exception as exc:
            entry["status"] = "unreachable"
            entry["error"] = type(exc).__name__
        out["consumers"].append(entry)
    return out


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: the database answers (503 otherwise); the event transport and its lag are reported, "
        "`degraded` when NATS or a producer's feed cannot be reached",
        responses={503: {"description": "not ready"}},
    )
    async def readyz(request: Request) -> Any:
        try:
            await asyncio.wait_for(request.app.state.db.ping(), timeout=2.0)
        except Exception:
            return problem_response(request, status=503, code=NotReady.code, title=NotReady.title_en)
        events = await event_transport_state(request.app)
        degraded = events["connection"] == "down" or any(c["status"] != "ok" for c in events["consumers"])
        return {"status": "degraded" if degraded else "ready", "database": "ok", "events": events}

    return router


def metrics_router() -> APIRouter:
    """`/metrics` (Prometheus) on the service's own port, for the monitoring network (not routed by the gateway)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    *,
    settings: ServiceSettings,
    common: CommonSettings | None = None,
    title: str,
    description: str,
    routers: Iterable[APIRouter],
    consumers: Mapping[str, Mapping[str, Handler]] | None = None,
    background_jobs: Iterable[BackgroundJob] = (),
    clock: Clock | None = None,
    version: str = "1.0.0",
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """A FastAPI app with the kernel: errors, request ids, principal verification,
    database, health, event feed, consumers and migrations on start."""
    common = common or CommonSettings()
    name = settings.service_name
    configure_logging(name, common.log_level, common.log_json)
    configure_pii(common.pii_key_bytes(), common.pii_hash_key_bytes())
    gateway_keys = common.gateway_key_set()
    db = Database(settings.resolved_database_url(common), echo=settings.db_echo, pool_size=settings.db_pool_size)
    consumer_handlers = dict(consumers or {})
    jobs = list(background_jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            if db.url.startswith("sqlite"):
                common.var_dir.mkdir(parents=True, exist_ok=True)
            await upgrade_async(name, db.url)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        feed_consumers: list[EventConsumer] = []
        nats_events: NatsEvents | None = None
        if settings.consumers_enabled and common.event_transport == "nats":
            nats_events = NatsEvents(common=common, service=name, db=db, consumers=consumer_handlers)
            feed_consumers.extend(nats_events.consumers)
            tasks.append(asyncio.create_task(nats_events.run(stop), name="nats-events"))
            for job in jobs:
                tasks.append(asyncio.create_task(job(app, stop), name=getattr(job, "__name__", "job")))
        elif settings.consumers_enabled:
            urls = settings.producer_urls()
            for producer, handlers in consumer_handlers.items():
                url = urls.get(producer)
                if not url:
                    log.warning("no %s_%s_URL: not consuming %s events", name.upper(), producer.upper(), producer)
                    continue
                feed = FeedConsumer(
                    producer=producer, base_url=url, db=db, handlers=handlers,
                    token=common.internal_token_value(), batch_size=settings.feed_batch_size,
                    interval=settings.poll_interval_seconds, max_attempts=common.event_max_attempts, service=name,
                )
                feed_consumers.append(feed)
                tasks.append(asyncio.create_task(feed.run(stop), name=f"consume-{producer}"))
            for job in jobs:
                tasks.append(asyncio.create_task(job(app, stop), name=getattr(job, "__name__", "job")))
        app.state.feed_consumers = feed_consumers
        app.state.nats_events = nats_events
        # The document is built once, now, not on the gateway's first fetch (which has a deadline).
        app.openapi()
        try:
            yield
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in feed_consumers:
                await c.aclose()
            if nats_events is not None:
                await nats_events.aclose()
            await db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_tags=openapi_tags,
    )
    app.state.settings = settings
    app.state.common = common
    app.state.db = db
    app.state.clock = clock or Clock()
    app.state.internal_token = common.internal_token_value()
    app.state.service_name = name
    app.state.consumer_handlers = consumer_handlers
    app.state.gateway_keys = gateway_keys
    app.state.principal_verifier = lambda token: decode_principal(token, audience=name, keys=gateway_keys)
    install_error_handlers(app)
    app.add_middleware(Utf8JsonMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router())
    app.include_router(feed_router())
    app.include_router(dead_letters_router(name))
    app.include_router(metrics_router())
    for r in routers:
        app.include_router(r)
    unguarded = unguarded_post_routes(app.routes)
    if unguarded:  # every POST honours Idempotency-Key: its router must use ServiceRoute
        raise RuntimeError(f"POST routes without ServiceRoute: {', '.join(unguarded)}")
    check_id_routes(app.routes)
    _add_security_scheme(app)
    return app


def _add_security_scheme(app: FastAPI) -> None:
    """Document the platform bearer token (validated at the gateway) on every route, and complete
    every operation's error answers (see `complete_operations`)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        comps = schema.setdefault("components", {})
        comps.setdefault("securitySchemes", {})["platformToken"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Real-name token issued by a trusted platform (Alipay, WeChat, partners); "
            "the gateway validates it and forwards a signed X-Principal.",
        }
        schema["security"] = [{"platformToken": []}, {}]
        complete_operations(schema, app.routes)
        _one_parameter_each(schema)
        _json_schema_bounds(schema)
        document_operations(schema, app.routes)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _json_schema_bounds(node: Any) -> None:
    """Bounds on a number read through a validator come out as pydantic's `ge`/`le`: name them as JSON Schema does."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for ours, standard in _BOUNDS.items():
                if ours in node:
                    node.setdefault(standard, node.pop(ours))
        for value in node.values():
            _json_schema_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _json_schema_bounds(value)


def _one_parameter_each(schema: dict[str, Any]) -> None:
    """A parameter a route declares itself (a required Idempotency-Key) replaces the kernel's same one."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "parameters" not in op:
                continue
            last: dict[tuple[str, str], dict[str, Any]] = {}
            for param in op["parameters"]:
                last[(param.get("name", ""), param.get("in", ""))] = param
            op["parameters"] = [p for p in op["parameters"] if last[(p.get("name", ""), p.get("in", ""))] is p]


# What the kernel answers on every route, whatever the route declares itself.
_MALFORMED_BODY = "malformed_body: the body is not JSON (or not UTF-8)"
_VALIDATION = (
    "validation_failed, or the code of the first invalid field (id_number_invalid, credit_code_invalid, "
    "region_code_invalid, region_code_unknown, month_invalid, cursor_invalid, ...), with per-field `errors`"
)
_UNAUTHENTICATED = "principal_required (no principal), principal_invalid"
_FORBIDDEN = (
    "principal_kind_not_allowed, realname_level_too_low, fresh_auth_required, face_auth_required, "
    "staff_role_required, not_own_employer"
)
_NOT_FOUND_ID = "not_found: no such resource (an id that is not a UUID, or not the caller's; a segment of the wrong shape)"


def api_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every API route of an app as the app serves it (prefix included, routers flattened)."""
    for context in iter_route_contexts(list(routes)):
        if isinstance(context.original_route, APIRoute):
            yield context


def documented_routes(schema: dict[str, Any], routes: Iterable[Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each API route in the document, with its path item."""
    paths = schema.get("paths", {})
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        item = paths.get(route.path_format)
        if item is not None:
            yield route, item


def _takes_principal(dependant: Dependant) -> bool:
    """True when the route (or one of its dependencies) verifies the caller's principal."""
    stack = [dependant]
    while stack:
        d = stack.pop()
        if getattr(d.call, "principal_guard", False):
            return True
        stack.extend(d.dependencies)
    return False


def _error_answer(responses: dict[str, Any], status: int, description: str) -> None:
    """Add (or complete) an error answer: application/problem+json with the Problem schema."""
    answer = responses.setdefault(str(status), {})
    own = answer.get("description")
    if not own or own in ("Validation Error", "Additional Response"):
        answer["description"] = description
    elif description.split(":")[0].split(",")[0].split(" ")[0] not in own:
        answer["description"] = f"{own}; {description}"
    answer["content"] = problem_content()


def complete_operations(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    """Every operation lists the error answers the kernel gives it, as application/problem+json.

    - a request body: 400 `malformed_body` and 422;
    - parameters: 422;
    - a principal (a `require(...)` or `current_principal` dependency): 401 and 403;
    - an id (or a month) in the path: 404 (the router matches ids only, see services.common.paths);
    - every 4xx and 5xx a route declares itself is a problem document, unless the route
      gives its own content (platform notifications answer in the platform's format).
    FastAPI's own HTTPValidationError schema (application/json) is dropped.
    """
    for route, item in documented_routes(schema, routes):
        principal = _takes_principal(route.dependant)
        typed = [n for n, c in route.param_convertors.items() if isinstance(c, (IdConvertor, MonthConvertor))]
        for method in route.methods or ():
            op = item.get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for status, answer in list(responses.items()):
                if status[:1] in ("4", "5") and isinstance(answer, dict):
                    content = answer.get("content")
                    generated = content is None or (
                        set(content) == {"application/json"}
                        and content["application/json"].get("schema", {}).get("$ref", "").endswith("/HTTPValidationError")
                    )
                    if generated:
                        _error_answer(responses, int(status), answer.get("description") or "refused")
            if "requestBody" in op:
                _error_answer(responses, 400, _MALFORMED_BODY)
            if "requestBody" in op or op.get("parameters"):
                _error_answer(responses, 422, _VALIDATION)
            if principal:
                _error_answer(responses, 401, _UNAUTHENTICATED)
                _error_answer(responses, 403, _FORBIDDEN)
            if typed:
                _error_answer(responses, 404, _NOT_FOUND_ID)
            op["responses"] = dict(sorted(responses.items()))
    comps = schema.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    text = json.dumps(schema.get("paths", {}))
    for generated_name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{generated_name}" not in text:
            schemas.pop(generated_name, None)
    comps["schemas"] = dict(sorted(schemas.items()))


def check_id_routes(routes: Iterable[Any]) -> None:
    """Every id path parameter is matched by the router as an id (`{x_id:id}`), so fixed segments win."""
    for route in api_routes(routes):
        for name, convertor in route.param_convertors.items():
            if is_id_parameter(name) and not isinstance(convertor, IdConvertor):
                raise RuntimeError(f"{route.path}: declare the id segment as {{{name}:id}} with IdPath")
