"""Keyset pagination: `?limit=&cursor=` answering `{"items": [...], "next_cursor": ...}`."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from services.common.errors import DomainError

T = TypeVar("T")

DEFAULT_LIMIT = 50
# What `encode_cursor` writes: unpadded URL-safe base64, nothing else.
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,400}$")
MAX_LIMIT = 500


class CursorInvalid(DomainError):
    status = 422
    code = "cursor_invalid"
    title_zh = "分页游标无效"
    title_en = "Invalid page cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: list[Any]) -> str:
    """Opaque cursor for the sort key of the last item served."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The sort key inside a cursor; 422 cursor_invalid for anything else."""
    if not cursor:
        return None
    if not _CURSOR_RE.match(cursor):
        raise CursorInvalid()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise CursorInvalid() from None
    if not isinstance(value, list):
        raise CursorInvalid()
    return value
