"""The committed OpenAPI documents are what the apps produce (run `make openapi` after changing routes)."""

from __future__ import annotations

from pathlib import Path

from devtools.openapi import OUT, all_documents, render


def test_committed_openapi_documents_match_the_apps():
    docs = all_documents()
    stale = []
    for name, doc in docs.items():
        path = OUT / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(doc):
            stale.append(name)
    assert not stale, f"openapi/ is stale for {stale}: run `make openapi` and commit"


def test_every_service_document_has_its_paths_under_its_prefix():
    docs = all_documents()
    for name in ("registration", "contribution", "card", "review"):
        for path in docs[name].get("paths", {}):
            assert path.startswith((f"/{name}/v1/", "/healthz", "/readyz")), path
    assert Path(OUT).is_dir()
