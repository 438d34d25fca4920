"""Documentation every OpenAPI operation carries, derived from the route by the kernel.

`document_operations` runs after `app.complete_operations` on each service document:

- `security`: the bearer scheme on routes taking a principal (optional on routes where a
  principal is optional), none (`[]`) on public ones;
- `description`: the route's docstring when it has one, else its summary; followed by who may
  call it (from its `require(...)` rule) and the problem codes it can answer;
- request and success examples generated from the schemas (valid identifiers, months, fen);
- on every problem answer, one example per code named in the answer's description, rendered
  by the real renderer (`render_domain_error` / `render_validation_errors`) in Chinese and English,
  and the codes listed under `x-problem-codes`.

A route states the codes it can answer in its `responses=` descriptions (the kernel adds its
own); codes are recognised against every DomainError class, the validation codes and the
framework's HTTP codes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from fastapi.dependencies.models import Dependant
from starlette.requests import Request

from services.common.errors import (
    _HTTP_CODES,
    DOMAIN_VALIDATION_CODES,
    PROBLEM_JSON,
    DomainError,
    render_domain_error,
    render_validation_errors,
)

EXAMPLES_REF = "#/components/examples/"
_CODE_TOKEN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_MONTH = "2026-01"
# Valid sample values for the fields whose format a generic generator cannot guess.
FIELD_EXAMPLES: dict[str, Any] = {
    "id_number": "110105199001010010",
    "credit_code": "91110105MA00000012",
    "employer_credit_code": "91110105MA00000012",
    "agency_credit_code": "91110105MA00000012",
    "region_code": "110105",
    "household_region_code": "110105",
    "card_no": "A12345678",
    "name": "张三",
    "employer_name": "北京示例科技有限公司",
    "url": "https://hr.example.com/socialsec/webhook",
    "phone": "13800000000",
    "mobile": "13800000000",
    "year": 2026,
}


# --------------------------------------------------------------------------- problem codes


_OWN_PACKAGES = ("services", "gateway")


def _import_own_modules() -> None:
    """Import every module of the services and the gateway (migrations aside), so the codes a document
    knows do not depend on what else the process happened to import."""
    import importlib
    import pkgutil

    for package_name in _OWN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
            if ".migrations" in info.name or info.name.endswith(("__main__", ".serve")):
                continue
            importlib.import_module(info.name)


def _domain_classes() -> dict[str, list[type[DomainError]]]:
    """Every DomainError class of the services and the gateway, by code (in a stable order)."""
    _import_own_modules()
    out: dict[str, list[type[DomainError]]] = {}
    stack: list[type[DomainError]] = [DomainError]
    seen: set[type[DomainError]] = set()
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if sub.__module__.split(".")[0] in _OWN_PACKAGES:
                    out.setdefault(sub.code, []).append(sub)
    for classes in out.values():
        classes.sort(key=lambda c: (c.__module__.startswith("gateway."), c.__module__, c.__qualname__))
    return out


def _request(lang: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"accept-language", lang.encode())]})


def _instance(cls: type[DomainError]) -> DomainError:
    try:
        return cls()
    except TypeError:  # a subclass with arguments of its own: the title and code are the class's
        exc = cls.__new__(cls)
        DomainError.__init__(exc)
        return exc


def render_problem(code: str, status: int, lang: str, classes: dict[str, list[type[DomainError]]] | None = None,
                   ) -> dict[str, Any] | None:
    """The problem document the services answer for `code` (with `status`), in `lang` ("zh" or "en")."""
    classes = _domain_classes() if classes is None else classes
    request = _request(lang)
    candidates = classes.get(code, [])
    match = next((c for c in candidates if c.status == status), None)
    if match is not None:
        response = render_domain_error(request, _instance(match))
    elif code in DOMAIN_VALIDATION_CODES or (code == "validation_failed" and status == 422):
        field = code.removesuffix("_invalid") if code.endswith("_invalid") else "body"
        raw = [{"loc": ("body", field), "type": code if code != "validation_failed" else "missing",
                "msg": "Field required" if code == "validation_failed" else f"invalid {field.replace('_', ' ')}"}]
        response = render_validation_errors(request, raw)
    elif code == "malformed_body" and status == 400:
        response = render_validation_errors(
            request, [{"loc": ("body", 1), "type": "json_invalid", "msg": "JSON decode error"}])
    else:
        http = next(((s, t) for s, t in _HTTP_CODES.items() if t[0] == code and s == status), None)
        if http is None:
            return None
        from services.common.errors import problem_response

        _, zh, en = http[1]
        response = problem_response(request, status=status, code=code, title=en if lang == "en" else zh)
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body


def problem_codes(description: str, status: int, classes: dict[str, list[type[DomainError]]]) -> list[str]:
    """The codes a response description names that the services can answer with this status."""
    found: list[str] = []
    for token in _CODE_TOKEN.findall(description or ""):
        if token in found:
            continue
        if any(c.status == status for c in classes.get(token, [])):
            found.append(token)
        elif status == 422 and token in DOMAIN_VALIDATION_CODES | {"validation_failed"}:
            found.append(token)
        elif any(s == status and t[0] == token for s, t in _HTTP_CODES.items()):
            found.append(token)
        elif status == 400 and token == "malformed_body":
            found.append(token)
    return found


def problem_examples(codes: Iterable[str], status: int, classes: dict[str, list[type[DomainError]]],
                     registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """One example per code and language, keyed `code (zh)` / `code (en)`; with a registry (the
    document's components/examples) each is stored there once and referenced."""
    out: dict[str, Any] = {}
    for code in codes:
        for lang, label in (("zh", "中文"), ("en", "English")):
            name = f"problem_{status}_{code}_{lang}"
            if registry is not None and name in registry:
                out[f"{code} ({lang})"] = {"$ref": EXAMPLES_REF + name}
                continue
            body = render_problem(code, status, lang, classes)
            if body is None:
                continue
            example = {"summary": f"{status} {code} · {label}", "value": body}
            if registry is None:
                out[f"{code} ({lang})"] = example
            else:
                registry[name] = example
                out[f"{code} ({lang})"] = {"$ref": EXAMPLES_REF + name}
    return out


# The kernel's 422 description names the identifier codes of every route; an operation lists those
# its own parameters and body can give (by field name or pattern).
_FIELD_CODES: dict[str, tuple[str, ...]] = {
    "id_number": ("id_number_invalid",), "credit_code": ("credit_code_invalid",),
    "region_code": ("region_code_invalid", "region_code_unknown"),
    "cursor": ("cursor_invalid",), "month": ("month_invalid",),
}
_ALL_FIELD_CODES = {code for codes in _FIELD_CODES.values() for code in codes}


def _input_codes(op: dict[str, Any], components: dict[str, Any]) -> set[str]:
    """The identifier validation codes the operation's parameters and request body can answer."""
    names: set[str] = set()
    patterns: set[str] = set()
    seen: set[str] = set()

    def walk(node: Any, name: str | None) -> None:
        if isinstance(node, list):
            for v in node:
                walk(v, name)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            walk(components.get(ref.rsplit("/", 1)[1], {}), name)
        if name:
            names.add(name)
        if isinstance(node.get("pattern"), str):
            patterns.add(node["pattern"])
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop, sub in value.items():
                    walk(sub, prop)
            elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
                walk(value, name)

    for param in op.get("parameters", []):
        walk(param.get("schema", {}), param.get("name"))
    for media in op.get("requestBody", {}).get("content", {}).values():
        walk(media.get("schema", {}), None)
    codes = {code for field, field_codes in _FIELD_CODES.items() for code in field_codes
             if any(n == field or n.endswith("_" + field) for n in names)}
    if any("(0[1-9]|1[0-2])" in p for p in patterns) or any(n.endswith(("month", "months")) for n in names):
        codes.add("month_invalid")
    return codes


def add_problem_examples(op: dict[str, Any], classes: dict[str, list[type[DomainError]]],
                         components: dict[str, Any] | None = None, only: Iterable[str] | None = None,
                         registry: dict[str, Any] | None = None) -> None:
    """List the codes of every problem answer of an operation (or of the `only` statuses) and give their
    real renderings."""
    statuses = set(only) if only is not None else None
    for status, answer in op.get("responses", {}).items():
        if statuses is not None and status not in statuses:
            continue
        if not (status[:1] in ("4", "5") and isinstance(answer, dict)):
            continue
        media = answer.get("content", {}).get(PROBLEM_JSON)
        if media is None:
            continue
        codes = problem_codes(answer.get("description", ""), int(status), classes)
        if status == "422" and components is not None:
            relevant = _input_codes(op, components)
            codes = [c for c in codes if c not in _ALL_FIELD_CODES or c in relevant]
        known = set(answer.get("x-problem-codes", []))
        answer["x-problem-codes"] = sorted(known | set(codes))
        examples = media.setdefault("examples", {})
        for key, ex in problem_examples(answer["x-problem-codes"], int(status), classes, registry).items():
            examples.setdefault(key, ex)
        if not examples:
            media.pop("examples")


# --------------------------------------------------------------------------- examples from schemas


def _resolve(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return dict(components.get(ref.rsplit("/", 1)[1], {}))
    return node


def example_of(node: Any, components: dict[str, Any], name: str | None = None, depth: int = 0) -> Any:
    """A plausible, valid value for a JSON schema (field names and patterns steer the strings)."""
    if not isinstance(node, dict) or depth > 8:
        return None
    node = _resolve(node, components)
    if "example" in node:
        return node["example"]
    if isinstance(node.get("examples"), list) and node["examples"]:
        return node["examples"][0]
    if "const" in node:
        return node["const"]
    if "default" in node and node["default"] is not None:
        return node["default"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            options = [o for o in node[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_of(options[0], components, name, depth + 1) if options else None
    if isinstance(node.get("allOf"), list) and node["allOf"]:
        return example_of(node["allOf"][0], components, name, depth + 1)
    typ = node.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if typ == "object" or "properties" in node:
        props = node.get("properties", {})
        out = {k: example_of(v, components, k, depth + 1) for k, v in props.items()}
        if not props and isinstance(node.get("additionalProperties"), dict):
            out = {"key": example_of(node["additionalProperties"], components, None, depth + 1)}
        return out
    if typ == "array":
        item = example_of(node.get("items", {}), components, (name or "").removesuffix("s") or None, depth + 1)
        if name in FIELD_EXAMPLES and isinstance(FIELD_EXAMPLES[name], list):
            return FIELD_EXAMPLES[name]
        return [item] if item is not None else []
    if typ == "integer":
        if name and name in FIELD_EXAMPLES and isinstance(FIELD_EXAMPLES[name], int):
            return FIELD_EXAMPLES[name]
        low = node.get("minimum", node.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in node else None)
        if name and name.endswith("_fen"):
            value = 500000
        elif name and (name.endswith("months") or name.endswith("count")):
            value = 1
        else:
            value = 1 if low is None else low
        high = node.get("maximum")
        return min(max(value, low if low is not None else value), high) if high is not None else max(
            value, low if low is not None else value)
    if typ == "number":
        return node.get("minimum", 1)
    if typ == "boolean":
        return True
    if typ == "string":
        return _string_example(node, name)
    return None


def _string_example(node: dict[str, Any], name: str | None) -> Any:
    fmt = node.get("format")
    if name in FIELD_EXAMPLES and isinstance(FIELD_EXAMPLES[name], str):
        return FIELD_EXAMPLES[name]
    pattern = node.get("pattern", "")
    if "(0[1-9]|1[0-2])" in pattern or (name or "").endswith("month"):
        return _MONTH
    if fmt == "date-time" or (name or "").endswith("_at"):
        return "2026-01-15T08:00:00Z"
    if fmt == "date" or (name or "").endswith(("_date", "_from", "_to", "_on", "_until")):
        return "2026-01-01"
    if name in ("cursor", "next_cursor"):
        return "MjAyNi0wMS0xNXwwYjdlM2Y1Yw"
    if fmt == "uuid" or (name or "").endswith("_id") or name == "id":
        return "0b7e3f5c-3c1e-4e7b-9a43-2f1c5d6e7a80"
    if fmt == "binary":
        return "(file)"
    if fmt in ("uri", "url"):
        return FIELD_EXAMPLES["url"]
    if "[1-9][0-9]{5}" in pattern:
        return "110105"
    if "[0-9]{17}[0-9Xx]" in pattern:
        return FIELD_EXAMPLES["id_number"]
    if "[0-9A-HJ-NPQRTUWXY]" in pattern:
        return FIELD_EXAMPLES["credit_code"]
    low = node.get("minLength", 1)
    value = name or "text"
    if len(value) < low:
        value = value + "x" * (low - len(value))
    high = node.get("maxLength")
    return value[:high] if high else value


_BINARY = ("application/pdf", "application/vnd.", "application/octet-stream", "image/")


def is_binary(media_type: str) -> bool:
    return media_type.startswith(_BINARY)


def add_body_examples(op: dict[str, Any], components: dict[str, Any]) -> None:
    """A request example and a success example on every body the operation takes or answers (files excepted)."""
    bodies = [op.get("requestBody", {}).get("content", {})]
    bodies += [a.get("content", {}) for s, a in op.get("responses", {}).items() if s[:1] in ("2", "3")]
    for content in bodies:
        for media_type, media in content.items():
            if is_binary(media_type) or "example" in media or "examples" in media:
                continue
            schema = media.get("schema", {})
            if media_type.startswith("text/"):
                media["example"] = example_of(schema, components) if schema.get("example") else _text_example(
                    media_type)
                continue
            value = example_of(schema, components)
            if value is not None:
                media["example"] = value


def _text_example(media_type: str) -> str:
    if media_type == "text/csv":
        return "id_number,name,hire_date,monthly_wage_fen,insurance_types\n1101**********0010,张三,2026-01-15,800000,pension\n"
    return "ok\n"


# --------------------------------------------------------------------------- security and descriptions


def principal_rules(dependant: Dependant) -> tuple[bool, bool, list[dict[str, Any]]]:
    """(takes a principal, the principal is optional, the `require(...)` rules found)."""
    from services.common.principal import optional_principal

    takes, optional, rules = False, False, []
    stack = [dependant]
    while stack:
        d = stack.pop()
        if getattr(d.call, "principal_guard", False):
            takes = True
            if d.call is optional_principal:
                optional = True
            rule = getattr(d.call, "principal_rule", None)
            if rule is not None:
                rules.append(rule)
        stack.extend(d.dependencies)
    return takes, optional and not rules, rules


def _who(rules: list[dict[str, Any]], optional: bool) -> str:
    if optional:
        return "**Callers**: public; a bearer token, when given, personalises the answer."
    if not rules:
        return "**Callers**: any authenticated principal (bearer token)."
    parts = []
    for rule in rules:
        kinds = ", ".join(rule["kinds"]) or "any kind"
        extra = []
        if "citizen" in rule["kinds"] and rule["min_level"] > 1:
            extra.append(f"citizens at real-name level {rule['min_level']} or more")
        if rule["fresh"]:
            extra.append("a fresh authentication")
        if rule["face"]:
            extra.append("face authentication")
        if rule["roles"]:
            extra.append("staff role " + " or ".join(rule["roles"]))
        if rule["channel_kinds"]:
            extra.append("channel kinds " + ", ".join(rule["channel_kinds"]))
        parts.append(kinds + (f" ({'; '.join(extra)})" if extra else ""))
    return "**Callers**: " + "; ".join(parts) + " — bearer token."


def describe(op: dict[str, Any], takes: bool, optional: bool, rules: list[dict[str, Any]]) -> None:
    """Complete the description: the route's own text (or summary), who may call, the problem codes."""
    own = (op.get("description") or "").strip() or (op.get("summary") or "").strip()
    if own and not own.endswith((".", "。", ")")):
        own += "."
    lines = [own, ""]
    lines.append(_who(rules, optional) if takes else "**Callers**: public, no token.")
    refusals = []
    for status, answer in op.get("responses", {}).items():
        codes = answer.get("x-problem-codes") if isinstance(answer, dict) else None
        if codes:
            refusals.append(f"{status} " + ", ".join(f"`{c}`" for c in codes))
    if refusals:
        lines.append("")
        lines.append("**Problems** (application/problem+json): " + "; ".join(refusals) + ".")
    op["description"] = "\n".join(lines).strip()


def document_operations(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    """Security, description, examples and problem codes on every operation of a service document."""
    from services.common.app import documented_routes

    classes = _domain_classes()
    components = schema.get("components", {}).get("schemas", {})
    registry: dict[str, Any] = schema.setdefault("components", {}).setdefault("examples", {})
    for route, item in documented_routes(schema, routes):
        takes, optional, rules = principal_rules(route.dependant)
        for method in route.methods or ():
            op = item.get(method.lower())
            if op is None:
                continue
            if takes:
                op["security"] = [{"platformToken": []}, {}] if optional else [{"platformToken": []}]
            else:
                op["security"] = []
            add_problem_examples(op, classes, components, registry=registry)
            add_body_examples(op, components)
            describe(op, takes, optional, rules)
    schema["components"]["examples"] = dict(sorted(registry.items()))
