"""Abuse: what a hostile or broken client can send, and what the server must survive.

Covers: query limits that fragments could evade (cycles, depth through
fragments), the query cost limit (page sizes from literals, variables and
schema defaults, hidden in fragments, on mutations), batched bodies, malformed
and oddly typed bodies and content types, huge and deeply nested variables,
the text guard on every String input of every mutation (found by
introspection, as variables and as literals, over HTTP and websockets) with
nothing stored, the texts that must pass unchanged, display-name look-alikes
and invisible characters, websocket floods and protocol abuse on both
subprotocols (a server of our own with small limits), a subscriber that stops
reading, and login brute force from rotating addresses.

Every refusal must be a 4xx (or a GraphQL error) with a JSON body and a code,
never a 500 or a traceback, and the server must keep serving afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import unicodedata
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from strawberry.relay import GlobalID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from config import Settings, override_settings
from models.community import Member
from models.discussions import Post
from tests import dbtools
from tests.conftest import Server, free_port, start_server
from tests.helpers import (
    LOGIN,
    PASSWORD,
    Account,
    current_rules_id,
    login,
    member,
    staff,
    stop_process,
    unique,
    update_profile,
    wait_until_up,
)
from tests.test_discussions import (
    DISCUSSION_NODE,
    ckey,
    create_area,
    db_id,
    posted,
    start_thread,
)
from tests.test_registration import registration
from tests.ws import WsClient

ROOT = Path(__file__).resolve().parent.parent
COMMUNITY = str(Path(sys.executable).parent / "community")
GRAPHQL_RESPONSE = "application/graphql-response+json"
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
CLOSE_SECONDS = 6.0  # longest wait for the server to close a socket it must close

# The limits of the server started by the `limited` fixture.
WS_INIT_TIMEOUT = 1.0
WS_MAX_SUBSCRIPTIONS = 3
WS_BURST = 30
WS_RATE = 10.0
WS_QUEUE_EVENTS = 20

BAD_CHARACTERS = {
    "nul": "\u0000",
    "bidi override": "\u202e",
    "lone surrogate": "\ud800",
    "C1 control": "\u0085",
}

NOTIFICATIONS = "subscription { notifications { position kind } }"

CREATE_AREA_PLAIN = """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) { __typename ... on Error { code } }
}
"""

UPDATE_PROFILE_TYPENAME = """
mutation U($input: UpdateProfileInput!) { updateProfile(input: $input) { __typename } }
"""

POST_READ = """
query PostRead($id: ID!) { node(id: $id) { ... on Post { id body } } }
"""


# ---------------------------------------------------------------- helpers


def gid(type_name: str, row_id: int | str) -> str:
    return str(GlobalID(type_name, str(row_id)))


def area_input(title: str = "Väärinkäyttö") -> dict[str, Any]:
    return {
        "titleFi": title,
        "titleSv": f"{title} sv",
        "titleEn": f"{title} en",
        "membersCanStartThreads": True,
    }


def encode(payload: Any) -> bytes:
    """JSON with \\u escapes, so lone surrogates survive (httpx's own encoder cannot)."""
    return json.dumps(payload, ensure_ascii=True).encode()


async def raw_post(
    http: httpx.AsyncClient,
    content: bytes,
    content_type: str | None = "application/json",
    accept: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if accept is not None:
        sent["Accept"] = accept
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return await http.post("/graphql", content=content, headers=sent)


async def gql_raw(
    server: Server,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    accept: str | None = None,
) -> httpx.Response:
    payload = {"query": query, "variables": variables or {}}
    return await raw_post(server.http, encode(payload), token=token, accept=accept)


def error_code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    if not errors:
        return None
    code = (errors[0].get("extensions") or {}).get("code")
    return str(code) if code is not None else None


def messages(body: dict[str, Any]) -> list[str]:
    return [str(e.get("message")) for e in body.get("errors") or []]


def assert_no_traceback(response: httpx.Response) -> None:
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, text[:2000]
    assert "Unexpected error" not in text, text[:2000]


def assert_client_error(response: httpx.Response, allowed: dict[int, set[str]]) -> str:
    """A 4xx from `allowed` with a JSON body whose errors[0] carries a code it allows."""
    assert_no_traceback(response)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:2000])
    assert response.status_code in allowed, (response.status_code, response.text[:2000])
    assert response.headers.get("content-type", "").split(";")[0].strip() in {
        "application/json",
        GRAPHQL_RESPONSE,
    }, response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert "data" not in body or body["data"] is None, body
    code = error_code(body)
    assert code is not None, body
    codes = allowed[response.status_code]
    assert not codes or code in codes, (response.status_code, body)
    return code


def assert_refused_before_execution(
    response: httpx.Response, code: str, accept: str | None = None
) -> dict[str, Any]:
    """A request error: 200 with data null (application/json) or 400 without data."""
    assert_no_traceback(response)
    if accept == GRAPHQL_RESPONSE:
        assert response.status_code == 400, response.text[:2000]
        body: dict[str, Any] = response.json()
        assert "data" not in body, body
    else:
        assert response.status_code == 200, response.text[:2000]
        body = response.json()
        assert body.get("data") is None, body
    assert error_code(body) == code, body
    return body


async def assert_serving(server: Server) -> None:
    """The main server still answers a query that reads the database."""
    body = await server.gql("{ __typename rules { current { version } } }")
    assert body == {"data": {"__typename": "Query", "rules": {"current": {"version": 1}}}}, body


async def all_counts() -> dict[str, int]:
    """Rows in every table of both registers."""
    counts: dict[str, int] = {}
    for name in ("community", "contacts"):
        for table in await dbtools.list_tables(name):
            counts[f"{name}.{table}"] = await dbtools.count(name, table)
    return counts


async def community_strings() -> list[str]:
    """Every text value stored in the community register (not bytes)."""
    values: list[str] = []
    for rows in (await dbtools.all_rows("community")).values():
        for row in rows:
            values.extend(v for v in row.values() if isinstance(v, str))
    return values


# ---------------------------------------------------------------- limits: fragments


def fragment_chain(depth: int) -> str:
    """A document of operation depth `depth` built only of fragment spreads."""
    parts = ["query Deep { ...D0 }"]
    for level in range(depth):
        parts.append(f"fragment D{level} on Query {{ f{level} {{ ...D{level + 1} }} }}")
    parts.append(f"fragment D{depth} on Query {{ leaf }}")
    return "\n".join(parts)


FRAGMENT_CYCLES = [
    (
        "query Q { ...Loop } fragment Loop on Query { __typename ...Loop }",
        "Cannot spread fragment 'Loop' within itself.",
    ),
    (
        "query Q { ...A } fragment A on Query { rules { current { id } } ...B }"
        " fragment B on Query { __typename ...A }",
        "Cannot spread fragment 'A' within itself via 'B'.",
    ),
    (
        "query Q { areas { ...T } } fragment T on Area {"
        " threads(first: 100) { edges { node {"
        " posts(first: 100) { edges { node { id } } } } } }"
        " ...T }",
        "Cannot spread fragment 'T' within itself.",
    ),
]


async def test_a_fragment_spread_in_itself_is_a_validation_error(server: Server) -> None:
    for document, expected in FRAGMENT_CYCLES:
        for accept in (None, GRAPHQL_RESPONSE):
            # The depth, alias and cost rules must not loop or crash on the cycle either.
            async with asyncio.timeout(10):
                response = await raw_post(server.http, encode({"query": document}), accept=accept)
            assert_no_traceback(response)
            expected_status = 400 if accept == GRAPHQL_RESPONSE else 200
            assert response.status_code == expected_status, response.text
            body = response.json()
            assert body.get("data") is None, body
            assert expected in messages(body), body
    await assert_serving(server)


async def test_depth_through_fragments_counts_toward_the_limit(server: Server) -> None:
    limit = server.settings.max_query_depth
    over = (await raw_post(server.http, encode({"query": fragment_chain(limit + 1)}))).json()
    assert body_is_refused(over), over
    assert any(f"maximum operation depth of {limit}" in m for m in messages(over)), over
    # At the limit the depth rule is silent (the made-up fields are still unknown).
    at = (await raw_post(server.http, encode({"query": fragment_chain(limit)}))).json()
    assert at.get("errors"), at
    assert not any("depth" in m for m in messages(at)), at
    # Inline fragments count as well.
    selection = "leaf"
    for level in range(limit + 1):
        selection = f"... on Query {{ f{level} {{ {selection} }} }}"
    inline = (await raw_post(server.http, encode({"query": "{ " + selection + " }"}))).json()
    assert any(f"maximum operation depth of {limit}" in m for m in messages(inline)), inline


