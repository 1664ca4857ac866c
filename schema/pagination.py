"""Cursor connections (Relay style) over Tortoise querysets, keyset-paginated by id."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry import relay
from tortoise.queryset import QuerySet

from resolvers.errors import Code, UserError

MAX_PAGE = 100
DB_ID_MAX = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL)


def db_id(value: object) -> int | None:
    """A global id's node part as a row id, or None when it cannot name a row."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= DB_ID_MAX else None


T = TypeVar("T")


def require_id(gid: relay.GlobalID | None, type_name: str, field: str) -> int:
    """The database id behind a global id of ``type_name``, or NOT_FOUND naming ``field``."""
    node_id = db_id(gid.node_id) if gid is not None and gid.type_name == type_name else None
    if node_id is None:
        raise UserError(Code.NOT_FOUND, field=field)
    return node_id


async def nodes_in_order(
    queryset: QuerySet[Any], node_ids: Iterable[str], to_node: Callable[[Any], T]
) -> list[T | None]:
    """Rows of ``queryset`` for ``node_ids``, in that order; None where missing.

    The caller narrows ``queryset`` to what the viewer may see, so a forbidden
    row is indistinguishable from a missing one.
    """
    ids = [db_id(node_id) for node_id in node_ids]
    rows = {row.id: row for row in await queryset.filter(id__in=[i for i in ids if i])}
    return [to_node(rows[i]) if i in rows else None for i in ids]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"c:{position}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        position = int(value)
        if kind != "c" or not 0 <= position <= DB_ID_MAX:
            raise ValueError(cursor)
        return position
    except (ValueError, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor.", extensions={"code": "BAD_USER_INPUT"}) from None


def check_first(first: int) -> None:
    if not 1 <= first <= MAX_PAGE:
        raise GraphQLError(
            f"`first` must be between 1 and {MAX_PAGE}.", extensions={"code": "BAD_USER_INPUT"}
        )


async def paginate(
    queryset: QuerySet[Any],
    first: int,
    after: str | None,
    to_node: Callable[[Any], T] | Callable[[Any], Awaitable[T]],
    newest_first: bool = True,
) -> Connection[T]:
    """One page of ``queryset`` ordered by id (newest first by default)."""
    check_first(first)
    if after is not None:
        position = decode_cursor(after)
        queryset = (
            queryset.filter(id__lt=position) if newest_first else queryset.filter(id__gt=position)
        )
    rows = await queryset.order_by("-id" if newest_first else "id").limit(first + 1)
    edges = []
    for row in rows[:first]:
        node = to_node(row)
        if isinstance(node, Awaitable):
            node = await node
        edges.append(Edge(cursor=encode_cursor(row.id), node=node))
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )
