"""One OpenAPI document for the whole API, merged from the four services' documents.

`make openapi` calls `merged_openapi` on the documents built from the service apps
and commits the result as openapi/gateway.json. At run time the gateway does not
read the repository: it merges the documents its upstreams serve at /openapi.json
(cached), so the document always describes the services actually deployed behind
it. A service with several replicas is asked once: its first replica that answers
(those the forwarding has taken out are tried last). GATEWAY_OPENAPI_FILE serves a
fixed, pre-merged file instead.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

import gateway.errors  # noqa: F401  (its problem classes render the gateway's examples)
from services.common.errors import PROBLEM_SCHEMA
from services.common.openapi_docs import _domain_classes, add_problem_examples

log = logging.getLogger("socialsec.gateway.openapi")

SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "Real-name token issued by a trusted platform (Alipay, WeChat city-service wrappers, "
    "partners, the staff identity provider). The gateway validates it and forwards a signed X-Principal; "
    "401 problem codes: token_invalid, token_too_large, token_expired, token_not_yet_valid, issuer_untrusted, "
    "audience_invalid, algorithm_not_allowed, signing_key_unknown, signature_invalid, token_claim_missing, "
    "token_claim_invalid, kind_not_allowed_for_issuer.",
}

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
GATEWAY_PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "tags": ["gateway"], "summary": "Liveness: the gateway answers", "operationId": "gateway_healthz",
        "description": "The gateway process answers; it does not ask the services.\n\n**Callers**: public, no token.",
        "security": [],
        "responses": {"200": {"description": "alive", "content": {"application/json": {
            "schema": {"type": "object"}, "example": {"status": "ok"}}}}},
    }},
    "/readyz": {"get": {
        "tags": ["gateway"], "summary": "Readiness: every upstream service answers its /readyz",
        "operationId": "gateway_readyz", "security": [],
        "description": "Asks every upstream service's /readyz; 503 `not_ready` names the services down in "
        "`upstreams_down`.\n\n**Callers**: public, no token.",
        "responses": {
            "200": {"description": "every upstream ready", "content": {"application/json": {
                "schema": {"type": "object"}, "example": {"status": "ready"}}}},
            "503": {"description": "not_ready, with `upstreams_down`", "content": _PROBLEM},
        },
    }},
    "/metrics": {"get": {
        "tags": ["gateway"], "summary": "Prometheus metrics", "operationId": "gateway_metrics", "security": [],
        "description": "The gateway's request counters and latencies in the Prometheus text format; refused with "
        "403 `metrics_forbidden` outside the monitoring networks unless the metrics token is given.\n\n**Callers**: public, no token.",
        "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {
                "schema": {"type": "string"},
                "example": "# HELP gateway_requests_total Requests answered\n# TYPE gateway_requests_total counter\n"}}},
            "403": {"description": "metrics_forbidden: not from a monitoring network", "content": _PROBLEM},
        },
    }},
}

GATEWAY_RESPONSES: dict[str, dict[str, Any]] = {
    "401": {"description": "token refused: token_invalid, token_expired, issuer_untrusted, signature_invalid (see the "
            "bearer scheme for every code)", "content": _PROBLEM},
    "413": {"description": "payload_too_large: body over the gateway's limit", "content": _PROBLEM},
    "429": {"description": "rate_limited, with Retry-After", "content": _PROBLEM},
    "503": {"description": "upstream_unavailable", "content": _PROBLEM},
    "504": {"description": "upstream_timeout", "content": _PROBLEM},
}

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    """Rewrite `#/components/schemas/X` references after a schema was renamed."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/components/schemas/"):
                name = v[len("#/components/schemas/"):]
                out[k] = "#/components/schemas/" + renames.get(name, name)
            else:
                out[k] = _rename_refs(v, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def merged_openapi(service_docs: dict[str, dict[str, Any]], *, version: str = "1.0.0") -> dict[str, Any]:
    """The gateway's document: every service's paths (already distinct) and components, one bearer scheme.

    Schemas with the same name and the same content are shared; a name two services
    use for different shapes is prefixed with the service name (`Card_Status`).
    Each service's own /healthz and /readyz are left out: behind the gateway those are its own.
    """
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    classes = _domain_classes()
    examples: dict[str, Any] = {}  # components/examples: the rendered problems, shared by every operation
    tags: dict[str, dict[str, Any]] = {"gateway": {"name": "gateway", "description": "The public entry itself"}}
    for service in sorted(service_docs):
        doc = copy.deepcopy(service_docs[service])
        own = doc.get("components", {}).get("schemas", {})
        renames = {}
        for name, schema in own.items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service.capitalize()}_{name}"
        doc = _rename_refs(doc, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(renames.get(name, name), schema)
        for name, example in doc.get("components", {}).get("examples", {}).items():
            examples.setdefault(name, example)
        for path, item in doc.get("paths", {}).items():
            if not path.startswith(f"/{service}/"):
                continue
            if path in paths:
                raise ValueError(f"path {path} is declared by two services")
            for method, op in item.items():
                if method in _METHODS and isinstance(op, dict):
                    responses = op.setdefault("responses", {})
                    for status, answer in GATEWAY_RESPONSES.items():
                        own = responses.setdefault(status, copy.deepcopy(answer))
                        if own is not answer and answer["description"] not in own.get("description", ""):
                            own["description"] = f"{own.get('description')}; at the gateway: {answer['description']}"
                            own["content"] = {**own.get("content", {}), **copy.deepcopy(answer["content"])}
                    add_problem_examples(op, classes, only=GATEWAY_RESPONSES, registry=examples)
            paths[path] = item
        for tag in doc.get("tags", []) or []:
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)
    own_paths = copy.deepcopy(GATEWAY_PATHS)
    for item in own_paths.values():
        for op in item.values():
            add_problem_examples(op, classes, registry=examples)
    paths.update(own_paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Social security API",
            "version": version,
            "description": "The social-insurance backend behind the city-service mini-apps, as seen through the "
            "gateway: registration, contribution, card and review. Errors are application/problem+json with a "
            "stable `code`; Chinese by default, English with `Accept-Language: en`.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())), "examples": dict(sorted(examples.items())),
            "securitySchemes": {"platformToken": SECURITY_SCHEME},
        },
        "security": [{"platformToken": []}, {}],
        "tags": [tags[name] for name in sorted(tags)],
    }