def body_is_refused(body: dict[str, Any]) -> bool:
    return body.get("data") is None and bool(body.get("errors"))


# ---------------------------------------------------------------- limits: cost

POST_LEAVES = """
  id threadId parentId depth body bodyHtml removed pending removedByModerator createdAt
  editedAt isMine author { id displayName staffBadge isFormerMember }
  reactions { kind count reactedByMe }
"""


def area_pages(threads: str, posts: str, leaves: str = "id body") -> str:
    return (
        "{ areas { id threads" + threads + " { edges { node { id posts" + posts + " {"
        " edges { node { " + leaves + " } } } } } } } }"
    )


VARIABLE_PAGES = """
query Pages($threads: Int!, $posts: Int! = 100) {
  areas { threads(first: $threads) { edges { node { posts(first: $posts) {
    edges { node { id body } } } } } } }
}
"""

FRAGMENT_PAGES = """
query Hidden { areas { ...AreaPage } }
fragment AreaPage on Area { threads(first: 100) { edges { node { ...ThreadPage } } } }
fragment ThreadPage on Thread { posts(first: 100) { edges { node { ...PostBits } } } }
fragment PostBits on Post { id body bodyHtml }
"""


async def a_small_discussion(server: Server) -> tuple[Account, str, str]:
    """An admin, an area with one thread and a reply: (admin, thread id, post id)."""
    admin = await staff(server, "admin")
    area = await create_area(server, admin)
    thread, first_post = await start_thread(server, admin, area)
    await posted(server, admin, thread, "Vastaus")
    return admin, thread, first_post


async def test_a_query_within_depth_and_aliases_but_too_costly_is_refused(server: Server) -> None:
    admin, _, _ = await a_small_discussion(server)
    costly = area_pages("(first: 100)", "(first: 100)")
    for accept in (None, GRAPHQL_RESPONSE):
        response = await gql_raw(server, costly, token=admin.token, accept=accept)
        assert_refused_before_execution(response, "QUERY_TOO_COMPLEX", accept)
    # The same shape with modest pages is served, and holds the real posts.
    modest = await server.gql(area_pages("(first: 10)", "(first: 10)"), token=admin.token)
    assert "errors" not in modest, modest
    [area] = modest["data"]["areas"]
    [thread] = area["threads"]["edges"]
    bodies = sorted(e["node"]["body"] for e in thread["node"]["posts"]["edges"])
    assert bodies == ["Aloitus", "Vastaus"], modest


async def test_schema_default_page_sizes_count(server: Server) -> None:
    admin, _, _ = await a_small_discussion(server)
    # threads and posts default to 20: 20 x 20 x ~23 fields is well over the limit ...
    defaults = await gql_raw(server, area_pages("", "", POST_LEAVES), token=admin.token)
    assert_refused_before_execution(defaults, "QUERY_TOO_COMPLEX")
    # ... while one post per thread is not.
    one = await server.gql(area_pages("", "(first: 1)", POST_LEAVES), token=admin.token)
    assert "errors" not in one, one
    assert len(one["data"]["areas"][0]["threads"]["edges"][0]["node"]["posts"]["edges"]) == 1


async def test_page_sizes_from_variables_and_their_defaults_count(server: Server) -> None:
    admin, _, _ = await a_small_discussion(server)
    big = await gql_raw(server, VARIABLE_PAGES, {"threads": 100, "posts": 100}, admin.token)
    assert_refused_before_execution(big, "QUERY_TOO_COMPLEX")
    # $posts left out: its default of 100 applies.
    defaulted = await gql_raw(server, VARIABLE_PAGES, {"threads": 100}, admin.token)
    assert_refused_before_execution(defaulted, "QUERY_TOO_COMPLEX")
    small = await server.gql(VARIABLE_PAGES, {"threads": 5, "posts": 5}, token=admin.token)
    assert "errors" not in small, small
    edges = small["data"]["areas"][0]["threads"]["edges"][0]["node"]["posts"]["edges"]
    assert len(edges) == 2, small


async def test_cost_hidden_in_fragments_counts(server: Server) -> None:
    admin, _, _ = await a_small_discussion(server)
    response = await gql_raw(server, FRAGMENT_PAGES, token=admin.token)
    assert_refused_before_execution(response, "QUERY_TOO_COMPLEX")


async def test_a_too_costly_mutation_is_not_executed(server: Server) -> None:
    admin = await staff(server, "admin")
    document = """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) {
    __typename
    ... on CreateAreaSuccess { area { id threads(first: 100) { edges { node {
      posts(first: 100) { edges { node { id body bodyHtml } } } } } } } }
  }
}
"""
    before = await all_counts()
    response = await gql_raw(server, document, {"input": area_input()}, admin.token)
    assert_refused_before_execution(response, "QUERY_TOO_COMPLEX")
    assert await all_counts() == before


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("accept", [None, GRAPHQL_RESPONSE])
async def test_a_batched_body_is_refused_and_nothing_runs(
    server: Server, accept: str | None
) -> None:
    admin = await staff(server, "admin")
    before = await all_counts()
    one = {"query": CREATE_AREA_PLAIN, "variables": {"input": area_input("Eräajo")}}
    for batch in ([one, one], [one], [{"query": "{ __typename }"}] * 50, []):
        response = await raw_post(server.http, encode(batch), accept=accept, token=admin.token)
        assert_client_error(response, {400: {"BATCHING_NOT_SUPPORTED"}})
        assert not isinstance(response.json(), list), response.text
    assert await all_counts() == before
    await assert_serving(server)


# ---------------------------------------------------------------- malformed bodies

MEDIA = {400: {"BAD_REQUEST"}, 415: {"UNSUPPORTED_MEDIA_TYPE"}}
BAD_REQUEST = {400: {"BAD_REQUEST"}}


def nested_list(depth: int) -> bytes:
    return b'{"query": "query Q($x: JSON) { __typename }", "variables": {"x": ' + (
        b"[" * depth + b"]" * depth + b"}}"
    )


def nested_object(depth: int) -> bytes:
    return b'{"query": "{ __typename }", "variables": {"x": ' + (
        b'{"a":' * depth + b"1" + b"}" * depth + b"}}"
    )


MALFORMED: list[tuple[str, bytes, str | None, dict[int, set[str]]]] = [
    ("invalid json", b'{"query": ', "application/json", BAD_REQUEST),
    ("not json at all", b"\xff\xfe\x00garbage", "application/json", BAD_REQUEST),
    ("json string", b'"{ __typename }"', "application/json", BAD_REQUEST),
    ("json number", b"42", "application/json", BAD_REQUEST),
    ("json null", b"null", "application/json", BAD_REQUEST),
    ("json true", b"true", "application/json", BAD_REQUEST),
    ("query a number", b'{"query": 42}', "application/json", BAD_REQUEST),
    ("query a list", b'{"query": ["{ __typename }"]}', "application/json", BAD_REQUEST),
    ("query an object", b'{"query": {"a": 1}}', "application/json", BAD_REQUEST),
    (
        "variables a list",
        b'{"query": "{ __typename }", "variables": [1, 2]}',
        "application/json",
        BAD_REQUEST,
    ),
    (
        "variables a string",
        b'{"query": "{ __typename }", "variables": "{}"}',
        "application/json",
        BAD_REQUEST,
    ),
    (
        "variables a number",
        b'{"query": "{ __typename }", "variables": 7}',
        "application/json",
        BAD_REQUEST,
    ),
    (
        "operationName a number",
        b'{"query": "{ __typename }", "operationName": 5}',
        "application/json",
        BAD_REQUEST,
    ),
    (
        "operationName a list",
        b'{"query": "{ __typename }", "operationName": ["a"]}',
        "application/json",
        BAD_REQUEST,
    ),
    ("no content type", b'{"query": "{ __typename }"}', None, MEDIA),
    ("text/plain", b'{"query": "{ __typename }"}', "text/plain", MEDIA),
    ("text/plain with charset", b'{"query": "{ __typename }"}', "text/plain; charset=utf-8", MEDIA),
    (
        "multipart",
        b'--xx\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        b'{"query": "{ __typename }"}\r\n--xx--\r\n',
        "multipart/form-data; boundary=xx",
        MEDIA,
    ),
    (
        "multipart without boundary",
        b"garbage",
        "multipart/form-data",
        MEDIA,
    ),
    (
        "form-urlencoded",
        b"query=%7B+__typename+%7D",
        "application/x-www-form-urlencoded",
        MEDIA,
    ),
    ("xml", b"<query>{ __typename }</query>", "application/xml", MEDIA),
    ("deeply nested list variable", nested_list(10_000), "application/json", BAD_REQUEST),
    ("deeply nested object variable", nested_object(10_000), "application/json", BAD_REQUEST),
]


