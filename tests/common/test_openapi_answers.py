"""The exported OpenAPI documents say what the routes answer (issue 12, item 7).

They walk the committed documents (openapi/*.json, the services' and the gateway's
merged one): the routes' principals come from the apps themselves, so a route that
takes a principal cannot be documented without its 401 and 403.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.openapi import OUT, service_apps
from services.common.app import _takes_principal, api_routes
from services.common.errors import PROBLEM_JSON, PROBLEM_SCHEMA
from services.common.paths import ID_PATTERN, is_id_parameter

DOCUMENTS = ("registration", "contribution", "card", "review", "gateway")
METHODS = ("get", "put", "post", "delete", "patch")
# Platform notifications answer in the platform's own format (Alipay: `fail`; WeChat Pay: {"code": "FAIL"}).
PLATFORM_FORMAT = {("post", "/contribution/v1/notify/alipay"), ("post", "/contribution/v1/notify/wechatpay"),
                   ("post", "/contribution/v1/notify/wechatpay/refunds")}
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _problem(answer: dict[str, Any]) -> dict[str, Any] | None:
    """An answer's content with the problem examples left out (test_openapi_operations checks those)."""
    content = answer.get("content")
    if not isinstance(content, dict):
        return content
    return {t: {k: v for k, v in media.items() if k != "examples"} for t, media in content.items()}


def _document(name: str) -> dict[str, Any]:
    return json.loads((OUT / f"{name}.json").read_text(encoding="utf-8"))


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, path, op) for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS]


@pytest.fixture(scope="module")
def with_principal() -> set[tuple[str, str]]:
    """(method, path) of every service operation whose route verifies a principal."""
    out = set()
    for app in service_apps().values():
        for route in api_routes(app.routes):
            if _takes_principal(route.dependant):
                out |= {(m.lower(), route.path_format) for m in route.methods}
    return out


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_operation_with_a_principal_lists_401_and_403_as_problems(name, with_principal):
    doc = _document(name)
    missing = [
        (m, path, status)
        for m, path, op in _operations(doc) if (m, path) in with_principal
        for status in ("401", "403")
        if _problem(op["responses"].get(status, {})) != PROBLEM
    ]
    assert not missing, missing
    assert any((m, p) in with_principal for m, p, _ in _operations(doc)) or name == "gateway"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_operation_with_a_body_lists_400_and_422_as_problems(name):
    doc = _document(name)
    bodies = [(m, path, op) for m, path, op in _operations(doc) if "requestBody" in op]
    assert bodies
    missing = [
        (m, path, status)
        for m, path, op in bodies for status in ("400", "422")
        if _problem(op["responses"].get(status, {})) != PROBLEM
    ]
    assert not missing, missing
    for m, path, op in bodies:
        assert "malformed_body" in op["responses"]["400"]["description"] or (m, path) in PLATFORM_FORMAT, (m, path)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_error_answer_is_a_problem_document(name):
    doc = _document(name)
    wrong = [
        (m, path, status, list(answer.get("content", {})))
        for m, path, op in _operations(doc) if (m, path) not in PLATFORM_FORMAT
        for status, answer in op["responses"].items()
        if status[0] in "45" and _problem(answer) != PROBLEM
    ]
    assert not wrong, wrong
    assert doc["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert not [k for k in doc["components"]["schemas"] if k.endswith("_Problem")]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_id_path_parameter_has_a_pattern_and_cursors_cannot_be_empty(name):
    doc = _document(name)
    ids = cursors = 0
    for m, path, op in _operations(doc):
        for param in op.get("parameters", []):
            schema = param["schema"]
            if param["in"] == "path" and is_id_parameter(param["name"]):
                ids += 1
                assert schema.get("pattern") == ID_PATTERN and schema.get("format") == "uuid", (m, path, param)
            if param["name"] == "cursor":
                cursors += 1
                assert schema.get("type") == "string", (m, path, param)
                assert schema.get("minLength", 0) >= 1 and schema.get("pattern"), (m, path, param)
    assert ids and cursors


def test_the_gateway_document_has_every_service_operation():
    merged = {(m, p) for m, p, _ in _operations(_document("gateway"))}
    for name in DOCUMENTS[:-1]:
        own = {(m, p) for m, p, _ in _operations(_document(name)) if p.startswith(f"/{name}/")}
        assert own <= merged, own - merged
