"""The gateway (port 8000): the only public entry.

It authenticates platform tokens against the trusted-issuer registry, applies the
rate limits, and forwards `/{registration,contribution,card,review}/...` unchanged
to the owning service with a signed X-Principal. Each service authorizes its own
routes. Its own routes: /healthz, /readyz, /metrics, /docs, /openapi.json;
everything else (notably /internal/...) is 404.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jose import jwk
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.docs import docs_router
from gateway.errors import MetricsForbidden, NotReady, RateLimited
from gateway.issuers import IssuerRegistry, IssuersFileError, load_issuers
from gateway.metrics import GatewayMetrics
from gateway.openapi import OpenApiSource
from gateway.proxy import Forwarder
from gateway.ratelimit import RateLimits
from gateway.settings import GatewaySettings
from gateway.upstream import HttpxUpstream, LeanUpstream, Upstream
from services.common.clock import Clock
from services.common.errors import install_error_handlers, problem_response, render_domain_error
from services.common.keyset import WatchedKey
from services.common.logging import configure_logging
from services.common.middleware import RequestContextMiddleware
from services.common.settings import CommonSettings, ConfigurationError

log = logging.getLogger("socialsec.gateway")


class GatewayRouter:
    """Sends a service's paths to the forwarder and everything else to the gateway's own routes."""

    def __init__(self, public: FastAPI, forwarder: Forwarder) -> None:
        self.public = public
        self.forwarder = forwarder
        self.services = frozenset(forwarder.upstreams)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            first = scope["path"].split("/", 2)[1] if scope["path"].startswith("/") else ""
            if first in self.services:
                await self.forwarder(scope, receive, send, first)
                return
            if scope["path"] != "/healthz":
                # /readyz fans out to every upstream and /openapi.json may too: the address limit applies here as well.
                client, _ = self.forwarder.client_address(scope)
                retry = await self.forwarder.limits.check("address", client)
                if retry is not None:
                    self.forwarder.metrics.rate_limited.labels("address").inc()
                    exc = RateLimited(headers={"Retry-After": str(retry)}, params={"retry_after": retry})
                    await render_domain_error(Request(scope), exc)(scope, receive, send)
                    return
        await self.public(scope, receive, send)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    clock: Clock | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    jwks_transport: httpx.AsyncBaseTransport | None = None,
) -> ASGIApp:
    """The gateway application: a plain ASGI app; its own routes and state live on `app.public` (FastAPI)."""
    settings = settings or GatewaySettings()
    common = CommonSettings()
    configure_logging("gateway", common.log_level, common.log_json)
    # One access line per request is enough: httpx would add another for every forward.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    clock = clock or Clock()

    def now() -> float:
        return clock.now().timestamp()

    issuers_file = settings.resolved_issuers_file()
    try:
        states = load_issuers(issuers_file)
    except IssuersFileError as exc:
        raise ConfigurationError(str(exc)) from exc
    signing = WatchedKey(
        name="gateway signing key", path=settings.signing_key_path(), kid=settings.signing_key_id,
        check_seconds=common.key_files_check_seconds,
    )
    constructed: dict[str, Any] = {}

    def signing_key() -> tuple[str, Any]:
        """The kid and key X-Principal is signed with now (the key file is re-read when it changes)."""
        kid, pem = signing.current()
        key = constructed.get(pem)
        if key is None:
            constructed.clear()
            key = constructed[pem] = jwk.construct(pem, "ES256")
        return kid, key

    signing_key()
    upstreams = settings.upstreams()
    replicas = settings.upstream_replicas()
    timeout = settings.upstream_timeout_seconds
    upstream_http = httpx.AsyncClient(
        transport=upstream_transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=settings.upstream_max_connections, max_keepalive_connections=100),
        follow_redirects=False,
    )
    # Forwarding goes through the lean client; httpx stays for the gateway's own calls (readiness, OpenAPI)
    # and stands in for it when a transport is given (services in-process).
    metrics = GatewayMetrics()
    upstream: Upstream = (
        HttpxUpstream(upstreams, upstream_http) if upstream_transport is not None
        else LeanUpstream(replicas, max_connections=settings.upstream_max_connections, connect_timeout=min(timeout, 5.0),
                          probe_seconds=settings.upstream_probe_seconds,
                          on_state=lambda s, url, up: metrics.replica_up.labels(s, url).set(1 if up else 0))
    )
    jwks_http = httpx.AsyncClient(transport=jwks_transport, timeout=httpx.Timeout(5.0), follow_redirects=False)
    registry = IssuerRegistry(
        states, http=jwks_http, now=now, refresh_interval=settings.jwks_refresh_seconds,
        cache_seconds=settings.jwks_cache_seconds,
    )
    registry.on_load = lambda name: metrics.jwks_fetches.labels(name).inc()
    limits = RateLimits(settings.rate_limit_storage, settings.rate_limit_per_principal, settings.rate_limit_per_address)
    openapi = OpenApiSource(
        upstreams=replicas, http=upstream_http, now=now,
        cache_seconds=settings.openapi_cache_seconds, fixed_file=settings.openapi_file, timeout=timeout,
        states=upstream.states if isinstance(upstream, LeanUpstream) else None,
    )

    def reload_issuers() -> bool:
        """Re-read the issuers file and the signing key (SIGHUP); a broken file leaves things as they were."""
        signing.refresh(force=True)
        try:
            registry.replace(load_issuers(issuers_file))
        except IssuersFileError as exc:
            log.error("issuers file not reloaded: %s", exc)
            return False
        log.info("issuers file reloaded: %d issuers", len(registry.by_iss))
        return True

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        hup = False
        with suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, reload_issuers)
            hup = True
        prefetch = asyncio.create_task(registry.prefetch(), name="jwks-prefetch")
        try:
            yield
        finally:
            prefetch.cancel()
            await asyncio.gather(prefetch, return_exceptions=True)
            if hup:
                with suppress(Exception):
                    loop.remove_signal_handler(signal.SIGHUP)
            await upstream.aclose()
            await upstream_http.aclose()
            await jwks_http.aclose()

    public = FastAPI(
        title="Social security API gateway", version="1.0.0", lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    public.state.settings = settings
    public.state.clock = clock
    public.state.registry = registry
    public.state.metrics = metrics
    public.state.limits = limits
    public.state.reload_issuers = reload_issuers
    public.state.signing = signing
    public.state.openapi = openapi
    install_error_handlers(public)

    @public.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @public.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Any:
        async def probe(name: str, base: str) -> tuple[str, str, str]:
            try:
                r = await upstream_http.get(f"{base}/readyz", timeout=min(timeout, 2.0))
                return name, base, "ok" if r.status_code == 200 else f"status {r.status_code}"
            except httpx.HTTPError as exc:
                return name, base, type(exc).__name__
        probes = await asyncio.gather(*(probe(n, u) for n, urls in replicas.items() for u in urls))
        each: dict[str, dict[str, str]] = {n: {} for n in replicas}
        for name, base, state in probes:
            each[name][base] = state
        # A service is ready when one of its replicas is; the replicas' own states are shown.
        results = {n: "ok" if "ok" in states.values() else next(iter(states.values())) for n, states in each.items()}
        down = sorted(n for n, v in results.items() if v != "ok")
        replicas_down = sorted(u for states in each.values() for u, v in states.items() if v != "ok")
        # Informational: keys load lazily and are retried, so an issuer without keys does not fail readiness.
        issuers = {s.config.name: "keys loaded" if s.keys else "keys not loaded" for s in registry.by_iss.values()}
        if down:
            return problem_response(
                request, status=503, code=NotReady.code, title=NotReady.title_en,
                detail=f"upstreams not ready: {', '.join(down)}",
                extra={"upstreams_down": down, "upstreams": results, "replicas": each,
                       "replicas_down": replicas_down, "issuers": issuers},
            )
        return {"status": "ready", "upstreams": results, "replicas": each, "replicas_down": replicas_down,
                "issuers": issuers}

    metrics_networks = settings.metrics_network_list()
    metrics_token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    @public.get("/metrics", include_in_schema=False)
    async def metrics_route(request: Request) -> Response:
        """Prometheus text, for the monitoring network (GATEWAY_METRICS_NETWORKS) or a bearer of GATEWAY_METRICS_TOKEN."""
        client, _ = forwarder.client_address(request.scope)
        try:
            from_network = any(ipaddress.ip_address(client) in net for net in metrics_networks)
        except ValueError:
            from_network = False
        presented = (request.headers.get("authorization") or "").removeprefix("Bearer ").encode()
        with_token = metrics_token is not None and hmac.compare_digest(presented, metrics_token)
        if not (from_network or with_token):
            raise MetricsForbidden()
        return Response(metrics.render(), media_type=metrics.content_type)

    @public.get("/openapi.json", include_in_schema=False)
    async def openapi_route() -> JSONResponse:
        return JSONResponse(await openapi.document())

    public.include_router(docs_router())

    forwarder = Forwarder(
        upstreams=upstreams, upstream=upstream, registry=lambda: registry, signer=signing_key,
        limits=limits, metrics=metrics, now=now, timeout=timeout, max_body_bytes=settings.max_body_bytes,
        client_body_timeout=settings.client_body_timeout_seconds, trusted_proxies=settings.trusted_proxy_networks(),
        max_upload_bytes=settings.max_upload_bytes, upload_timeout=settings.upload_timeout_seconds,
    )
    app: ASGIApp = GatewayRouter(public, forwarder)
    origins = settings.cors_origin_list()
    if origins:
        app = CORSMiddleware(
            app, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Accept-Language", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"], max_age=600,
        )
    app = RequestContextMiddleware(app)
    app.public = public  # type: ignore[attr-defined]
    return app


def __getattr__(name: str) -> ASGIApp:
    # `uvicorn gateway.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
