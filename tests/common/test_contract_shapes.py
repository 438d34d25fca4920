"""The fields front ends and partners read directly (API.md, "Shapes that must not drift").

Checked on the exported OpenAPI documents, which `test_openapi` keeps equal to
what the applications produce: renaming one of these fields fails here even
when every service's own tests were updated along with it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

OPENAPI = Path(__file__).resolve().parents[2] / "openapi"


@cache
def document(service: str) -> dict[str, Any]:
    return json.loads((OPENAPI / f"{service}.json").read_text())


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:  # Optional[...]: the non-null branch
        branches = [resolve(doc, s) for s in schema["anyOf"] if s.get("type") != "null"]
        assert len(branches) == 1, schema
        return branches[0]
    return schema


def success_schema(service: str, method: str, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = document(service)
    operation = doc["paths"][path][method]
    for status, answer in operation["responses"].items():
        if status.startswith("2"):
            return doc, resolve(doc, answer["content"]["application/json"]["schema"])
    raise AssertionError(f"{method.upper()} {path} documents no success answer")


def fields(doc: dict[str, Any], schema: dict[str, Any], *path: str) -> set[str]:
    for name in path:
        schema = resolve(doc, schema["properties"][name])
        if schema.get("type") == "array":
            schema = resolve(doc, schema["items"])
    return set(schema.get("properties", {}))


LINE = {"month", "insurance", "payer", "base_fen", "rate_bp", "amount_fen"}

SHAPES = [
    ("registration", "post", "/registration/v1/employers", (), {"id"}),
    ("registration", "post", "/registration/v1/employers/{credit_code}/employees", (), {"id", "person_id", "late", "late_days"}),
    ("registration", "post", "/registration/v1/me/enrolments", (), {"id"}),
    ("contribution", "get", "/contribution/v1/policies/{region_code}", (),
     {"region_code", "effective_from", "effective_to", "base_lower_fen", "base_upper_fen", "back_pay_window", "rounding",
      "rates", "grades"}),
    ("contribution", "post", "/contribution/v1/quotes", (), {"lines", "total_fen"}),
    ("contribution", "post", "/contribution/v1/quotes", ("lines",), LINE),
    ("contribution", "post", "/contribution/v1/me/declarations", (), {"id", "lines", "total_fen", "status", "payments"}),
    ("contribution", "post", "/contribution/v1/me/declarations", ("lines",), LINE),
    ("contribution", "post", "/contribution/v1/me/declarations", ("payments",), {"id", "channel", "status", "certificate_code"}),
    ("contribution", "get", "/contribution/v1/me/declarations/{declaration_id}", (), {"id", "lines", "total_fen", "status", "payments"}),
    ("contribution", "post", "/contribution/v1/declarations/{declaration_id}/payments", (),
     {"id", "trade_no", "timeStamp", "nonceStr", "package", "signType", "paySign"}),
    ("card", "get", "/card/v1/me/card", (), {"id", "status", "card_no_masked", "initial_pin_unchanged"}),
    ("card", "post", "/card/v1/me/applications", (), {"id", "status", "card_no_masked", "initial_pin_unchanged"}),
    ("card", "post", "/card/v1/activations", (), {"id", "status", "card_no_masked", "initial_pin_unchanged"}),
    ("review", "get", "/review/v1/me/certification", (), {"state", "last_certified_on", "due_by"}),
]


@pytest.mark.parametrize(("service", "method", "path", "inner", "expected"), SHAPES,
                         ids=[f"{m} {p} {'.'.join(i)}".strip() for _, m, p, i, _ in SHAPES])
def test_documented_answer_keeps_its_fields(service: str, method: str, path: str, inner: tuple[str, ...],
                                            expected: set[str]) -> None:
    doc, schema = success_schema(service, method, path)
    missing = expected - fields(doc, schema, *inner)
    assert not missing, f"{method.upper()} {path} no longer answers {sorted(missing)}"


def test_certification_states_are_the_documented_four() -> None:
    doc, schema = success_schema("review", "get", "/review/v1/me/certification")
    state = resolve(doc, schema["properties"]["state"])
    assert set(state["enum"]) == {"valid", "due", "overdue", "suspended"}
