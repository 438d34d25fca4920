"""`make openapi`: write openapi/<service>.json for each service and the merged gateway document."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from devtools.keys import ensure_dev_keys

SERVICES = ("registration", "contribution", "card", "review")
OUT = Path(__file__).resolve().parent.parent / "openapi"


def service_apps() -> dict[str, Any]:
    """Each service's app, built but not started (no database is touched)."""
    from services.common.settings import CommonSettings

    with tempfile.TemporaryDirectory() as tmp:
        # Reuse the process's keys when it has them (the PII cipher is process-wide).
        configured = os.environ.get("SOCIALSEC_VAR_DIR")
        var = Path(configured) if configured and (Path(configured) / "keys" / "pii.key").exists() else Path(tmp)
        ensure_dev_keys(var)
        common = CommonSettings(var_dir=var, gateway_public_key_file=var / "keys" / "gateway-signing.pub.pem")
        apps = {}
        for name in SERVICES:
            settings_mod = importlib.import_module(f"services.{name}.settings")
            app_mod = importlib.import_module(f"services.{name}.app")
            settings = settings_mod.Settings(database_url=f"sqlite+aiosqlite:///{tmp}/{name}.db", migrate_on_start=False)
            apps[name] = app_mod.create_app(settings=settings, common=common)
        return apps


def service_documents() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, built from its app (no database is touched)."""
    return {name: app.openapi() for name, app in service_apps().items()}


def all_documents() -> dict[str, dict[str, Any]]:
    """Service documents plus the gateway's merged one (when the gateway provides a merger)."""
    docs = service_documents()
    try:
        merger = importlib.import_module("gateway.openapi").merged_openapi
    except (ImportError, AttributeError):
        return docs
    return {**docs, "gateway": merger(docs)}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main() -> int:
    os.environ.setdefault("SOCIALSEC_LOG_JSON", "true")
    OUT.mkdir(exist_ok=True)
    for name, doc in all_documents().items():
        (OUT / f"{name}.json").write_text(render(doc), encoding="utf-8")
        print(f"openapi/{name}.json: {len(doc.get('paths', {}))} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
