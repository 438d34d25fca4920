"""Every operation of the merged document tells an operator what they need (issue 16, part 3).

Summary, description, security requirement, request and success examples, and the problem
codes each error answer can carry, each with its real rendering in Chinese and English.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from devtools.openapi import all_documents
from services.common.openapi_docs import is_binary, render_problem

METHODS = ("get", "put", "post", "delete", "patch")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    return all_documents()["gateway"]


def operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{m.upper()} {p}", op) for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS]


def has_example(media: dict[str, Any]) -> bool:
    return "example" in media or bool(media.get("examples"))


def example_value(doc: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """An example's value, following a reference to components/examples."""
    ref = example.get("$ref")
    if ref:
        assert ref.startswith("#/components/examples/"), ref
        example = doc["components"]["examples"][ref.rsplit("/", 1)[1]]
    value: dict[str, Any] = example["value"]
    return value


def gaps_of(doc: dict[str, Any], name: str, op: dict[str, Any]) -> list[str]:
    gaps = []
    if not (op.get("summary") or "").strip():
        gaps.append("summary")
    if not (op.get("description") or "").strip():
        gaps.append("description")
    security = op.get("security")
    if security is None:
        gaps.append("security")
    for media_type, media in op.get("requestBody", {}).get("content", {}).items():
        if not is_binary(media_type) and not has_example(media):
            gaps.append(f"request example ({media_type})")
    successes = [s for s in op["responses"] if s[:1] == "2"]
    if not successes:
        gaps.append("success response")
    for status in successes:
        for media_type, media in op["responses"][status].get("content", {}).items():
            if not is_binary(media_type) and not has_example(media):
                gaps.append(f"{status} example ({media_type})")
    for status, answer in op["responses"].items():
        if status[:1] not in ("4", "5"):
            continue
        content = answer.get("content", {})
        if not content:
            gaps.append(f"{status} content")
        problem = content.get("application/problem+json")
        if problem is None:
            for media_type, media in content.items():
                if not has_example(media):
                    gaps.append(f"{status} example ({media_type})")
            continue
        codes = answer.get("x-problem-codes") or []
        if not codes:
            gaps.append(f"{status} problem codes")
        examples = problem.get("examples", {})
        for code in codes:
            for lang in ("zh", "en"):
                ex = examples.get(f"{code} ({lang})")
                if ex is None:
                    gaps.append(f"{status} {code} example in {lang}")
                    continue
                value = example_value(doc, ex)
                if value["code"] != code or value["status"] != int(status):
                    gaps.append(f"{status} {code} example is for {value['status']} {value['code']}")
    return gaps


def test_every_operation_is_documented_for_an_operator(merged):
    ops = operations(merged)
    assert len(ops) > 80
    gaps = {name: g for name, op in ops if (g := gaps_of(merged, name, op))}
    assert not gaps, "\n".join(f"{name}: {', '.join(g)}" for name, g in sorted(gaps.items()))


def test_security_is_the_bearer_token_on_principal_routes_and_none_on_public_ones(merged):
    wrong = []
    for name, op in operations(merged):
        codes = op["responses"].get("401", {}).get("x-problem-codes", [])
        needs_token = "principal_required" in codes
        security = op["security"]
        if needs_token and security not in ([{"platformToken": []}], [{"platformToken": []}, {}]):
            wrong.append(f"{name}: takes a principal but security is {security}")
        if not needs_token and security != []:
            wrong.append(f"{name}: public but security is {security}")
    assert not wrong, "\n".join(wrong)
    by_name = dict(operations(merged))
    assert by_name["GET /contribution/v1/policies/{region_code}"]["security"] == []
    assert by_name["GET /review/v1/annual-declarations"]["security"] == [{"platformToken": []}]


def test_problem_examples_are_what_the_services_answer_in_chinese_and_english(merged):
    by_name = dict(operations(merged))
    put = by_name["PUT /contribution/v1/webhook"]
    examples = put["responses"]["422"]["content"]["application/problem+json"]["examples"]
    zh = example_value(merged, examples["webhook_url_forbidden (zh)"])
    en = example_value(merged, examples["webhook_url_forbidden (en)"])
    assert zh["code"] == en["code"] == "webhook_url_forbidden"
    assert CJK.search(zh["title"]) and not CJK.search(en["title"])
    assert zh == render_problem("webhook_url_forbidden", 422, "zh")
    # Every example anywhere is a rendered problem document with a bilingual pair.
    seen = 0
    for _, op in operations(merged):
        for status, answer in op["responses"].items():
            media = answer.get("content", {}).get("application/problem+json")
            for key, ex in (media or {}).get("examples", {}).items():
                value = example_value(merged, ex)
                assert set(value) >= {"type", "title", "status", "detail", "code"}
                assert value["type"].endswith("/" + value["code"])
                lang = key.rsplit("(", 1)[1].rstrip(")")
                assert bool(CJK.search(value["title"])) == (lang == "zh"), (key, value["title"])
                seen += 1
    assert seen > 500


def test_gateway_answers_carry_their_codes(merged):
    op = dict(operations(merged))["GET /review/v1/annual-declarations"]
    assert "token_expired" in op["responses"]["401"]["x-problem-codes"]
    assert op["responses"]["429"]["x-problem-codes"] == ["rate_limited"]
    ex = op["responses"]["504"]["content"]["application/problem+json"]["examples"]["upstream_timeout (en)"]
    assert example_value(merged, ex)["title"] == "Upstream service timed out" or example_value(merged, ex)["title"]