@pytest.mark.parametrize("accept", [None, GRAPHQL_RESPONSE])
async def test_malformed_bodies_are_client_errors_with_a_code(
    server: Server, accept: str | None
) -> None:
    wrong: list[str] = []
    for name, content, content_type, allowed in MALFORMED:
        response = await raw_post(server.http, content, content_type, accept=accept)
        try:
            assert_client_error(response, allowed)
        except AssertionError as exc:
            wrong.append(f"{name}: {str(exc).splitlines()[0][:300]}")
    assert not wrong, "\n".join(wrong)
    await assert_serving(server)


async def test_gzip_declared_garbage_is_a_client_error(server: Server) -> None:
    for content in (b"this is not gzip at all", gzip.compress(b"{ not json either")):
        response = await raw_post(
            server.http, content, headers={"Content-Encoding": "gzip"}, accept=GRAPHQL_RESPONSE
        )
        assert_client_error(response, MEDIA)
    await assert_serving(server)


async def test_mutations_in_other_content_types_do_not_run(server: Server) -> None:
    # A browser may send text/plain, form and multipart bodies cross-site without asking.
    admin = await staff(server, "admin")
    before = await all_counts()
    payload = encode({"query": CREATE_AREA_PLAIN, "variables": {"input": area_input()}})
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xx",
        None,
    ):
        response = await raw_post(server.http, payload, content_type, token=admin.token)
        assert_client_error(response, MEDIA)
    assert await all_counts() == before


async def test_get_is_refused_for_mutations_and_queries(server: Server) -> None:
    admin = await staff(server, "admin")
    before = await all_counts()
    mutation = (
        'mutation { createArea(input: {titleFi: "a", titleSv: "b", titleEn: "c"}) { __typename } }'
    )
    for query in (mutation, "{ __typename }"):
        for accept in ("application/json", GRAPHQL_RESPONSE):
            response = await server.http.get(
                "/graphql",
                params={"query": query},
                headers={"Accept": accept, "Authorization": f"Bearer {admin.token}"},
            )
            assert_client_error(response, {400: set(), 405: set()})
    assert await all_counts() == before


async def test_a_huge_string_variable_gets_the_typed_length_error(server: Server) -> None:
    admin, thread, _ = await a_small_discussion(server)
    huge = "ä" * (server.settings.max_body_bytes // 2 - 2000)  # two bytes each in UTF-8
    payload = json.dumps(
        {
            "query": """
mutation AddPost($input: AddPostInput!) {
  addPost(input: $input) { __typename ... on Error { code } ... on InputError { field } }
}""",
            "variables": {"input": {"threadId": thread, "body": huge, "clientKey": ckey()}},
        },
        ensure_ascii=False,
    ).encode()
    assert len(payload) < server.settings.max_body_bytes
    before = await all_counts()
    response = await raw_post(server.http, payload, token=admin.token)
    assert_no_traceback(response)
    assert response.status_code == 200, response.text[:500]
    result = response.json()["data"]["addPost"]
    assert result == {"__typename": "InputError", "code": "TEXT_TOO_LONG", "field": "body"}
    assert await all_counts() == before


# ---------------------------------------------------------------- text guard: every String input

INTROSPECT_MUTATIONS = """
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name } } }
}
{
  __schema {
    mutationType {
      fields { name args { name defaultValue type { ...TypeRef } } type { ...TypeRef } }
    }
    types { kind name enumValues { name } inputFields { name defaultValue type { ...TypeRef } } }
  }
}
"""

TypeRef = dict[str, Any]


@dataclass
class Target:
    """One String value inside one mutation's arguments."""

    mutation: str
    path: tuple[str | int, ...]  # argument name, then input fields and list indices

    @property
    def label(self) -> str:
        return self.mutation + "." + ".".join(str(p) for p in self.path)


@dataclass
class Placeholders:
    """Valid-looking values for every argument type, pointing at real rows where it helps."""

    types: dict[str, dict[str, Any]]
    ids: dict[str, str]

    def named(self, ref: TypeRef) -> TypeRef:
        while ref["kind"] in {"NON_NULL", "LIST"}:
            ref = ref["ofType"]
        return ref

    def type_string(self, ref: TypeRef) -> str:
        if ref["kind"] == "NON_NULL":
            return self.type_string(ref["ofType"]) + "!"
        if ref["kind"] == "LIST":
            return "[" + self.type_string(ref["ofType"]) + "]"
        return str(ref["name"])

    def scalar(self, name: str, hint: str) -> Any:
        key = hint.lower()
        if name == "String":
            if "email" in key:
                return "someone.else@example.com"
            if "password" in key or key in {"current", "new"}:
                return PASSWORD
            if key == "clientkey":
                return ckey()
            if key == "language":
                return "fi"
            if key in {"login", "loginname"}:
                return "someone42"
            if key == "displayname":
                return "Joku Muu"
            return "Tavallinen teksti"
        if name == "ID":
            for suffix, value in self.ids.items():
                if key.endswith(suffix):
                    return value
            return gid("Post", 999_999)
        if name == "Int":
            return 1
        if name == "Float":
            return 1.5
        if name == "Boolean":
            return False
        if name == "DateTime":
            return "2031-01-01T12:00:00+00:00"
        if name == "Date":
            return "1990-05-17"
        if name == "JSON":
            return {}
        raise AssertionError(f"no placeholder for scalar {name}")

    def value(self, ref: TypeRef, hint: str, depth: int = 0) -> Any:
        if ref["kind"] == "NON_NULL":
            return self.value(ref["ofType"], hint, depth)
        if ref["kind"] == "LIST":
            return [self.value(ref["ofType"], hint, depth)]
        named = self.types[ref["name"]]
        if named["kind"] == "SCALAR":
            return self.scalar(named["name"], hint)
        if named["kind"] == "ENUM":
            return named["enumValues"][0]["name"]
        assert named["kind"] == "INPUT_OBJECT", named
        return {
            f["name"]: self.value(f["type"], f["name"], depth + 1)
            for f in named["inputFields"]
            if f["type"]["kind"] == "NON_NULL" and f["defaultValue"] is None
        }

    def with_bad(self, ref: TypeRef, hint: str, path: tuple[str | int, ...], bad: str) -> Any:
        """A value of type `ref` whose String at `path` holds `bad` in its middle."""
        if ref["kind"] == "NON_NULL":
            return self.with_bad(ref["ofType"], hint, path, bad)
        if ref["kind"] == "LIST":
            assert path and path[0] == 0
            return [self.with_bad(ref["ofType"], hint, path[1:], bad)]
        named = self.types[ref["name"]]
        if not path:
            assert named["name"] == "String", named
            text = str(self.scalar("String", hint))
            return text[:3] + bad + text[3:]
        base = self.value(ref, hint)
        field = next(f for f in named["inputFields"] if f["name"] == path[0])
        base[path[0]] = self.with_bad(field["type"], field["name"], path[1:], bad)
        return base

    def strings(
        self, ref: TypeRef, path: tuple[str | int, ...], seen: tuple[str, ...]
    ) -> Iterator[tuple[str | int, ...]]:
        """Paths to every String inside a value of type `ref` (recursive types once)."""
        if ref["kind"] == "NON_NULL":
            yield from self.strings(ref["ofType"], path, seen)
            return
        if ref["kind"] == "LIST":
            yield from self.strings(ref["ofType"], (*path, 0), seen)
            return
        named = self.types[ref["name"]]
        if named["kind"] == "SCALAR" and named["name"] == "String":
            yield path
        if named["kind"] == "INPUT_OBJECT" and named["name"] not in seen:
            for field in named["inputFields"]:
                yield from self.strings(field["type"], (*path, field["name"]), (*seen, ref["name"]))

    def literal(self, ref: TypeRef, value: Any) -> str:
        """`value` of type `ref` written as a GraphQL literal."""
        if value is None:
            return "null"
        if ref["kind"] == "NON_NULL":
            return self.literal(ref["ofType"], value)
        if ref["kind"] == "LIST":
            return "[" + ", ".join(self.literal(ref["ofType"], v) for v in value) + "]"
        named = self.types[ref["name"]]
        if named["kind"] == "ENUM":
            return str(value)
        if named["kind"] == "INPUT_OBJECT":
            fields = {f["name"]: f["type"] for f in named["inputFields"]}
            return (
                "{"
                + ", ".join(f"{k}: {self.literal(fields[k], v)}" for k, v in value.items())
                + "}"
            )
        if named["name"] == "JSON":
            return "{}"
        return json.dumps(value)  # strings, numbers, booleans: JSON escapes are GraphQL escapes


@dataclass
class MutationCase:
    target: Target
    document: str
    variables: dict[str, Any]
    literal_document: str


async def mutation_cases(
    server: Server, placeholders: Placeholders, bad: str
) -> list[MutationCase]:
    body = await server.gql(INTROSPECT_MUTATIONS)
    assert "errors" not in body, body
    schema = body["data"]["__schema"]
    placeholders.types = {t["name"]: t for t in schema["types"]}
    cases: list[MutationCase] = []
    for field in schema["mutationType"]["fields"]:
        args = {a["name"]: a for a in field["args"]}
        returns = placeholders.types[placeholders.named(field["type"])["name"]]
        selection = "" if returns["kind"] in {"SCALAR", "ENUM"} else " { __typename }"
        for arg in field["args"]:
            for path in placeholders.strings(arg["type"], (), ()):
                passed = {
                    a["name"]: placeholders.value(a["type"], a["name"])
                    for a in field["args"]
                    if a["type"]["kind"] == "NON_NULL" and a["defaultValue"] is None
                }
                passed[arg["name"]] = placeholders.with_bad(arg["type"], arg["name"], path, bad)
                declared = ", ".join(
                    f"${name}: {placeholders.type_string(args[name]['type'])}" for name in passed
                )
                used = ", ".join(f"{name}: ${name}" for name in passed)
                literal_args = ", ".join(
                    f"{name}: {placeholders.literal(args[name]['type'], value)}"
                    for name, value in passed.items()
                )
                cases.append(
                    MutationCase(
                        target=Target(field["name"], (arg["name"], *path)),
                        document=f"mutation M({declared}) {{ {field['name']}({used}){selection} }}",
                        variables=passed,
                        literal_document=(
                            f"mutation {{ {field['name']}({literal_args}){selection} }}"
                        ),
                    )
                )
    return cases


async def guard_world(server: Server) -> tuple[Account, Placeholders]:
    """An admin (the caller), a bystander, an area, a thread and a post to point ids at."""
    admin = await staff(server, "admin")
    bystander = await member(server)
    area = await create_area(server, admin)
    thread, post = await start_thread(server, admin, area)
    rules = await current_rules_id(server)
    ids = {
        "threadid": thread,
        "postid": post,
        "parentid": post,
        "areaid": area,
        "memberid": bystander.gid,
        "memberids": bystander.gid,
        "versionid": rules,
    }
    return admin, Placeholders(types={}, ids=ids)


@pytest.mark.parametrize("bad", list(BAD_CHARACTERS.values()), ids=list(BAD_CHARACTERS))
async def test_every_string_input_of_every_mutation_refuses_bad_text(
    server: Server, bad: str
) -> None:
    admin, placeholders = await guard_world(server)
    cases = await mutation_cases(server, placeholders, bad)
    covered = {c.target.mutation for c in cases}
    # A sanity check on the generator: the obvious text inputs are among the targets.
    for expected in ("register", "login", "addPost", "startThread", "publishRules", "resign"):
        assert expected in covered, sorted(covered)
    assert len(cases) > 40, len(cases)
    before = await all_counts()
    wrong: list[str] = []
    for case in cases:
        response = await gql_raw(server, case.document, case.variables, admin.token)
        try:
            assert_refused_before_execution(response, "INVALID_TEXT")
        except AssertionError:
            wrong.append(f"{case.target.label}: {response.status_code} {response.text[:300]}")
    assert not wrong, f"{len(wrong)} of {len(cases)} not refused:\n" + "\n".join(wrong)
    assert await all_counts() == before
    assert not [v for v in await community_strings() if bad in v]
    # The caller's session was not touched by any of it.
    assert (await server.gql("{ me { id } }", token=admin.token))["data"]["me"] is not None


async def test_every_string_literal_of_every_mutation_refuses_bad_text(server: Server) -> None:
    bad = BAD_CHARACTERS["nul"]  # as the escape \\u0000 inside a document's string literal
    admin, placeholders = await guard_world(server)
    cases = await mutation_cases(server, placeholders, bad)
    before = await all_counts()
    wrong: list[str] = []
    for case in cases:
        response = await gql_raw(server, case.literal_document, None, admin.token)
        try:
            assert_refused_before_execution(response, "INVALID_TEXT")
        except AssertionError:
            wrong.append(f"{case.target.label}: {response.status_code} {response.text[:300]}")
    assert not wrong, f"{len(wrong)} of {len(cases)} not refused:\n" + "\n".join(wrong)
    # A raw (unescaped) bidi override inside a literal counts as well.
    thread = placeholders.ids["threadid"]
    raw = (
        f'mutation {{ addPost(input: {{threadId: "{thread}", body: "abc\u202edef",'
        f' clientKey: "{ckey()}"}}) {{ __typename }} }}'
    )
    assert_refused_before_execution(await gql_raw(server, raw, None, admin.token), "INVALID_TEXT")
    assert await all_counts() == before


REFUSED_RANGE = [
    *("\u0001", "\u0008", "\u000b", "\u000c", "\u000e", "\u001f", "\u007f", "\u0080"),
    *("\u009f", "\u202a", "\u202d", "\u2066", "\u2069", "\udbff", "\udc00", "\udfff"),
    *("\ufffe", "\uffff"),
]
# Just outside the refused ranges, and what free text needs: all pass the guard.
ALLOWED_EDGES = [
    *("\t", "\n", "\r", "\u00a0", "\u200e", "\u200f", "\u2029", "\u202f", "\u2065"),
    *("\u206a", "\ufffd", "\U0001f600", "\U0010fffd"),
]


async def test_the_whole_refused_range_and_the_graphql_response_status(server: Server) -> None:
    anna = await member(server)
    before = await all_counts()
    wrong: list[str] = []
    for bad in REFUSED_RANGE:
        answers = [
            (
                accept,
                await gql_raw(
                    server,
                    UPDATE_PROFILE_TYPENAME,
                    {"input": {"displayName": f"Nimi{bad}Toinen"}},
                    anna.token,
                    accept,
                ),
            )
            for accept in (None, GRAPHQL_RESPONSE)
        ]
        # Any string in the variables counts, even one the operation does not declare.
        answers.append((None, await gql_raw(server, "{ __typename }", {"x": f"a{bad}"})))
        deep = {"deep": [{"list": ["ok", f"b{bad}"]}]}
        answers.append((None, await gql_raw(server, "{ __typename }", {"x": deep})))
        for accept, response in answers:
            try:
                assert_refused_before_execution(response, "INVALID_TEXT", accept)
            except AssertionError as exc:
                wrong.append(f"{bad!r}: {str(exc).splitlines()[0]}")
    assert not wrong, "\n".join(wrong)
    assert await all_counts() == before
    assert (await Member.get(id=anna.member_id)).display_name == anna.display_name


async def test_characters_next_to_the_refused_ranges_pass_the_guard(server: Server) -> None:
    wrong: list[str] = []
    for good in ALLOWED_EDGES:
        # Sent as JSON escapes: astral characters travel as surrogate pairs, which are fine.
        response = await gql_raw(server, "{ __typename }", {"x": f"a{good}b", "y": [good]})
        if response.status_code != 200 or response.json() != {"data": {"__typename": "Query"}}:
            wrong.append(f"{good!r}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


async def test_the_text_guard_holds_over_websockets_too(server: Server) -> None:
    admin, thread, _ = await a_small_discussion(server)
    before = await all_counts()
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        client = WsClient(ws)
        await client.send({"type": "connection_init", "payload": {"token": admin.token}})
        assert (await client.receive())["type"] == "connection_ack"
        document = """
mutation AddPost($input: AddPostInput!) { addPost(input: $input) { __typename } }
"""
        for n, bad in enumerate(BAD_CHARACTERS.values()):
            variables = {"input": {"threadId": thread, "body": f"x{bad}y", "clientKey": ckey()}}
            await ws.send(
                json.dumps(
                    {
                        "id": f"m{n}",
                        "type": "subscribe",
                        "payload": {"query": document, "variables": variables},
                    },
                    ensure_ascii=True,
                )
            )
            errors = await client.refusal(f"m{n}")
            assert errors[0].get("extensions", {}).get("code") == "INVALID_TEXT", errors
        # The socket lives on and serves a clean subscription operation.
        await client.subscribe("ok", "query { __typename }", {})
        assert await client.next_data("ok", "__typename") == "Query"
    assert await all_counts() == before


# ---------------------------------------------------------------- texts that must pass unchanged

GOOD_TEXTS = [
    "Hyvää päivää kaikille 👋🏽 ja kiitos 🎉 🇫🇮",
    "العربية مرحبا 2024 ja heprea שלום עולם",
    "Äiti, Åsa ja Östen söivät jäätelöä Ähtärissä; Öljy ja Ålands väg",
    "Yhdistelmämerkit x\u0303 q\u0307 ja devanagari नमस्ते ja thai สวัสดีครับ",
    "Tiếng Việt, Ελληνικά, Русский, 日本語のテキスト, 한국어",
    "Rivi yksi\nrivi kaksi\n\nkolmas kappale",
]
# Allowed in free text by the text guard, and meaningful: they must not be dropped either.
JOINED_TEXTS = [
    "Perhe 👨\u200d👩\u200d👧\u200d👦 ja sateenkaari 🏳️\u200d🌈",
    "Numero 2024\u200e ja heprea שלום\u200f עולם",
]


async def stored_texts(server: Server, texts: list[str]) -> list[str]:
    """Post each text; the ones not answered, stored and served back exactly."""
    admin = await staff(server, "admin")
    anna = await member(server)
    reader = await member(server)
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, anna, area)
    override_settings(replace(server.settings, posts_per_minute=1000, posts_per_hour=1000))
    changed: list[str] = []
    for text in texts:
        assert unicodedata.normalize("NFC", text) == text, text
        post = await posted(server, anna, thread, text)
        row = await Post.get(id=db_id(post["id"]))
        read = await server.gql(POST_READ, {"id": post["id"]}, token=reader.token)
        served = read["data"]["node"]["body"]
        if (post["body"], row.body, served) != (text, text, text):
            changed.append(f"{text!r}: answered {post['body']!r}, stored {row.body!r}")
    return changed


async def test_free_text_of_every_script_and_emoji_is_stored_exactly(server: Server) -> None:
    changed = await stored_texts(server, GOOD_TEXTS)
    assert not changed, "\n".join(changed)
    anna = await member(server)
    reader = await member(server)
    admin = await staff(server, "admin")
    thread, _ = await start_thread(server, anna, await create_area(server, admin))
    # A tab is allowed (not refused), and a decomposed accent is kept as its NFC form.
    tabbed = await posted(server, anna, thread, "sarake\tsarake")
    assert "sarake" in tabbed["body"]
    decomposed = await posted(server, anna, thread, "Cafe\u0301 au lait")
    assert decomposed["body"] == "Café au lait"
    node = await server.gql(DISCUSSION_NODE, {"id": decomposed["id"]}, token=reader.token)
    assert node["data"]["node"]["body"] == "Café au lait", node


async def test_zwj_sequences_and_direction_marks_are_stored_exactly(server: Server) -> None:
    changed = await stored_texts(server, JOINED_TEXTS)
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    title = "Ketju 👨\u200d👩\u200d👧 ja Öljy"
    thread, _ = await start_thread(server, anna, area, title=title)
    body = await server.gql(
        "query T($id: ID!) { node(id: $id) { ... on Thread { title } } }",
        {"id": thread},
        token=anna.token,
    )
    if body["data"]["node"]["title"] != title:
        changed.append(f"title {title!r}: {body['data']['node']['title']!r}")
    assert not changed, "\n".join(changed)


async def test_good_text_in_a_thread_title_and_a_display_name(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin, title="Keskustelu 🇫🇮 Åland")
    title = "Ketju 👋🏽 ja Öljy ✨"
    thread, _ = await start_thread(server, anna, area, title=title, body="Ensimmäinen 🎉")
    body = await server.gql(
        "query T($id: ID!) { node(id: $id) { ... on Thread { title } } }",
        {"id": thread},
        token=anna.token,
    )
    assert body["data"]["node"]["title"] == title, body
    for name in ("Åsa-Märta Öberg", "Мария Иванова", "Ελένη", "Mökki 42", "محمد علي"):
        result = await update_profile(server, anna.token, displayName=name)
        assert result["__typename"] == "UpdateProfileSuccess", (name, result)
        assert (await Member.get(id=anna.member_id)).display_name == name


# ---------------------------------------------------------------- display-name tricks

NAME_REFUSALS = {"NAME_INVALID", "NAME_INVALID_CHARACTERS", "NAME_RESERVED", "INVALID_TEXT"}

LOOKALIKE_NAMES = {
    "Cyrillic M in Matti": "\u041catti",
    "Cyrillic o in Moderaattori": "M\u043ederaattori",
    "Cyrillic a and e in Moderaattori": "Mod\u0435r\u0430attori",
    "Greek omicron in Moderaattori": "M\u03bfderaattori",
    "Greek Alpha in Anna": "\u0391nna Virtanen",
    "Cyrillic c in a Latin word": "Kahvi\u0441uppi",
    "Latin i in a Cyrillic word": "Мар\u0069я",
}

INVISIBLE_NAMES = {
    "zero width joiner": "Mat\u200dti",
    "zero width non-joiner": "Mat\u200cti",
    "word joiner": "Matti\u2060Meikä",
    "soft hyphen": "Mat\u00adti",
    "combining grapheme joiner": "Mat\u034fti",
    "mongolian vowel separator": "Matti\u180e",
    "braille blank": "Matti\u2800Meikä",
    "invisible times": "Matti\u2062Meikä",
    "left-to-right mark": "Matti\u200eMeikä",
}


async def register_name(server: Server, display_name: str) -> dict[str, Any]:
    data = registration(displayName=display_name)
    data["rulesVersionId"] = await current_rules_id(server)
    response = await gql_raw(
        server,
        """
mutation Register($input: RegisterInput!) {
  register(input: $input) { __typename ... on Error { code } ... on InputError { field } }
}""",
        {"input": data},
    )
    assert_no_traceback(response)
    body: dict[str, Any] = response.json()
    if body.get("data") is None:
        return {"__typename": "RequestError", "code": error_code(body)}
    result: dict[str, Any] = body["data"]["register"]
    return result


async def profile_name(server: Server, token: str, display_name: str) -> dict[str, Any]:
    response = await gql_raw(
        server,
        """
mutation U($input: UpdateProfileInput!) {
  updateProfile(input: $input) { __typename ... on Error { code } ... on InputError { field } }
}""",
        {"input": {"displayName": display_name}},
        token,
    )
    assert_no_traceback(response)
    body: dict[str, Any] = response.json()
    if body.get("data") is None:
        return {"__typename": "RequestError", "code": error_code(body)}
    result: dict[str, Any] = body["data"]["updateProfile"]
    return result


async def assert_names_refused(server: Server, names: dict[str, str], codes: set[str]) -> None:
    anna = await member(server)
    original = (await Member.get(id=anna.member_id)).display_name
    members_before = await dbtools.count("community", "member")
    wrong: list[str] = []
    for label, name in names.items():
        for how, result in (
            ("register", await register_name(server, name)),
            ("updateProfile", await profile_name(server, anna.token, name)),
        ):
            if result.get("code") not in codes or result.get("field", "displayName") != (
                "displayName"
            ):
                wrong.append(f"{label} ({name!r}) via {how}: {result}")
    assert not wrong, "\n".join(wrong)
    assert await dbtools.count("community", "member") == members_before
    assert (await Member.get(id=anna.member_id)).display_name == original


async def test_mixed_script_look_alike_display_names_are_refused(server: Server) -> None:
    # Someone is already called Matti and Kahvicuppi: the look-alikes would pose as them.
    await member(server, displayName="Matti")
    await member(server, displayName="Kahvicuppi")
    await assert_names_refused(server, LOOKALIKE_NAMES, NAME_REFUSALS | {"NAME_TAKEN"})


async def test_invisible_characters_in_display_names_are_refused(server: Server) -> None:
    await assert_names_refused(server, INVISIBLE_NAMES, NAME_REFUSALS)


async def test_a_display_name_of_invisible_fillers_is_refused(server: Server) -> None:
    await assert_names_refused(
        server,
        {
            "hangul filler": "\u3164\u3164\u3164\u3164",
            "halfwidth hangul filler": "\uffa0\uffa0\uffa0\uffa0",
            "hangul choseong and jungseong fillers": "\u115f\u1160\u115f\u1160",
            "filler beside a letter": "Matti \u3164\u3164",
        },
        NAME_REFUSALS,
    )


async def test_compatibility_and_case_variants_of_a_name_are_taken(server: Server) -> None:
    await member(server, displayName="Kahvikuppi Kaisa")
    await member(server, displayName="Jeffrey Office")
    variants = {
        "upper case": "KAHVIKUPPI KAISA",
        "fullwidth": "Ｋａｈｖｉｋｕｐｐｉ Ｋａｉｓａ",
        "separators": "Kahvi-kuppi.Kaisa",
        "ligatures": "Jeﬀrey Oﬃce",
        "accents": "Kähvikuppi Käisä",
    }
    await assert_names_refused(
        server, variants, {"NAME_TAKEN", "NAME_INVALID", "NAME_INVALID_CHARACTERS"}
    )


async def test_styled_letter_variants_of_a_name_are_taken(server: Server) -> None:
    await member(server, displayName="Kahvikuppi Kaisa")
    await assert_names_refused(
        server,
        {
            "mathematical bold": "𝐊𝐚𝐡𝐯𝐢𝐤𝐮𝐩𝐩𝐢 𝐊𝐚𝐢𝐬𝐚",
            "mathematical italic capitals": "𝐾𝐴𝐻𝑉𝐼𝐾𝑈𝑃𝑃𝐼 𝐾𝐴𝐼𝑆𝐴",
            "mathematical sans-serif": "𝖪𝖺𝗁𝗏𝗂𝗄𝗎𝗉𝗉𝗂 𝖪𝖺𝗂𝗌𝖺",
        },
        {"NAME_TAKEN", "NAME_INVALID", "NAME_INVALID_CHARACTERS"},
    )


# ---------------------------------------------------------------- websockets on a limited server


@dataclass
class Limited:
    """A second in-process server on the same databases, with small websocket limits."""

    url: str
    ws_url: str
    settings: Settings
    http: httpx.AsyncClient

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(server: Server) -> AsyncIterator[Limited]:
    settings = replace(
        server.settings,
        ws_init_timeout_seconds=WS_INIT_TIMEOUT,
        ws_max_subscriptions=WS_MAX_SUBSCRIPTIONS,
        ws_message_burst=WS_BURST,
        ws_messages_per_second=WS_RATE,
        ws_queue_events=WS_QUEUE_EVENTS,
        mail_worker=False,
    )
    uv, task, port = await start_server(settings, attach=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Limited(
                url=f"http://127.0.0.1:{port}",
                ws_url=f"ws://127.0.0.1:{port}/graphql",
                settings=settings,
                http=http,
            )
    finally:
        uv.should_exit = True
        await task
    # The session's main server is untouched by the second one coming and going.
    await assert_serving(server)


async def close_of(ws: ClientConnection, timeout: float = CLOSE_SECONDS) -> tuple[int, str]:
    """Read until the server closes the socket; its close code and reason."""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def send_quietly(ws: ClientConnection, message: str | bytes) -> bool:
    """Send unless the server has already closed the socket."""
    try:
        await ws.send(message)
    except ConnectionClosed:
        return False
    return True


@contextlib.asynccontextmanager
async def raw_socket(
    limited: Limited, protocol: str = TRANSPORT_WS
) -> AsyncIterator[ClientConnection]:
    async with connect(limited.ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
        assert ws.subprotocol == protocol
        yield ws


@contextlib.asynccontextmanager
async def acked(limited: Limited, token: str | None) -> AsyncIterator[WsClient]:
    async with raw_socket(limited) as ws:
        client = WsClient(ws)
        init: dict[str, Any] = {"type": "connection_init"}
        if token is not None:
            init["payload"] = {"token": token}
        await client.send(init)
        assert (await client.receive())["type"] == "connection_ack"
        yield client


async def pong(client: WsClient, timeout: float = 5.0) -> None:
    """The next message is a pong (WsClient.receive skips pongs, so read raw frames)."""
    async with asyncio.timeout(timeout):
        message = json.loads(await client.ws.recv())
    assert message["type"] == "pong", message


async def assert_limited_serving(limited: Limited, token: str) -> None:
    """After an abuse the limited server still serves HTTP and a fresh websocket."""
    body = await limited.gql("{ me { id } }", token=token)
    assert body["data"]["me"] is not None, body
    async with acked(limited, token) as client:
        await client.send({"type": "ping"})
        await pong(client)
        await client.subscribe("q", "query { __typename }", {})
        assert await client.next_data("q", "__typename") == "Query"


async def test_no_connection_init_is_closed_4408_after_the_timeout(
    server: Server, limited: Limited
) -> None:
    anna = await member(server)
    async with raw_socket(limited) as ws:
        started = asyncio.get_running_loop().time()
        code, _ = await close_of(ws, WS_INIT_TIMEOUT + 5)
        waited = asyncio.get_running_loop().time() - started
    assert code == 4408
    assert WS_INIT_TIMEOUT * 0.8 <= waited < WS_INIT_TIMEOUT + 4, waited
    await assert_limited_serving(limited, anna.token)


async def test_a_second_connection_init_is_closed_4429(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with acked(limited, anna.token) as client:
        await client.send({"type": "connection_init", "payload": {"token": anna.token}})
        assert await close_of(client.ws) == (4429, "Too many initialisation requests")
    await assert_limited_serving(limited, anna.token)


async def test_subscribe_before_init_is_closed_4401(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with raw_socket(limited) as ws:
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": NOTIFICATIONS}})
        )
        code, _ = await close_of(ws)
    assert code == 4401
    await assert_limited_serving(limited, anna.token)


async def test_a_duplicate_operation_id_is_closed_4409(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with acked(limited, anna.token) as client:
        await client.subscribe("same", NOTIFICATIONS, {})
        await client.send({"type": "ping"})
        await pong(client)  # the first one is running
        await client.subscribe("same", NOTIFICATIONS, {})
        code, reason = await close_of(client.ws)
    assert code == 4409, reason
    assert "same" in reason
    await assert_limited_serving(limited, anna.token)


async def test_too_many_subscriptions_are_closed_4429(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with acked(limited, anna.token) as client:
        for n in range(WS_MAX_SUBSCRIPTIONS):
            await client.subscribe(f"s{n}", NOTIFICATIONS, {})
        await client.send({"type": "ping"})
        await pong(client)  # all at the limit are running
        await client.subscribe("one-too-many", NOTIFICATIONS, {})
        assert await close_of(client.ws) == (4429, "Too many subscriptions")
    # Completed operations free their places: a client that completes may go on forever.
    async with acked(limited, anna.token) as client:
        for n in range(WS_MAX_SUBSCRIPTIONS * 3):
            await client.subscribe(f"c{n}", NOTIFICATIONS, {})
            await client.send({"type": "complete", "id": f"c{n}"})
            await asyncio.sleep(1 / WS_RATE)  # stay under the message rate
        await client.send({"type": "ping"})
        await pong(client)
    await assert_limited_serving(limited, anna.token)


async def test_a_message_flood_is_closed_4429(server: Server, limited: Limited) -> None:
    anna = await member(server)
    # Under the burst every message is answered.
    async with acked(limited, anna.token) as client:
        for _ in range(WS_BURST - 5):
            await client.send({"type": "ping"})
        for _ in range(WS_BURST - 5):
            await pong(client)
    # Over it the socket is closed.
    async with acked(limited, anna.token) as client:
        for _ in range(WS_BURST * 3):
            if not await send_quietly(client.ws, json.dumps({"type": "ping"})):
                break
        assert await close_of(client.ws) == (4429, "Too many messages")
    await assert_limited_serving(limited, anna.token)


async def test_the_message_rate_refills(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with acked(limited, anna.token) as client:
        # Twice the burst in all, with a pause that refills it: nothing is refused.
        for cycle in range(2):
            if cycle:
                await asyncio.sleep((WS_BURST - 3) / WS_RATE)
            for _ in range(WS_BURST - 5):
                await client.send({"type": "ping"})
            for _ in range(WS_BURST - 5):
                await pong(client)


BAD_FRAMES: dict[str, str | bytes] = {
    "binary": b"\x00\x01\x02",
    "binary json": b'{"type": "ping"}',
    "invalid json": "{not json",
    "no type": '{"id": "1"}',
    "unknown type": '{"type": "nonsense"}',
    "subscribe without payload": '{"id": "1", "type": "subscribe"}',
}
# JSON that is not an object crashes Strawberry's handler (message["type"] on a list).
NON_OBJECT_FRAMES: dict[str, str | bytes] = {
    "json list": "[1, 2]",
    "json string": '"ping"',
    "json number": "42",
    "json null": "null",
}


async def assert_frames_closed_4400(
    server: Server, limited: Limited, frames: dict[str, str | bytes]
) -> None:
    anna = await member(server)
    wrong: list[str] = []
    for label, frame in frames.items():
        async with acked(limited, anna.token) as client:
            await client.ws.send(frame)
            try:
                code, reason = await close_of(client.ws)
            except TimeoutError:
                code, reason = 0, "not closed"
        if code != 4400:
            wrong.append(f"{label}: closed {code} {reason!r}")
    assert not wrong, "\n".join(wrong)
    await assert_limited_serving(limited, anna.token)


async def test_bad_frames_are_closed_4400(server: Server, limited: Limited) -> None:
    await assert_frames_closed_4400(server, limited, BAD_FRAMES)


async def test_json_frames_that_are_not_objects_are_closed_4400(
    server: Server, limited: Limited
) -> None:
    await assert_frames_closed_4400(server, limited, NON_OBJECT_FRAMES)


async def test_a_frame_over_the_body_limit_is_closed_1009(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with acked(limited, anna.token) as client:
        pad = "x" * (limited.settings.max_body_bytes + 1024)
        await send_quietly(client.ws, json.dumps({"type": "ping", "payload": {"pad": pad}}))
        code, _ = await close_of(client.ws)
    assert code == 1009
    # Just under the limit is an ordinary message.
    async with acked(limited, anna.token) as client:
        pad = "x" * (limited.settings.max_body_bytes - 1024)
        await client.send({"type": "ping", "payload": {"pad": pad}})
        await pong(client)
    await assert_limited_serving(limited, anna.token)


async def legacy_acked(ws: ClientConnection, token: str) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    async with asyncio.timeout(5):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "connection_ack":
                return
            assert message["type"] == "ka", message


async def test_legacy_protocol_too_many_subscriptions_closes(
    server: Server, limited: Limited
) -> None:
    anna = await member(server)
    async with raw_socket(limited, LEGACY_WS) as ws:
        await legacy_acked(ws, anna.token)
        for n in range(WS_MAX_SUBSCRIPTIONS):
            await ws.send(
                json.dumps({"type": "start", "id": f"s{n}", "payload": {"query": NOTIFICATIONS}})
            )
        await asyncio.sleep(0.5)
        assert ws.close_code is None  # at the limit all is well
        await ws.send(
            json.dumps({"type": "start", "id": "over", "payload": {"query": NOTIFICATIONS}})
        )
        assert await close_of(ws) == (4429, "Too many subscriptions")
    await assert_limited_serving(limited, anna.token)


async def test_legacy_protocol_message_flood_closes(server: Server, limited: Limited) -> None:
    anna = await member(server)
    async with raw_socket(limited, LEGACY_WS) as ws:
        await legacy_acked(ws, anna.token)
        for n in range(WS_BURST * 3):
            if not await send_quietly(ws, json.dumps({"type": "stop", "id": f"x{n}"})):
                break
        assert await close_of(ws) == (4429, "Too many messages")
    await assert_limited_serving(limited, anna.token)


async def test_legacy_protocol_frame_over_the_body_limit_closes_1009(
    server: Server, limited: Limited
) -> None:
    anna = await member(server)
    async with raw_socket(limited, LEGACY_WS) as ws:
        await legacy_acked(ws, anna.token)
        pad = "x" * (limited.settings.max_body_bytes + 1024)
        await send_quietly(ws, json.dumps({"type": "stop", "id": pad}))
        code, _ = await close_of(ws)
    assert code == 1009
    await assert_limited_serving(limited, anna.token)


# ---------------------------------------------------------------- a subscriber that stops reading

SLOW_ALIASES = 28  # each event carries the post's text this many times over
SLOW_EVENTS = (
    "subscription Slow($threadId: ID!) { threadEvents(threadId: $threadId) { position post { "
    + " ".join(f"b{n}: body" for n in range(SLOW_ALIASES))
    + " } } }"
)
FAST_EVENTS = """
subscription Fast($threadId: ID!) {
  threadEvents(threadId: $threadId) { __typename position kind post { id } }
}
"""
ADD_POST_ID = """
mutation AddPost($input: AddPostInput!) {
  addPost(input: $input) { __typename ... on PostSuccess { post { id } } ... on Error { code } }
}
"""


async def metric(limited: Limited, name: str) -> float:
    """The sum of the samples of one metric on GET /metrics (Prometheus text)."""
    response = await limited.http.get("/metrics")
    assert response.status_code == 200, response.text[:500]
    total = 0.0
    found = False
    for line in response.text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)$", line)
        if match:
            found = True
            total += float(match.group(1))
    assert found, (name, response.text[:3000])
    return total


async def active_subscriptions(limited: Limited) -> float:
    return await metric(limited, "community_subscriptions_active")


async def until_subscriptions(limited: Limited, expected: float, seconds: float) -> None:
    value = await active_subscriptions(limited)
    async with asyncio.timeout(seconds):
        while value != expected:
            await asyncio.sleep(0.1)
            value = await active_subscriptions(limited)


def client_frame(text: str) -> bytes:
    """A masked text frame (clients must mask)."""
    payload = text.encode()
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    elif len(payload) < 65536:
        header.append(0x80 | 126)
        header += len(payload).to_bytes(2, "big")
    else:
        header.append(0x80 | 127)
        header += len(payload).to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole unmasked frames at the start of `data` as (opcode, payload), and the rest."""
    frames: list[tuple[int, bytes]] = []
    while len(data) >= 2:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                break
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            if len(data) < 10:
                break
            length, offset = int.from_bytes(data[2:10], "big"), 10
        if len(data) < offset + length:
            break
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames, data


class SlowClient:
    """A websocket client on a raw socket with a tiny receive buffer that reads only when told."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.buffer = b""
        self.pending: list[tuple[int, bytes]] = []

    async def _recv(self, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)

    async def open(self, token: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /graphql HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {TRANSPORT_WS}\r\n\r\n"
        )
        await loop.sock_sendall(self.sock, request.encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self._recv(5)
            assert chunk, "closed during the handshake"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        await self.send({"type": "connection_init", "payload": {"token": token}})
        assert (await self.message())["type"] == "connection_ack"

    async def send(self, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, client_frame(json.dumps(message)))

    async def message(self) -> dict[str, Any]:
        """The next text message (reads from the socket only as far as needed)."""
        while True:
            frames, self.buffer = server_frames(self.buffer)
            self.pending.extend(frames)
            if self.pending:
                opcode, payload = self.pending.pop(0)
                assert opcode == 1, (opcode, payload[:200])
                decoded: dict[str, Any] = json.loads(payload)
                return decoded
            chunk = await self._recv(5)
            assert chunk, "closed"
            self.buffer += chunk

    async def drain_until_closed(self, timeout: float) -> tuple[int | None, str]:
        """Read everything until the server ends the connection: (close code, reason or how)."""
        async with asyncio.timeout(timeout):
            while True:
                frames, self.buffer = server_frames(self.buffer)
                for opcode, payload in frames:
                    if opcode == 8:
                        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                        return code, payload[2:].decode(errors="replace")
                try:
                    chunk = await self._recv(timeout)
                except (ConnectionResetError, BrokenPipeError):
                    return None, "reset"
                if not chunk:
                    return None, "eof"
                self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def long_text(n: int) -> str:
    words = "Pitkä viesti äänekkäästä keskustelusta ja sen jälkimainingeista "
    text = f"Viesti numero {n}. " + words * 80
    return text[:4900]


async def test_a_subscriber_that_stops_reading_is_closed_and_others_get_everything(
    server: Server, limited: Limited
) -> None:
    admin = await staff(server, "admin")
    poster = await member(server)
    fast_reader = await member(server)
    slow_reader = await member(server)
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, poster, area)
    override_settings(replace(server.settings, posts_per_minute=10_000, posts_per_hour=10_000))
    baseline = await active_subscriptions(limited)
    slow_before = await metric(limited, "community_slow_consumers_total")
    posts = 60
    port = int(limited.url.rsplit(":", 1)[1])
    slow = SlowClient(port)
    try:
        async with acked(limited, fast_reader.token) as fast:
            await fast.subscribe("events", FAST_EVENTS, {"threadId": thread})
            await slow.open(slow_reader.token)
            await slow.send(
                {
                    "id": "slow",
                    "type": "subscribe",
                    "payload": {"query": SLOW_EVENTS, "variables": {"threadId": thread}},
                }
            )
            await until_subscriptions(limited, baseline + 2, 10)
            await asyncio.sleep(0.3)  # both streams past their first read

            reader = asyncio.create_task(fast.events_until(posts + 1))
            for n in range(posts):
                answer = await limited.gql(
                    ADD_POST_ID,
                    {"input": {"threadId": thread, "body": long_text(n), "clientKey": ckey()}},
                    token=poster.token,
                )
                assert answer["data"]["addPost"]["__typename"] == "PostSuccess", answer
            events = await asyncio.wait_for(reader, 30)
            # The fast subscriber got every event, in order, once.
            assert [e["position"] for e in events] == list(range(2, posts + 2))
            # The slow one was dropped and its subscription released.
            await until_subscriptions(limited, baseline + 1, 20)
            assert await metric(limited, "community_slow_consumers_total") == slow_before + 1
            code, how = await slow.drain_until_closed(20)
            assert code in (None, 1013), (code, how)
            if code is not None:
                assert how == "Subscriber too slow", how
        await until_subscriptions(limited, baseline, 10)
    finally:
        slow.close()
    # The thread still works for everyone.
    await posted(server, poster, thread, "Vielä yksi viesti")
    await assert_limited_serving(limited, slow_reader.token)


# ---------------------------------------------------------------- login brute force


def assert_rate_limited(result: dict[str, Any], window: int) -> None:
    assert result["__typename"] == "RateLimitedError", result
    assert result["code"] == "TOO_MANY_ATTEMPTS", result
    assert 0 < result["retryAfterSeconds"] <= window, result


def assert_invalid_credentials(result: dict[str, Any]) -> None:
    assert result["__typename"] == "NotAllowedError", result
    assert result["code"] == "INVALID_CREDENTIALS", result


async def login_from(
    http: httpx.AsyncClient, identifier: str, password: str, address: str
) -> dict[str, Any]:
    response = await http.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"login": identifier, "password": password}},
        headers={"X-Forwarded-For": address},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["login"]
    return result


def throttle(server: Server, account: int, address: int, window: int) -> None:
    """Sign-in failures allowed per account and per client address in ``window`` seconds."""
    override_settings(
        replace(
            server.settings,
            login_max_failures_account=account,
            login_max_failures_address=address,
            login_window_seconds=window,
        )
    )


async def test_one_account_from_many_addresses_is_still_throttled(server: Server) -> None:
    window = 600
    throttle(server, account=3, address=1000, window=window)
    victim = await member(server)
    for n in range(3):
        result = await login_from(
            server.http, victim.login_name, f"guess {n} xx", f"10.0.0.{n + 1}"
        )
        assert_invalid_credentials(result)
    for n in range(3):
        # A fresh address for every guess changes nothing, not even with the right password.
        address = f"192.0.2.{n + 10}"
        assert_rate_limited(
            await login_from(server.http, victim.login_name, PASSWORD, address), window
        )
        assert victim.email is not None
        assert_rate_limited(await login_from(server.http, victim.email, PASSWORD, address), window)


async def test_an_unknown_name_is_throttled_like_a_real_account(server: Server) -> None:
    window = 600
    throttle(server, account=3, address=1000, window=window)
    real = await member(server)
    ghost = unique("ghostname")
    answers: dict[str, list[dict[str, Any]]] = {real.login_name: [], ghost: []}
    for name in answers:
        for _ in range(5):
            answers[name].append(await login(server, name, "not the password x"))
    shapes = {
        name: [(a["__typename"], a["code"]) for a in results] for name, results in answers.items()
    }
    assert shapes[real.login_name] == shapes[ghost], shapes
    assert shapes[ghost][3] == ("RateLimitedError", "TOO_MANY_ATTEMPTS"), shapes
    assert_rate_limited(answers[ghost][4], window)


async def test_websocket_sign_ins_count_toward_the_address_throttle(server: Server) -> None:
    window = 900
    throttle(server, account=100, address=3, window=window)
    real = await member(server)
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        client = WsClient(ws)
        await client.send({"type": "connection_init"})
        assert (await client.receive())["type"] == "connection_ack"
        for n in range(3):
            await client.subscribe(
                f"l{n}", LOGIN, {"login": unique("wsghost"), "password": "wrong password z"}
            )
            result = await client.next_data(f"l{n}", "login")
            assert_invalid_credentials(result)
            assert (await client.receive())["type"] == "complete"
    # Now the address is spent, over HTTP too, even with the right password.
    assert_rate_limited(await login(server, real.login_name, PASSWORD), window)


@dataclass
class ServeProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def community_serve(settings: Settings, log: Path, **env_overrides: str) -> ServeProcess:
    """`community serve` in a subprocess on the session's databases (waits until it is up)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMMUNITY_", "CONTACTS_", "SMTP_", "LOGIN_", "BROADCAST_"))
        and k not in {"TRUST_PROXY_HEADERS", "FORWARDED_ALLOW_IPS"}
    }
    env.update(
        COMMUNITY_ENV="development",
        COMMUNITY_DB_URL=settings.community_db_url,
        CONTACTS_DB_URL=settings.contacts_db_url,
        BROADCAST_URL="memory://",
        MAIL_DIR=str(log.parent / "mail"),
        MAIL_WORKER="false",
        LOG_LEVEL="warning",
        WEB_CONCURRENCY="1",
    )
    env.update(env_overrides)
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [COMMUNITY, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/healthz", log, "community serve")
    except BaseException:
        stop_process(process)
        raise
    return ServeProcess(url=f"http://127.0.0.1:{port}", process=process, log=log)


async def test_forwarded_addresses_are_ignored_unless_trusted(
    server: Server, tmp_path: Path
) -> None:
    """`community serve` without TRUST_PROXY_HEADERS: X-Forwarded-For cannot dodge the
    address throttle. (The in-process test server, like uvicorn's default, trusts
    loopback proxies; the command line must not.)"""
    untrusted = await asyncio.to_thread(
        community_serve,
        server.settings,
        tmp_path / "serve.log",
        LOGIN_MAX_FAILURES_ADDRESS="3",
        LOGIN_MAX_FAILURES_ACCOUNT="100",
    )
    try:
        async with httpx.AsyncClient(base_url=untrusted.url, timeout=30) as http:
            for n in range(3):
                result = await login_from(http, f"nobody{n}", "wrong password q", f"10.1.0.{n}")
                assert_invalid_credentials(result)
            refused = await login_from(http, "nobody9", "wrong password q", "10.1.0.99")
            assert_rate_limited(refused, 900)
            refused = await login_from(http, "nobody8", "wrong password q", "127.0.0.1")
            assert_rate_limited(refused, 900)
    finally:
        await asyncio.to_thread(stop_process, untrusted.process)