class OpenApiSource:
    """The merged document served at /openapi.json: from a fixed file, or merged live from the upstreams."""

    def __init__(
        self,
        *,
        upstreams: Mapping[str, str | Sequence[str]],
        http: httpx.AsyncClient,
        now: Callable[[], float],
        cache_seconds: float,
        fixed_file: Path | None = None,
        timeout: float = 5.0,
        states: Callable[[], Mapping[str, Mapping[str, str]]] | None = None,
    ) -> None:
        # Service -> its replicas' base URLs, in the configured order.
        self.upstreams = {n: [u] if isinstance(u, str) else list(u) for n, u in upstreams.items()}
        # The forwarding's view of each replica ("in", or "out: <why>"), when it keeps one.
        self.states = states
        self.http = http
        self.now = now
        self.cache_seconds = cache_seconds
        self.fixed_file = fixed_file
        self.timeout = timeout
        self.last_good: dict[str, dict[str, Any]] = {}
        self.cached: dict[str, Any] | None = None
        self.cached_at = float("-inf")
        self.lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        """The merged document (refreshed at most every cache_seconds)."""
        if self.fixed_file is not None:
            if self.cached is None:
                self.cached = json.loads(await asyncio.to_thread(self.fixed_file.read_text, encoding="utf-8"))
            return self.cached
        async with self.lock:
            if self.cached is not None and self.now() - self.cached_at < self.cache_seconds:
                return self.cached
            states = self.states() if self.states is not None else {}
            results = await asyncio.gather(*(self._fetch_service(n, urls, states.get(n, {}))
                                             for n, urls in self.upstreams.items()))
            for name, doc in results:
                if doc is not None:
                    self.last_good[name] = doc
            doc = merged_openapi(self.last_good)
            missing = sorted(set(self.upstreams) - set(self.last_good))
            if missing:
                doc["x-unavailable-services"] = missing  # retried on the next request, not cached
            else:
                self.cached, self.cached_at = doc, self.now()
            return doc

    async def _fetch_service(
        self, name: str, urls: list[str], states: Mapping[str, str],
    ) -> tuple[str, dict[str, Any] | None]:
        """The document of one service from its first replica that answers: the replicas that are in first."""
        ordered = [u for u in urls if states.get(u, "in") == "in"] + [u for u in urls if states.get(u, "in") != "in"]
        for base in ordered:
            doc = await self._fetch(name, base)
            if doc is not None:
                return name, doc
        return name, None

    async def _fetch(self, name: str, base: str) -> dict[str, Any] | None:
        try:
            r = await self.http.get(f"{base}/openapi.json", timeout=self.timeout)
            r.raise_for_status()
            doc = r.json()
            return doc if isinstance(doc, dict) else None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("openapi of %s not fetched from %s: %s", name, base, exc)
            return None
