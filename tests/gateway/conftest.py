"""Gateway fixtures: the real gateway app in-process, the sandbox as its JWKS source,
fake upstream services that echo what they received, and token signers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jose import jwt

from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from sandbox.app import create_app as create_sandbox
from sandbox.issuers import SANDBOX_ISSUERS, issuers_document, mint_token, public_jwk
from sandbox.settings import SandboxSettings
from tests.conftest import KEYS

SANDBOX_URL = "http://sandbox"


def citizen_persona(**over: Any) -> dict[str, Any]:
    persona = {
        "kind": "citizen", "id_number": "11010519491231002x", "name": "王芳", "realname_level": 3,
        "auth_method": "face", "auth_time": int(time.time()),
    }
    persona.update(over)
    return persona


def sandbox_token(issuer: str = "sandbox-alipay", persona: dict[str, Any] | None = None, **kw: Any) -> str:
    """A token exactly as the sandbox platform issues it."""
    return mint_token(issuer, persona or citizen_persona(), keys_dir=KEYS, **kw)[0]


def sign(claims: dict[str, Any], key_pem: str, alg: str, kid: str | None) -> str:
    """A token with any claims, key, algorithm and kid (for the refusal cases)."""
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key_pem, algorithm=alg, headers=headers)


def alipay_claims(**over: Any) -> dict[str, Any]:
    """Claims in the sandbox-alipay naming, valid now."""
    now = int(time.time())
    claims = {
        "iss": SANDBOX_ISSUERS["sandbox-alipay"].iss, "aud": "socialsec", "iat": now, "exp": now + 600,
        "user_id": "2088000000000001", "principal_type": "citizen", "cert_no": "11010519491231002X",
        "user_name": "王芳", "level": 3, "auth_type": "face", "auth_at": now,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def alipay_key() -> tuple[str, str]:
    pem = (KEYS / "sandbox-alipay-issuer.pem").read_text()
    return pem, public_jwk(pem)["kid"]


def new_rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def new_ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# ---- fake upstream services ----------------------------------------------------


@dataclass
class Upstream:
    """What a fake service saw, and knobs to make it misbehave."""

    name: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = True
    openapi_fetches: int = 0


def upstream_app(up: Upstream) -> FastAPI:
    app = FastAPI(openapi_url=None)

    @app.get("/readyz")
    async def readyz() -> Response:
        return JSONResponse({"status": "ready"}, status_code=200 if up.ready else 503)

    @app.get("/openapi.json")
    async def openapi() -> dict[str, Any]:
        up.openapi_fetches += 1
        return {
            "openapi": "3.1.0", "info": {"title": up.name, "version": "1"},
            "paths": {f"/{up.name}/v1/things": {"get": {"responses": {"200": {"description": "ok"}}}}},
            "components": {"schemas": {"Thing": {"type": "object", "title": up.name}}},
        }

    @app.get(f"/{up.name}/v1/slow")
    async def slow() -> dict[str, str]:
        await up.release.wait()  # answers only when the test says so
        return {"status": "late"}

    @app.api_route(f"/{up.name}/{{rest:path}}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(rest: str, request: Request) -> Response:
        body = await request.body()
        entry = {
            "method": request.method, "path": request.url.path, "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items()},
            "header_list": request.headers.getlist("x-principal"),
            "body": body.decode("utf-8", "replace"),
        }
        up.seen.append(entry)
        return JSONResponse({"service": up.name, "path": request.url.path, "length": len(body)},
                            status_code=201 if request.method == "POST" else 200,
                            headers={"X-Upstream": up.name, "Connection": "keep-alive"})

    return app


class QuietServer(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving the test runner's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def serve(app: Any) -> tuple[str, Any]:
    """Serve an ASGI app on a free loopback port: (its base URL, a coroutine function that stops it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = QuietServer(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                        timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)

    async def stop() -> None:
        server.should_exit = True
        await task
        sock.close()

    return f"http://127.0.0.1:{port}", stop


class HostDispatch(httpx.AsyncBaseTransport):
    """Routes a request to the in-process app named by its host."""

    def __init__(self, transports: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.transports = transports

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no route to {request.url.host}", request=request)
        return await transport.handle_async_request(request)


class MutableJwks:
    """A JWKS endpoint whose keys a test can change (key rotation), counting fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            self.fetches += 1
            return httpx.Response(200, json={"keys": self.keys})

        return httpx.MockTransport(handler)


@dataclass
class Gateway:
    app: Any
    client: httpx.AsyncClient
    upstreams: dict[str, Upstream]
    issuers_file: Path

    @property
    def public(self) -> FastAPI:
        return self.app.public

    @property
    def registry(self) -> Any:
        return self.public.state.registry

    def metrics_text(self) -> str:
        return self.public.state.metrics.render().decode()


@pytest.fixture(params=["sockets", "in-process"])
async def make_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Build a gateway: `await make_gateway(issuers=..., jwks_transport=..., **settings)`.

    Every gateway test runs twice: with the fake services behind real loopback sockets (the
    gateway's own HTTP client, as in production) and in-process (an httpx transport).
    """
    opened: list[tuple[LifespanManager, httpx.AsyncClient]] = []
    stops: list[Any] = []

    async def make(
        *, issuers: dict[str, Any] | None = None, jwks_transport: httpx.AsyncBaseTransport | None = None,
        upstream_transport: httpx.AsyncBaseTransport | None = None, client_address: str = "203.0.113.7",
        clock: Any = None, **overrides: Any,
    ) -> Gateway:
        issuers_file = tmp_path / f"issuers-{len(opened)}.json"
        issuers_file.write_text(json.dumps(issuers or issuers_document(SANDBOX_URL)), encoding="utf-8")
        ups = {name: Upstream(name) for name in SERVICES}
        values: dict[str, Any] = {f"{n}_url": f"http://{n}" for n in SERVICES}
        if upstream_transport is None and request.param == "sockets":
            for n, u in ups.items():
                values[f"{n}_url"], stop = await serve(upstream_app(u))
                stops.append((u, stop))
        elif upstream_transport is None:
            upstream_transport = HostDispatch({n: httpx.ASGITransport(app=upstream_app(u)) for n, u in ups.items()})
        if jwks_transport is None:
            jwks_transport = HostDispatch({"sandbox": httpx.ASGITransport(app=create_sandbox(SandboxSettings(keys_dir=KEYS)))})
        values.update(issuers_file=issuers_file, signing_key_file=KEYS / "gateway-signing.pem")
        values.update(overrides)
        settings = GatewaySettings(**values)
        app = create_app(settings, clock=clock, upstream_transport=upstream_transport, jwks_transport=jwks_transport)
        manager = LifespanManager(app)
        await manager.__aenter__()
        transport = httpx.ASGITransport(app=manager.app, client=(client_address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        opened.append((manager, client))
        return Gateway(app=app, client=client, upstreams=ups, issuers_file=issuers_file)

    yield make
    for manager, client in reversed(opened):
        await client.aclose()
        await manager.__aexit__(None, None, None)
    for up, stop in stops:
        up.release.set()
        await stop()


@pytest.fixture
async def gw(make_gateway: Any) -> Gateway:
    return await make_gateway()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
