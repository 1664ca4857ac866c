"""Scalars with the checks the resolvers rely on.

``DateTime`` inputs must carry a UTC offset and lie within years 1900-2999:
Strawberry's own parser accepts naive times (which cannot be compared with
the aware times the server keeps) and any year, and both ended in
"Unexpected error." deep in a resolver. A refused value is a request error
("Value cannot represent a DateTime: ...") before anything runs.
"""

from __future__ import annotations

import datetime as dt

from strawberry.schema.types.base_scalars import isoformat, wrap_parser
from strawberry.types.scalar import ScalarDefinition

EARLIEST_YEAR = 1900
LATEST_YEAR = 2999


def parse_aware(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("a time needs its UTC offset (for example 2027-01-31T12:00:00+02:00)")
    try:
        utc = parsed.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range") from exc
    if not EARLIEST_YEAR <= utc.year <= LATEST_YEAR:
        raise ValueError(f"the year must be {EARLIEST_YEAR} to {LATEST_YEAR}")
    return utc


AWARE_DATETIME = ScalarDefinition(
    name="DateTime",
    description="Date with time (isoformat)",
    specified_by_url=None,
    serialize=isoformat,
    parse_value=wrap_parser(parse_aware, "DateTime"),
    parse_literal=None,
    origin=dt.datetime,
)
