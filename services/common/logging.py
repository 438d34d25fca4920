"""JSON logs with the request id; id numbers are masked on every line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.common.context import request_id_var
from services.common.pii import redact


class RedactingJsonFormatter(logging.Formatter):
    """One JSON object per line; anything shaped like an id number is masked."""

    def __init__(self, service: str, as_json: bool = True) -> None:
        super().__init__()
        self.service = service
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if record.exc_info:
            message += "\n" + redact(self.formatException(record.exc_info))
        if not self.as_json:
            return f"{self.service} {record.levelname} {record.name}: {message}"
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": message,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    """Install the redacting formatter on the root logger (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_socialsec", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingJsonFormatter(service, as_json))
    handler._socialsec = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).propagate = False
        logging.getLogger(noisy).handlers = []
    # httpx and httpcore log every request at INFO: the feed consumers poll every
    # second, so those lines would drown the service's own. Warnings still show.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
