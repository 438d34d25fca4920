"""The fuzzer's exclusions (devtools/fuzz.toml) stay narrow: each names operations that exist."""

from __future__ import annotations

import json
import tomllib

from devtools.fuzz import CONFIG
from devtools.openapi import OUT

METHODS = ("get", "put", "post", "delete", "patch")


def test_every_exclusion_names_existing_operations_and_relaxes_one_check():
    doc = json.loads((OUT / "gateway.json").read_text(encoding="utf-8"))
    operations = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m in METHODS}
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert set(config) == {"operations"}, "only per-operation settings: no global exclusion"
    for block in config["operations"]:
        assert set(block) == {"include-name", "checks"}, block
        names = block["include-name"]
        assert names and set(names) <= operations, set(names) - operations
        assert len(block["checks"]) == 1, block["checks"]
        (check, settings), = block["checks"].items()
        assert settings.get("enabled", True), f"{check} is switched off"
