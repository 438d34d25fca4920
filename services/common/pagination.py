"""Keyset pagination: `?limit=&cursor=` answering `{"items": [...], "next_cursor": ...}`.

A list route takes `limit: LimitQuery = DEFAULT_LIMIT, cursor: CursorQuery = None`, its
service runs `keyset_page` over its select and answers a `Page[T]` (or a subclass of it,
named for the document: `class CardPage(Page[CardOut])`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel
from pydantic_core import PydanticCustomError
from sqlalchemy import DateTime, Integer, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.types import TypeDecorator

from services.common.clock import aware
from services.common.errors import DomainError, register_validation_code
from services.common.identifiers import AsciiInt

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
# Declare it `cursor: CursorQuery = None`: the document then says string, not string-or-null, and the
# type checker knows the value is None when the query has none.
if TYPE_CHECKING:
    CursorQuery = Annotated[str | None, Query()]
else:
    CursorQuery = Annotated[
        str,
        Query(
            description="the `next_cursor` of the previous page; absent for the first page",
            json_schema_extra={"pattern": CURSOR_PATTERN, "minLength": 1, "maxLength": CURSOR_MAX_LENGTH},
        ),
        AfterValidator(_cursor),
    ]


# `?limit=`: how many items a page holds at the most.
LimitQuery = Annotated[AsciiInt, Query(ge=1, le=MAX_LIMIT)]


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


# A key column: a mapped attribute (`Card.id`) or a column expression.
KeyColumn = InstrumentedAttribute[Any] | ColumnElement[Any]


@dataclass
class KeysetPage:
    """One page of a select: its rows (each the one entity selected, or a tuple of what
    was selected) and the cursor of the next page (None on the last one)."""

    rows: list[Any]
    next_cursor: str | None


def _kind(column: KeyColumn) -> type:
    sql_type = column.type
    if isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
    if isinstance(sql_type, DateTime):
        return datetime
    if isinstance(sql_type, Integer):
        return int
    return str


def _key_value(kind: type, value: Any) -> Any:
    """A key read back from a cursor, as the column compares it; CursorInvalid for anything else."""
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        if kind is not datetime:
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise CursorInvalid()


def _cursor_value(value: Any) -> Any:
    return aware(value).isoformat() if isinstance(value, datetime) else value


def _after(keys: Sequence[KeyColumn], values: Sequence[Any], descending: bool) -> ColumnElement[bool]:
    """Rows after `values` in the order of `keys` (spelt out, not a row-value comparison, for every database)."""
    terms = []
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        beyond = key < value if descending else key > value
        terms.append(and_(*(k == v for k, v in zip(keys[:i], values[:i], strict=True)), beyond))
    return or_(*terms)


async def keyset_page(
    session: AsyncSession,
    stmt: Select[*tuple[Any, ...]],
    *,
    keys: Sequence[KeyColumn],
    cursor: str | None,
    limit: int,
    descending: bool = False,
) -> KeysetPage:
    """The page of `stmt` after `cursor`, ordered by `keys` (unique together; integer, text or
    time columns), `limit` rows at the most.

    The cursor holds the keys of the last row served; a cursor that is not one of ours, or
    does not fit these keys, is 422 `cursor_invalid`.
    """
    after = decode_cursor(cursor)
    if after is not None:
        if len(after) != len(keys):
            raise CursorInvalid()
        stmt = stmt.where(_after(keys, [_key_value(_kind(k), v) for k, v in zip(keys, after, strict=True)], descending))
    width = len(stmt.column_descriptions)
    order = [k.desc() if descending else k.asc() for k in keys]
    rows = (await session.execute(stmt.add_columns(*keys).order_by(*order).limit(limit + 1))).all()
    served = rows[:limit]
    next_cursor = (
        encode_cursor([_cursor_value(v) for v in served[-1][width:]]) if len(rows) > limit and served else None
    )
    return KeysetPage(rows=[r[0] if width == 1 else tuple(r[:width]) for r in served], next_cursor=next_cursor)
