"""API conventions and limits over real HTTP.

GraphQL-over-HTTP media types and status codes, the query limits (depth,
aliases, tokens, body size, page size), error masking, the `node` field with
bad ids, production hardening (no introspection, no suggestions, no IDE) and
the health probes.

The production checks run against a second server in a subprocess: only one
Tortoise global context can exist per process, so a second app cannot start
inside the test process.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from strawberry.relay import GlobalID

from models.community import RulesVersion
from resolvers.errors import MESSAGES, Code
from tests.conftest import Server, free_port
from tests.helpers import (
    ACCEPT_RULES,
    AUDIT_LOG,
    NODE,
    READ_MEMBER_CONTACT,
    REVOKE_SESSION,
    member,
    staff,
    stop_process,
    wait_until_up,
)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
GRAPHQL_RESPONSE = "application/graphql-response+json"

RULES_CURRENT = "{ rules { current { __typename id version } } }"
UNKNOWN_FIELD = "{ rules { current { id nope } } }"
MISSPELLED_FIELD = "{ rule { current { id } } }"
SYNTAX_ERROR = "{ rules { current { id "
HISTORY_FIRST = """
query History($first: Int!) {
  rules { history(first: $first) { edges { node { __typename id version } } } }
}
"""
NODE_LITERAL_GARBAGE = '{ node(id: "garbage") { __typename id } }'
INTROSPECTION = "{ __schema { types { name } } }"
TYPENAME_AND_RULES = "{ __typename rules { current { version } } }"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


def nested(depth: int) -> str:
    """A document of operation depth ``depth`` (root fields are at depth 0)."""
    selection = "leaf"
    for level in range(depth):
        selection = f"f{level} {{ {selection} }}"
    return "{ " + selection + " }"


def messages(body: dict[str, Any]) -> list[str]:
    return [str(e["message"]) for e in body.get("errors") or []]


async def post(
    server: Server, payload: Any, accept: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return await server.http.post("/graphql", json=payload, headers=headers, **kwargs)


def media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip()


# --- GraphQL over HTTP: media types and status codes ---------------------------------------


async def test_graphql_response_media_type_for_valid_query(server: Server) -> None:
    response = await post(server, {"query": RULES_CURRENT}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 200, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    current = response.json()["data"]["rules"]["current"]
    assert current["__typename"] == "RulesVersion"
    assert current["version"] == 1
    row = await RulesVersion.get(version=1)
    assert GlobalID.from_id(current["id"]).node_id == str(row.id)


async def test_graphql_response_validation_error_is_400_without_data(server: Server) -> None:
    response = await post(server, {"query": UNKNOWN_FIELD}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body, body
    assert any("Cannot query field 'nope'" in m for m in messages(body)), body


async def test_graphql_response_syntax_error_is_400_without_data(server: Server) -> None:
    response = await post(server, {"query": SYNTAX_ERROR}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body, body
    assert any(m.startswith("Syntax Error") for m in messages(body)), body


async def test_graphql_response_preferred_by_quality(server: Server) -> None:
    accept = f"application/json;q=0.5, {GRAPHQL_RESPONSE}"
    response = await post(server, {"query": UNKNOWN_FIELD}, accept=accept)
    assert response.status_code == 400, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    preferred_json = f"application/json, {GRAPHQL_RESPONSE};q=0.5"
    response = await post(server, {"query": UNKNOWN_FIELD}, accept=preferred_json)
    assert response.status_code == 200, response.text
    assert media_type(response) == "application/json"


@pytest.mark.parametrize("accept", ["application/json", None])
async def test_application_json_validation_error_is_200(server: Server, accept: str | None) -> None:
    response = await post(server, {"query": UNKNOWN_FIELD}, accept=accept)
    assert response.status_code == 200, response.text
    assert media_type(response) == "application/json"
    body = response.json()
    assert body["data"] is None
    assert any("Cannot query field 'nope'" in m for m in messages(body)), body


async def test_execution_error_is_200_with_data_even_for_graphql_response(server: Server) -> None:
    # Once execution started the answer is 200, with `data` (here null by non-null bubbling).
    response = await post(
        server, {"query": HISTORY_FIRST, "variables": {"first": 101}}, accept=GRAPHQL_RESPONSE
    )
    assert response.status_code == 200, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, "application/json", None])
@pytest.mark.parametrize("payload", [{}, {"variables": {}}, {"query": None}])
async def test_missing_query_is_400(
    server: Server, accept: str | None, payload: dict[str, Any]
) -> None:
    response = await post(server, payload, accept=accept)
    assert response.status_code == 400, response.text
    assert "No GraphQL query found" in response.text
    if accept == GRAPHQL_RESPONSE:
        assert media_type(response) == GRAPHQL_RESPONSE
        assert "data" not in response.json()


async def test_invalid_json_body_is_400(server: Server) -> None:
    response = await server.http.post(
        "/graphql",
        content=b'{"query": ',
        headers={"Content-Type": "application/json", "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400, response.text


# --- Limits --------------------------------------------------------------------------------


async def test_query_depth_over_limit_refused(server: Server) -> None:
    limit = server.settings.max_query_depth
    assert limit == 12
    body = (await post(server, {"query": nested(limit + 1)})).json()
    assert body["data"] is None
    assert any("maximum operation depth of 12" in m for m in messages(body)), body
    # At the limit the depth rule is silent (the made-up fields are still unknown).
    body = (await post(server, {"query": nested(limit)})).json()
    assert body["errors"], body
    assert not any("depth" in m for m in messages(body)), body


async def test_query_depth_refused_with_graphql_response_400(server: Server) -> None:
    response = await post(
        server, {"query": nested(server.settings.max_query_depth + 1)}, accept=GRAPHQL_RESPONSE
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    assert any("depth" in m for m in messages(body)), body


async def test_aliases_over_limit_refused(server: Server) -> None:
    limit = server.settings.max_aliases
    assert limit == 30
    ok = (await post(server, {"query": aliases(limit)})).json()
    assert "errors" not in ok, ok
    assert len(ok["data"]) == limit
    assert ok["data"]["a0"] == "Query"
    refused = await post(server, {"query": aliases(limit + 1)}, accept=GRAPHQL_RESPONSE)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert "data" not in body
    assert any("31 aliases found. Allowed: 30" in m for m in messages(body)), body


async def test_tokens_over_limit_refused(server: Server) -> None:
    limit = server.settings.max_tokens
    assert limit == 2000
    # `{ rules { current { ` is 5 tokens, each `id` one more, and 3 closing braces.
    too_many = "{ rules { current { " + "id " * limit + "} } }"
    response = await post(server, {"query": too_many}, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    assert any("more than 2000 tokens" in m for m in messages(body)), body
    # A long document of few tokens (whitespace and a comment) is fine.
    padded = "# " + "x" * 5000 + "\n" + RULES_CURRENT + " " * 20000
    ok = (await post(server, {"query": padded})).json()
    assert "errors" not in ok, ok
    assert ok["data"]["rules"]["current"]["version"] == 1


def _oversized_payload(size: int) -> bytes:
    return b'{"query": "{ __typename }", "pad": "' + b"x" * size + b'"}'


async def test_body_over_limit_is_413(server: Server) -> None:
    limit = server.settings.max_body_bytes
    assert limit == 256 * 1024
    response = await server.http.post(
        "/graphql",
        content=_oversized_payload(limit),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
    assert "data" not in body


async def test_body_just_under_limit_is_served(server: Server) -> None:
    limit = server.settings.max_body_bytes
    payload = _oversized_payload(limit - 100)
    assert len(payload) <= limit
    response = await server.http.post(
        "/graphql", content=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_chunked_body_over_limit_is_413(server: Server) -> None:
    limit = server.settings.max_body_bytes
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"query": "{ __typename }", "pad": "'
        while sent <= limit + 64 * 1024:
            sent += 16 * 1024
            yield b"x" * (16 * 1024)
        yield b'"}'

    response = await server.http.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
    # The server is still healthy after refusing the stream.
    assert (await server.http.get("/healthz")).status_code == 200


async def test_small_chunked_body_is_served(server: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "'
        yield RULES_CURRENT.encode()
        yield b'"}'

    response = await server.http.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["rules"]["current"]["version"] == 1


@pytest.mark.parametrize("first", [101, 0, -1])
async def test_page_size_out_of_range_is_bad_user_input(server: Server, first: int) -> None:
    body = await server.gql(HISTORY_FIRST, {"first": first})
    assert body["data"] is None, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "`first` must be between 1 and 100."
    assert error["path"] == ["rules", "history"]


async def test_page_size_at_limit_is_served(server: Server) -> None:
    body = await server.gql(HISTORY_FIRST, {"first": 100})
    assert "errors" not in body, body
    edges = body["data"]["rules"]["history"]["edges"]
    assert [e["node"]["version"] for e in edges] == [1]
    assert edges[0]["node"]["__typename"] == "RulesVersion"


async def test_page_size_literal_in_me_sessions(server: Server) -> None:
    account = await member(server)
    body = await server.gql(
        "{ me { sessions(first: 101) { edges { node { id } } } } }", token=account.token
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


# --- Errors are shown, not masked; node with bad ids ---------------------------------------


async def test_validation_error_message_not_masked(server: Server) -> None:
    body = (await post(server, {"query": UNKNOWN_FIELD})).json()
    assert messages(body) == ["Cannot query field 'nope' on type 'RulesVersion'."], body


async def test_variable_type_error_not_masked(server: Server) -> None:
    body = (await post(server, {"query": HISTORY_FIRST, "variables": {"first": "many"}})).json()
    assert body.get("data") is None
    text = " ".join(messages(body))
    assert "$first" in text and "Int" in text, body
    assert "Unexpected error" not in text


async def test_node_with_garbage_id_is_clean_error(server: Server) -> None:
    literal = await post(server, {"query": NODE_LITERAL_GARBAGE})
    assert literal.status_code == 200, literal.text
    body = literal.json()
    assert body["data"] == {"node": None} or body["data"] is None, body
    assert any("GlobalID" in m for m in messages(body)), body
    assert not any("Unexpected error" in m for m in messages(body)), body

    variable = await post(server, {"query": NODE, "variables": {"id": "garbage"}})
    assert variable.status_code == 200, variable.text
    body = variable.json()
    assert not body.get("data", {}) or body["data"].get("node") is None, body
    assert body.get("errors"), body
    assert not any("Unexpected error" in m for m in messages(body)), body


def gid(type_name: str, node_id: str) -> str:
    return base64.b64encode(f"{type_name}:{node_id}".encode()).decode()


@pytest.mark.parametrize(
    ("type_name", "node_id"),
    [
        ("NoSuchType", "1"),
        ("Query", "1"),
        ("RulesVersion", "999999"),
        ("RulesVersion", "abc"),
        ("RulesVersion", "-1"),
        ("RulesVersion", "99999999999999999999999"),
        ("Member", "1"),  # pseudonyms are not shown to anonymous callers
    ],
)
async def test_node_with_unknown_or_missing_id_is_null(
    server: Server, type_name: str, node_id: str
) -> None:
    response = await post(server, {"query": NODE, "variables": {"id": gid(type_name, node_id)}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"data": {"node": None}}, body


OUT_OF_RANGE_IDS = ["0", "2147483648", "9223372036854775808", "99999999999999999999999"]


@pytest.mark.parametrize(
    "type_name", ["Member", "Session", "Notification", "AuditEntry", "RulesVersion"]
)
async def test_node_with_out_of_range_id_is_null_for_admin(server: Server, type_name: str) -> None:
    # An admin may see every node type, so each type's lookup really reaches the database,
    # where ids are 32-bit (PostgreSQL) or 64-bit (SQLite) integers.
    token = (await staff(server, "admin")).token
    answers = {
        node_id: await server.gql(NODE, {"id": gid(type_name, node_id)}, token=token)
        for node_id in OUT_OF_RANGE_IDS
    }
    wrong = {k: v for k, v in answers.items() if v != {"data": {"node": None}}}
    assert not wrong, wrong


HUGE = "99999999999999999999999"


async def test_out_of_range_ids_in_arguments_are_clean(server: Server) -> None:
    account = await member(server)
    admin = (await staff(server, "admin")).token
    answers = {
        "revokeSession": await server.gql(
            REVOKE_SESSION, {"id": gid("Session", HUGE)}, token=account.token
        ),
        "acceptRules": await server.gql(
            ACCEPT_RULES, {"versionId": gid("RulesVersion", HUGE)}, token=account.token
        ),
        "auditLog": await server.gql(
            AUDIT_LOG, {"first": 5, "target": gid("Member", HUGE)}, token=admin
        ),
        "readMemberContact": await server.gql(
            READ_MEMBER_CONTACT,
            {"memberId": gid("Member", HUGE), "reason": "Tietopyyntö 42"},
            token=admin,
        ),
    }
    masked = {k: v for k, v in answers.items() if "errors" in v}
    assert not masked, masked
    assert answers["revokeSession"]["data"]["revokeSession"]["code"] == "NOT_FOUND"
    assert answers["acceptRules"]["data"]["acceptRules"] == {
        "__typename": "InputError",
        "code": "RULES_NOT_CURRENT",
        "message": MESSAGES[Code.RULES_NOT_CURRENT]["fi"],
        "field": "versionId",
    }
    assert answers["auditLog"]["data"]["auditLog"]["edges"] == []
    assert answers["readMemberContact"]["data"]["readMemberContact"]["code"] == "NOT_FOUND"


def cursor(position: str) -> str:
    return base64.urlsafe_b64encode(f"c:{position}".encode()).decode()


HISTORY_AFTER = """
query History($after: String) {
  rules { history(first: 5, after: $after) { edges { node { version } } } }
}
"""


@pytest.mark.parametrize("position", ["2147483648", "99999999999999999999999", "x", "-5"])
async def test_out_of_range_cursor_is_clean(server: Server, position: str) -> None:
    body = await server.gql(HISTORY_AFTER, {"after": cursor(position)})
    if body.get("errors"):
        assert body["errors"][0].get("extensions", {}).get("code") == "BAD_USER_INPUT", body
    else:
        # A position past every id: the page holds what lies before it.
        edges = body["data"]["rules"]["history"]["edges"]
        assert edges == ([{"node": {"version": 1}}] if position.isdigit() else []), body


async def test_garbage_cursor_is_bad_user_input(server: Server) -> None:
    body = await server.gql(HISTORY_AFTER, {"after": "not a cursor!"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert body["errors"][0]["message"] == "Invalid cursor."


async def test_node_with_known_id_resolves(server: Server) -> None:
    row = await RulesVersion.get(version=1)
    body = await server.gql(NODE, {"id": gid("RulesVersion", str(row.id))})
    assert "errors" not in body, body
    assert body["data"]["node"] == {
        "__typename": "RulesVersion",
        "id": gid("RulesVersion", str(row.id)),
        "version": 1,
    }


# --- Development conveniences --------------------------------------------------------------


async def test_development_serves_graphiql_and_suggestions(server: Server) -> None:
    page = await server.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.text.lower()
    body = (await post(server, {"query": MISSPELLED_FIELD})).json()
    assert any("Did you mean 'rules'?" in m for m in messages(body)), body
    schema = (await post(server, {"query": INTROSPECTION})).json()
    assert "errors" not in schema, schema
    assert "RulesVersion" in {t["name"] for t in schema["data"]["__schema"]["types"]}


# --- Production mode (a second server in a subprocess) -------------------------------------


@dataclass
class ProductionServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def production_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMUNITY_", "SMTP_"))}
    env.update(
        COMMUNITY_ENV="production",
        COMMUNITY_DB_URL=f"sqlite://{tmp}/community.sqlite3",
        CONTACTS_DB_URL=f"sqlite://{tmp}/contacts.sqlite3",
        CONTACTS_ENCRYPTION_KEY=_key(),
        CONTACTS_INDEX_KEY=_key(),
        LINK_KEY=_key(),
        TOKEN_KEY=_key(),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(free_port()),
        BROADCAST_URL="memory://",
        MAIL_DIR=str(tmp / "mail"),
        MAIL_WORKER="false",
        LOG_LEVEL="warning",
    )
    return env


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    tmp = tmp_path_factory.mktemp("production")
    env = production_env(tmp)
    migrated = subprocess.run(
        [str(VENV_BIN / "community"), "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/healthz", log, "production server")
        yield ProductionServer(url=url, process=process, log=log)
    finally:
        stop_process(process)


async def prod_post(production: ProductionServer, query: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=production.url, timeout=10) as client:
        return await client.post("/graphql", json={"query": query})


async def test_production_serves_ordinary_queries(production: ProductionServer) -> None:
    response = await prod_post(production, TYPENAME_AND_RULES)
    assert response.status_code == 200, response.text
    # A fresh production database: nothing published yet.
    assert response.json() == {"data": {"__typename": "Query", "rules": {"current": None}}}


async def test_production_refuses_introspection(production: ProductionServer) -> None:
    response = await prod_post(production, INTROSPECTION)
    body = response.json()
    assert body.get("data") is None, body
    assert any("introspection has been disabled" in m for m in messages(body)), body
    typename = await prod_post(production, "query { __typename }")
    assert typename.json() == {"data": {"__typename": "Query"}}


async def test_production_refuses_type_introspection(production: ProductionServer) -> None:
    body = await prod_post(production, '{ __type(name: "ContactDetails") { fields { name } } }')
    assert body.json().get("data") is None, body.text
    assert any("introspection" in m for m in messages(body.json())), body.text


async def test_production_hides_field_suggestions(production: ProductionServer) -> None:
    body = (await prod_post(production, MISSPELLED_FIELD)).json()
    assert messages(body) == ["Cannot query field 'rule' on type 'Query'."], body
    assert "Did you mean" not in str(body)
    # Suggestions are hidden in argument and enum errors too.
    body = await prod_post(production, "{ rules { history(frist: 1) { edges { cursor } } } }")
    assert "Unknown argument 'frist'" in body.text
    assert "Did you mean" not in body.text


async def test_production_has_no_graphiql(production: ProductionServer) -> None:
    async with httpx.AsyncClient(base_url=production.url, timeout=10) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code != 200 or not page.headers["content-type"].startswith("text/html")
    assert "graphiql" not in page.text.lower()


async def test_production_limits_and_probes(production: ProductionServer) -> None:
    async with httpx.AsyncClient(base_url=production.url, timeout=10) as client:
        refused = await client.post("/graphql", json={"query": aliases(31)})
        assert any("aliases" in m for m in messages(refused.json())), refused.text
        big = await client.post(
            "/graphql",
            content=_oversized_payload(256 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413
        assert big.json()["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"community": True, "contacts": True, "bus": True},
        }


# --- Health probes -------------------------------------------------------------------------


async def test_healthz(server: Server) -> None:
    response = await server.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(server: Server) -> None:
    response = await server.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"community": True, "contacts": True, "bus": True},
    }
