"""Typed path segments: resource ids are UUIDs, matched by the router itself.

A route declares an id segment as `{declaration_id:id}` and its parameter as
`IdPath`. The `id` convertor makes the router match only a UUID there, so a fixed
segment beside it (`/annual-declarations/overdue` next to
`/annual-declarations/{declaration_id:id}`) is never taken for an id, whatever
the order of the routes: `OPTIONS .../overdue` answers the methods of `overdue`.
Anything else in an id segment is 404 `not_found` (no such resource), as an
unknown id is. The document gives the same pattern (`services.common.app` checks
at start-up that every id parameter is declared both ways).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError
from starlette.convertors import Convertor, register_url_convertor

# What str(uuid.uuid4()) gives; the router also takes upper-case hex and lower-cases it.
ID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
ID_PATTERN = f"^{ID_REGEX}$"
ID_CONVERTOR = "id"


class IdConvertor(Convertor[str]):
    regex = ID_REGEX

    def convert(self, value: str) -> str:
        return value.lower()

    def to_string(self, value: str) -> str:
        if not re.fullmatch(ID_REGEX, value):
            raise ValueError(f"not an id: {value!r}")
        return value


register_url_convertor(ID_CONVERTOR, IdConvertor())


class MonthConvertor(Convertor[str]):
    """`{effective_from:month}`: a segment shaped like YYYY-MM (the parameter's pattern checks the month),
    so `/policies/{region_code}/versions` is never taken for a month."""

    regex = "[0-9]{4}-[0-9]{1,2}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("month", MonthConvertor())

IdPath = Annotated[
    str,
    Path(
        pattern=ID_PATTERN, examples=["3f2b8c1e-7a4d-4c55-9e0b-2d6f1a8b9c70"],
        json_schema_extra={"format": "uuid"}, description="a resource id (UUID)",
    ),
]


# A unified social credit code in a path: 18 characters of the GB 32100 alphabet (either case;
# the check character is verified where the code is registered).
CREDIT_CODE_PATH_PATTERN = "^[0-9A-HJ-NP-RTUW-Ya-hj-np-rtuw-y]{18}$"
CreditCodePath = Annotated[
    str, Path(pattern=CREDIT_CODE_PATH_PATTERN, examples=["91110000600037341L"], description="unified social credit code"),
]


def _iso_date(value: object) -> object:
    # pydantic alone takes `?on=0` as 1970-01-01 (a Unix time): a date in a URL is YYYY-MM-DD.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise PydanticCustomError("date_parsing", "a date is YYYY-MM-DD")
    return value


# A date in a path or query string: YYYY-MM-DD only (format date in the document).
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def is_id_parameter(name: str) -> bool:
    """Path parameters named `id` or `<thing>_id` are resource ids."""
    return name == "id" or name.endswith("_id")
