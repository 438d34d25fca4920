"""A service with the kernel and one protected route that touches no database, for bench/gateway.py:
it isolates what the gateway adds from what a service's own work costs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic_settings import SettingsConfigDict

from services.common.app import create_service_app
from services.common.principal import Principal, require

router = APIRouter(prefix="/contribution/v1")


@router.get("/me/principal")
def me(principal: Annotated[Principal, Depends(require("citizen", min_level=1))]) -> dict[str, Any]:
    return {"kind": principal.kind, "level": principal.realname_level}


def create_app() -> FastAPI:
    from services.contribution.settings import Settings

    class BenchSettings(Settings):
        model_config = SettingsConfigDict(env_prefix="CONTRIBUTION_", extra="ignore")

    settings = BenchSettings(migrate_on_start=False, consumers_enabled=False)
    return create_service_app(settings=settings, title="bench", description="bench", routers=[router])


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        return create_app()
    raise AttributeError(name)
