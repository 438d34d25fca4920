"""Building a service application: the kernel wiring every service shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.clock import Clock
from services.common.db import Database
from services.common.dead_letters import dead_letters_router
from services.common.errors import DomainError, install_error_handlers, problem_response
from services.common.events import FeedConsumer, Handler, feed_router
from services.common.jobs import BackgroundJob
from services.common.logging import configure_logging
from services.common.middleware import RequestContextMiddleware, Utf8JsonMiddleware
from services.common.migrate import upgrade_async
from services.common.nats_events import NatsEvents
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
    public_key = common.gateway_public_key_pem()
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
    app.state.principal_verifier = lambda token: decode_principal(token, audience=name, public_key_pem=public_key)
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
    _add_security_scheme(app)
    return app


def _add_security_scheme(app: FastAPI) -> None:
    """Document the platform bearer token (validated at the gateway) on every route."""
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
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code)
