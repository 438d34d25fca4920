"""Keyset pagination: `?limit=&cursor=` answering `{"items": [...], "next_cursor": ...}`."""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel
from pydantic_core import PydanticCustomError

from services.common.errors import DomainError, register_validation_code

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


register_validation_code("cursor_invalid", "分页游标无效")

CURSOR_MAX_LENGTH = 400
# What `encode_cursor` writes: unpadded URL-safe base64.
CURSOR_PATTERN = f"^[A-Za-z0-9_-]{{1,{CURSOR_MAX_LENGTH}}}$"


def _cursor(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(CURSOR_PATTERN[1:-1], value):
        raise PydanticCustomError("cursor_invalid", "a page cursor is the next_cursor of the previous page")
    return value


# `?cursor=`: absent for the first page, else the previous page's `next_cursor`.
# Empty, too long or not base64url is 422 `cursor_invalid` (as the document's pattern says).
# Declare it `cursor: CursorQuery = None` (the document then says string, not string-or-null).
CursorQuery = Annotated[
    str,
    Query(
        description="the `next_cursor` of the previous page; absent for the first page",
        json_schema_extra={"pattern": CURSOR_PATTERN, "minLength": 1, "maxLength": CURSOR_MAX_LENGTH},
    ),
    AfterValidator(_cursor),
]


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
