"""The sandbox platform (port 8010): a local stand-in for Alipay and WeChat, for development and tests only.

Nothing trusts it unless configured to: `make run` and the end-to-end tests write
an issuers file naming it; docker-compose runs it only under the `sandbox` profile.
"""

from __future__ import annotations

import importlib
import logging

from fastapi import APIRouter, FastAPI

from devtools.keys import ensure_dev_keys
from sandbox.settings import SandboxSettings
from sandbox.tokens import router as tokens_router
from services.common.errors import install_error_handlers
from services.common.middleware import RequestContextMiddleware

log = logging.getLogger("socialsec.sandbox")


def _payments_router() -> APIRouter | None:
    """The payment side (sandbox.payments), when it is installed."""
    try:
        module = importlib.import_module("sandbox.payments")
    except ModuleNotFoundError as exc:
        if exc.name != "sandbox.payments":
            raise
        return None
    return getattr(module, "router", None)


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """The sandbox application."""
    settings = settings or SandboxSettings()
    keys_dir = settings.resolved_keys_dir()
    if keys_dir.name == "keys":
        # The same idempotent, locked creation `make run` does first (a no-op when the keys exist).
        ensure_dev_keys(keys_dir.parent)
    app = FastAPI(
        title="Sandbox platform",
        description="Local stand-in for the Alipay and WeChat platforms: real-name tokens, payments and messages.",
        version="1.0.0",
    )
    app.state.settings = settings
    app.state.keys_dir = keys_dir
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(tokens_router)
    payments = _payments_router()
    if payments is not None:
        from sandbox.certificates import router as certificates_router

        app.include_router(payments)
        from sandbox.messages import router as messages_router  # built on the payment side's Alipay gateway

        app.include_router(messages_router)
        app.include_router(certificates_router)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn sandbox.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
