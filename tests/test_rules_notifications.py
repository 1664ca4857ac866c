"""Rules versions, acceptance and the write gate; notifications over HTTP and websockets.

Covers: the public `rules` query (current, history, text in the viewer's
language), `publishRules` (admins only, validation, version, audit entry,
in-app notices), `acceptRules` and `me.mustAcceptRules`, the `notifications`
query and `markNotificationsRead`, the `notifications` subscription over
graphql-transport-ws and legacy graphql-ws (live, resumable, authentication,
ended by logout), and the CLI's rules file reader and publisher.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from strawberry.relay import GlobalID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import cli
from models.community import (
    AuditEntry,
    Member,
    MemberStatus,
    Notification,
    RulesAcceptance,
    RulesVersion,
)
from resolvers.rules import do_publish_rules
from subscriptions.bus import get_bus, set_bus
from tests import dbtools
from tests.conftest import RULES_TEXT, Server
from tests.helpers import (
    ACCEPT_RULES,
    LOGOUT,
    ME,
    NOTIFICATIONS,
    PASSWORD,
    PUBLISH_RULES,
    RESIGN,
    assert_no_permission,
    assert_unauthenticated,
    current_rules_id,
    member,
    publish_rules,
    register,
    rules_input,
    staff,
    unique,
    update_profile,
)

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
RECEIVE_SECONDS = 5.0

RULES = """
query Rules($first: Int!, $after: String) {
  rules {
    current { id version text textFi textSv textEn publishedAt }
    history(first: $first, after: $after) {
      edges { cursor node { id version } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

RULES_TEXT_ONLY = "{ rules { current { version text } } }"

MARK_READ = "mutation Mark($upTo: Int) { markNotificationsRead(upTo: $upTo) }"

NOTIFICATIONS_SUBSCRIPTION = "subscription { notifications { position kind subjectId } }"

NOTIFICATIONS_AFTER_SUBSCRIPTION = """
subscription Resume($after: Int) { notifications(after: $after) { position kind subjectId } }
"""


# ---------------------------------------------------------------- helpers


def db_id(global_id: str, type_name: str) -> int:
    gid = GlobalID.from_id(global_id)
    assert gid.type_name == type_name, global_id
    return int(gid.node_id)


async def rules_version_ids() -> dict[int, int]:
    """{version number: database id} of every published version."""
    return {r.version: r.id for r in await RulesVersion.all()}


class WsClient:
    """A minimal GraphQL websocket client for both subprotocols."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.receive()

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": kind, "id": op_id, "payload": payload})

    async def stop(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.send({"type": kind, "id": op_id})

    async def receive(self, timeout: float = RECEIVE_SECONDS) -> dict[str, Any]:
        """The next protocol message, answering pings and skipping keep-alives."""
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message["type"] == "ping":
                    await self.send({"type": "pong"})
                    continue
                if message["type"] in ("pong", "ka"):
                    continue
                return message

    async def next_notification(self, op_id: str) -> dict[str, Any]:
        """The next delivered notification of subscription `op_id`."""
        message = await self.receive()
        expected = "next" if self.protocol == TRANSPORT_WS else "data"
        assert message["type"] == expected, message
        assert message["id"] == op_id, message
        assert "errors" not in message["payload"], message
        notice: dict[str, Any] = message["payload"]["data"]["notifications"]
        return notice

    async def expect_silence(self, seconds: float) -> None:
        try:
            message = await self.receive(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message}")


@asynccontextmanager
async def ws_client(
    server: Server, payload: dict[str, Any] | None, protocol: str = TRANSPORT_WS
) -> AsyncIterator[WsClient]:
    """An initialised websocket connection (the ack is checked)."""
    async with connect(server.ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
        assert ws.subprotocol == protocol
        client = WsClient(ws, protocol)
        ack = await client.init(payload)
        assert ack["type"] == "connection_ack", ack
        yield client


async def wait_until_listening(server: Server, member_id: int) -> None:
    """Wait until the member's notification stream listens on the bus.

    A stream without `after` starts "from now", so a notice published before
    it listens is, by design, not replayed. The stream registers on the bus
    before its first database read; the short pause covers that read and the
    Redis SUBSCRIBE round trip.
    """
    prefix = server.settings.channel_prefix
    wanted = {f"{prefix}member:{member_id}", f"{prefix}members"}
    for _ in range(250):
        if wanted <= set(get_bus().broadcast._subscribers):
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the notification stream never subscribed to the bus")


# ---------------------------------------------------------------- rules: reading


async def test_rules_are_public_with_current_version_and_paginated_history(
    server: Server,
) -> None:
    await do_publish_rules(None, "Säännöt 2", "Regler 2", "Rules 2")
    await do_publish_rules(None, "Säännöt 3", "Regler 3", "Rules 3")
    ids = await rules_version_ids()

    body = await server.gql(RULES, {"first": 2})  # anonymous
    assert "errors" not in body, body
    current = body["data"]["rules"]["current"]
    assert current["version"] == 3
    assert db_id(current["id"], "RulesVersion") == ids[3]
    assert (current["textFi"], current["textSv"], current["textEn"]) == (
        "Säännöt 3",
        "Regler 3",
        "Rules 3",
    )
    published_at = datetime.fromisoformat(current["publishedAt"])
    assert published_at.tzinfo is not None
    history = body["data"]["rules"]["history"]
    assert [e["node"]["version"] for e in history["edges"]] == [3, 2]
    assert history["pageInfo"]["hasNextPage"] is True

    body = await server.gql(RULES, {"first": 2, "after": history["pageInfo"]["endCursor"]})
    rest = body["data"]["rules"]["history"]
    assert [e["node"]["version"] for e in rest["edges"]] == [1]
    assert db_id(rest["edges"][0]["node"]["id"], "RulesVersion") == ids[1]
    assert rest["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        ("sv-FI,sv;q=0.9,en;q=0.5", RULES_TEXT["sv"]),
        ("en-GB,en;q=0.8", RULES_TEXT["en"]),
        ("fi", RULES_TEXT["fi"]),
        ("de-DE,sv;q=0.7", RULES_TEXT["sv"]),
        (None, RULES_TEXT["fi"]),
    ],
)
async def test_rules_text_follows_accept_language_for_anonymous(
    server: Server, accept_language: str | None, expected: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else None
    body = await server.gql(RULES_TEXT_ONLY, headers=headers)
    assert body["data"]["rules"]["current"] == {"version": 1, "text": expected}


@pytest.mark.parametrize(("language", "key"), [("SV", "sv"), ("EN", "en"), ("FI", "fi")])
async def test_rules_text_follows_the_members_language_when_signed_in(
    server: Server, language: str, key: str
) -> None:
    account = await member(server, language=language)
    other = "fi" if key != "fi" else "en"
    body = await server.gql(
        RULES_TEXT_ONLY, token=account.token, headers={"Accept-Language": other}
    )
    assert body["data"]["rules"]["current"]["text"] == RULES_TEXT[key]


# ---------------------------------------------------------------- rules: publishing


async def test_publish_rules_increments_version_audits_and_notifies_active_members(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    first = await member(server)
    second = await member(server, language="SV")
    leaver = await member(server)
    resigned = await server.gql(RESIGN, {"password": PASSWORD}, token=leaver.token)
    assert resigned["data"]["resign"]["__typename"] == "Done", resigned
    pending_login = unique("pending")
    registered = await register(server, loginName=pending_login)
    assert registered["__typename"] == "RegisterSuccess", registered
    pending = await Member.get(login_key=pending_login)
    assert pending.status == MemberStatus.PENDING

    rules = await publish_rules(server, admin, 2)

    assert rules["version"] == 2
    assert (rules["textFi"], rules["textSv"], rules["textEn"]) == (
        "Säännöt 2",
        "Regler 2",
        "Rules 2",
    )
    assert rules["text"] == "Säännöt 2"  # the admin's language (Finnish by default)
    row = await RulesVersion.get(id=db_id(rules["id"], "RulesVersion"))
    assert row.version == 2
    assert row.published_by_id == admin.member_id
    assert await RulesVersion.all().count() == 2

    audit = await AuditEntry.filter(action="rules.publish", actor_id=admin.member_id)
    assert len(audit) == 1
    assert audit[0].actor_role == "admin"
    assert audit[0].details == {"version": 2}

    notices = await Notification.filter(kind="RULES_CHANGED").order_by("id")
    by_member = {n.member_id: n for n in notices}  # type: ignore[attr-defined]
    assert len(by_member) == len(notices), "one notice per member"
    for account in (first, second):
        notice = by_member[account.member_id]
        assert notice.params == {"rulesVersionId": row.id}
        assert notice.read_at is None
    assert leaver.member_id not in by_member
    assert pending.id not in by_member
    # The raw table holds the same rows (what the register really stores).
    raw = (await dbtools.all_rows("community"))["notification"]
    assert {r["member_id"] for r in raw} >= {first.member_id, second.member_id}


@pytest.mark.parametrize("role", ["member", "moderator", "researcher"])
async def test_publish_rules_is_forbidden_for_non_admins(server: Server, role: str) -> None:
    account = await member(server) if role == "member" else await staff(server, role)
    body = await server.gql(PUBLISH_RULES, {"input": rules_input(2)}, token=account.token)
    assert_no_permission(body, "FORBIDDEN")
    assert body.get("data") is None or body["data"].get("publishRules") is None
    assert await RulesVersion.all().count() == 1
    assert await Notification.all().count() == 0


async def test_publish_rules_anonymous_is_unauthenticated(server: Server) -> None:
    body = await server.gql(PUBLISH_RULES, {"input": rules_input(2)})
    assert_unauthenticated(body)
    assert await RulesVersion.all().count() == 1


async def test_publish_rules_with_an_empty_text_publishes_nothing(server: Server) -> None:
    admin = await staff(server, "admin")
    account = await member(server)
    audits_before = await AuditEntry.filter(action="rules.publish").count()
    for field in ("textFi", "textSv", "textEn"):
        for empty in ("", "  \n\t "):
            body = await server.gql(
                PUBLISH_RULES, {"input": {**rules_input(2), field: empty}}, token=admin.token
            )
            assert "errors" not in body, body
            result = body["data"]["publishRules"]
            assert result["__typename"] == "InputError", result
            assert result["code"] == "RULES_TEXT_MISSING"
            assert result["field"] == field
            assert result["message"]
    assert await RulesVersion.all().count() == 1
    assert await Notification.filter(member_id=account.member_id).count() == 0
    assert await AuditEntry.filter(action="rules.publish").count() == audits_before
    me = await server.gql(ME, token=account.token)
    assert me["data"]["me"]["mustAcceptRules"] is False


# ---------------------------------------------------------------- rules: acceptance and gate


async def test_member_reads_but_cannot_write_until_the_new_rules_are_accepted(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    account = await member(server, language="EN")
    old_rules_id = await current_rules_id(server)
    new_rules = await publish_rules(server, admin, 2)

    me = await server.gql(ME, token=account.token)
    assert me["data"]["me"]["mustAcceptRules"] is True
    # Reading still works.
    read = await server.gql(RULES_TEXT_ONLY, token=account.token)
    assert read["data"]["rules"]["current"] == {"version": 2, "text": "Rules 2"}
    listed = await server.gql(NOTIFICATIONS, {"first": 5}, token=account.token)
    assert [e["node"]["kind"] for e in listed["data"]["notifications"]["edges"]] == [
        "RULES_CHANGED"
    ]

    # Writing a new public name does not.
    result = await update_profile(server, account.token, displayName="Uusi Nimi")
    assert result["__typename"] == "NotAllowedError", result
    assert result["code"] == "RULES_NOT_ACCEPTED"
    assert result["message"] == "The community rules have changed. Accept them to continue writing."
    assert (await Member.get(id=account.member_id)).display_name == account.display_name

    # An old version is refused and records nothing.
    stale = await server.gql(ACCEPT_RULES, {"versionId": old_rules_id}, token=account.token)
    assert stale["data"]["acceptRules"]["__typename"] == "InputError", stale
    assert stale["data"]["acceptRules"]["code"] == "RULES_NOT_CURRENT"
    assert stale["data"]["acceptRules"]["field"] == "versionId"
    new_db_id = db_id(new_rules["id"], "RulesVersion")
    assert not await RulesAcceptance.exists(member_id=account.member_id, rules_id=new_db_id)

    # The current one is recorded, and accepting twice stores it once.
    for _ in range(2):
        accepted = await server.gql(
            ACCEPT_RULES, {"versionId": new_rules["id"]}, token=account.token
        )
        result = accepted["data"]["acceptRules"]
        assert result["__typename"] == "AcceptRulesSuccess", accepted
        assert result["rules"] == {"id": new_rules["id"], "version": 2}
    rows = await RulesAcceptance.filter(member_id=account.member_id).order_by("id")
    assert [r.rules_id for r in rows] == [  # type: ignore[attr-defined]
        db_id(old_rules_id, "RulesVersion"),
        new_db_id,
    ]

    me = await server.gql(ME, token=account.token)
    assert me["data"]["me"]["mustAcceptRules"] is False
    allowed = await update_profile(server, account.token, displayName="Uusi Nimi")
    assert allowed["__typename"] == "UpdateProfileSuccess", allowed
    assert (await Member.get(id=account.member_id)).display_name == "Uusi Nimi"


async def test_accept_rules_refuses_other_ids_and_anonymous(server: Server) -> None:
    account = await member(server)
    not_rules = await server.gql(
        ACCEPT_RULES, {"versionId": account.gid}, token=account.token
    )  # a Member id, not a RulesVersion id
    assert not_rules["data"]["acceptRules"]["code"] == "RULES_NOT_CURRENT", not_rules
    rules_id = await current_rules_id(server)
    anonymous = await server.gql(ACCEPT_RULES, {"versionId": rules_id})
    assert_unauthenticated(anonymous)
    assert await RulesAcceptance.filter(member_id=account.member_id).count() == 1


@pytest.mark.parametrize("role", ["moderator", "researcher", "admin"])
async def test_staff_are_never_blocked_by_the_rules_gate(server: Server, role: str) -> None:
    admin = await staff(server, "admin")
    account = admin if role == "admin" else await staff(server, role)
    await publish_rules(server, admin, 2)
    me = await server.gql(ME, token=account.token)
    assert me["data"]["me"]["mustAcceptRules"] is False
    assert not await RulesAcceptance.filter(member_id=account.member_id).exists()
    new_name = unique("Tiimi Uusi ")
    renamed = await update_profile(server, account.token, displayName=new_name)
    assert renamed["__typename"] == "UpdateProfileSuccess", renamed
    assert (await Member.get(id=account.member_id)).display_name == new_name


# ---------------------------------------------------------------- notifications over HTTP


async def test_notifications_query_and_mark_read(server: Server) -> None:
    admin = await staff(server, "admin")
    account = await member(server)
    other = await member(server)
    published = [await publish_rules(server, admin, n) for n in (2, 3, 4)]

    body = await server.gql(NOTIFICATIONS, {"first": 2}, token=account.token)
    assert "errors" not in body, body
    page = body["data"]["notifications"]
    nodes = [e["node"] for e in page["edges"]]
    assert [n["subjectId"] for n in nodes] == [published[2]["id"], published[1]["id"]]
    assert all(n["kind"] == "RULES_CHANGED" and n["read"] is False for n in nodes)
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await server.gql(
        NOTIFICATIONS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=account.token
    )
    last = rest["data"]["notifications"]
    assert [e["node"]["subjectId"] for e in last["edges"]] == [published[0]["id"]]
    assert last["pageInfo"]["hasNextPage"] is False
    positions = [n["position"] for n in nodes] + [last["edges"][0]["node"]["position"]]
    assert positions == sorted(positions, reverse=True)
    rows = await Notification.filter(member_id=account.member_id).order_by("id")
    assert [r.position for r in rows] == sorted(positions) == [1, 2, 3]
    assert db_id(nodes[0]["id"], "Notification") == rows[-1].id

    # Mark the two oldest read.
    marked = await server.gql(MARK_READ, {"upTo": positions[1]}, token=account.token)
    assert marked == {"data": {"markNotificationsRead": 2}}
    rows = await Notification.filter(member_id=account.member_id).order_by("id")
    assert [r.read_at is not None for r in rows] == [True, True, False]
    unread = await server.gql(NOTIFICATIONS, {"first": 10, "unreadOnly": True}, token=account.token)
    assert [e["node"]["position"] for e in unread["data"]["notifications"]["edges"]] == [
        positions[0]
    ]
    listed = await server.gql(NOTIFICATIONS, {"first": 10}, token=account.token)
    assert [e["node"]["read"] for e in listed["data"]["notifications"]["edges"]] == [
        False,
        True,
        True,
    ]

    # All the rest; then nothing left. Another member's notices are untouched.
    assert (await server.gql(MARK_READ, {}, token=account.token))["data"] == {
        "markNotificationsRead": 1
    }
    assert (await server.gql(MARK_READ, {}, token=account.token))["data"] == {
        "markNotificationsRead": 0
    }
    assert await Notification.filter(member_id=account.member_id, read_at__isnull=True).count() == 0
    assert await Notification.filter(member_id=other.member_id, read_at__isnull=True).count() == 3

    # Someone else's position range does not reach another member's notices.
    other_rows = await Notification.filter(member_id=other.member_id).order_by("id")
    assert (await server.gql(MARK_READ, {"upTo": other_rows[-1].id}, token=account.token))[
        "data"
    ] == {"markNotificationsRead": 0}
    assert await Notification.filter(member_id=other.member_id, read_at__isnull=True).count() == 3


async def test_notifications_need_sign_in(server: Server) -> None:
    assert_unauthenticated(await server.gql(NOTIFICATIONS, {"first": 5}))
    assert_unauthenticated(await server.gql(MARK_READ, {}))


# ---------------------------------------------------------------- notifications over websockets


async def test_subscription_receives_rules_changed_live(server: Server) -> None:
    admin = await staff(server, "admin")
    account = await member(server)
    async with ws_client(server, {"authorization": f"Bearer {account.token}"}) as client:
        await client.subscribe("n1", NOTIFICATIONS_SUBSCRIPTION)
        await wait_until_listening(server, account.member_id)
        rules = await publish_rules(server, admin, 2)
        notice = await client.next_notification("n1")
        assert notice["kind"] == "RULES_CHANGED"
        assert notice["subjectId"] == rules["id"]
        row = await Notification.get(member_id=account.member_id)
        assert notice["position"] == row.id
        await client.stop("n1")


async def test_subscription_resumes_after_a_position_without_gap_or_duplicate(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    account = await member(server)
    async with ws_client(server, {"token": account.token}) as client:
        await client.subscribe("live", NOTIFICATIONS_SUBSCRIPTION)
        await wait_until_listening(server, account.member_id)
        v2 = await publish_rules(server, admin, 2)
        seen = await client.next_notification("live")
        assert seen["subjectId"] == v2["id"]

    # Two more while disconnected.
    v3 = await publish_rules(server, admin, 3)
    v4 = await publish_rules(server, admin, 4)

    async with ws_client(server, {"token": account.token}) as client:
        await client.subscribe(
            "resume", NOTIFICATIONS_AFTER_SUBSCRIPTION, {"after": seen["position"]}
        )
        replayed = [await client.next_notification("resume") for _ in range(2)]
        assert [n["subjectId"] for n in replayed] == [v3["id"], v4["id"]]
        positions = [seen["position"]] + [n["position"] for n in replayed]
        assert positions == sorted(set(positions))
        rows = await Notification.filter(member_id=account.member_id).order_by("id")
        assert [r.id for r in rows] == positions

        v5 = await publish_rules(server, admin, 5)
        live = await client.next_notification("resume")
        assert live["subjectId"] == v5["id"]
        assert live["position"] > positions[-1]
        await client.expect_silence(0.5)  # no duplicate of anything already delivered


@pytest.mark.parametrize("payload", [{"token": "not-a-token"}, {"authorization": "Bearer nope"}])
async def test_invalid_token_in_connection_init_closes_with_4403(
    server: Server, payload: dict[str, str]
) -> None:
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(RECEIVE_SECONDS):
                while True:
                    message = json.loads(await ws.recv())
                    assert message["type"] != "connection_ack", message
        assert ws.close_code == 4403


async def test_a_logged_out_token_is_refused_on_connection_init(server: Server) -> None:
    account = await member(server)
    await server.gql(LOGOUT, token=account.token)
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": account.token}}))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(RECEIVE_SECONDS):
                while True:
                    await ws.recv()
        assert ws.close_code == 4403


async def test_subscribing_without_auth_gives_an_unauthenticated_error(server: Server) -> None:
    admin = await staff(server, "admin")
    await member(server)
    async with ws_client(server, None) as client:
        await client.subscribe("anon", NOTIFICATIONS_SUBSCRIPTION)
        message = await client.receive()
        assert message["type"] == "error", message
        assert message["id"] == "anon"
        assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await publish_rules(server, admin, 2)
        await client.expect_silence(0.5)


async def test_legacy_graphql_ws_protocol_delivers_a_notification(server: Server) -> None:
    admin = await staff(server, "admin")
    account = await member(server)
    payload = {"authorization": f"Bearer {account.token}"}
    async with ws_client(server, payload, protocol=LEGACY_WS) as client:
        await client.subscribe("old", NOTIFICATIONS_SUBSCRIPTION)
        await wait_until_listening(server, account.member_id)
        rules = await publish_rules(server, admin, 2)
        notice = await client.next_notification("old")
        assert notice["kind"] == "RULES_CHANGED"
        assert notice["subjectId"] == rules["id"]
        await client.stop("old")
        # After `stop`, nothing more is delivered for that id.
        await publish_rules(server, admin, 3)
        try:
            message = await client.receive(timeout=0.5)
        except TimeoutError:
            return
        assert message["type"] == "complete" and message["id"] == "old", message
        await client.expect_silence(0.3)


async def test_logout_ends_the_open_subscription(server: Server) -> None:
    account = await member(server)
    async with ws_client(server, {"token": account.token}) as client:
        await client.subscribe("mine", NOTIFICATIONS_SUBSCRIPTION)
        await wait_until_listening(server, account.member_id)
        body = await server.gql(LOGOUT, token=account.token)
        assert body["data"]["logout"]["__typename"] == "Done", body
        # The stream may first say why in a `next` with errors (never data), then ends.
        async with asyncio.timeout(RECEIVE_SECONDS):
            while True:
                message = await client.receive()
                assert message["id"] == "mine", message
                if message["type"] in ("error", "complete"):
                    break
                assert message["type"] == "next", message
                assert message["payload"].get("data") is None, message
                assert message["payload"]["errors"], message
    assert await server.gql(ME, token=account.token) == {"data": {"me": None}}


# ---------------------------------------------------------------- CLI


def write_rules_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_cli_reads_a_rules_file(tmp_path: Path) -> None:
    path = write_rules_file(
        tmp_path, 'fi = """\n  Säännöt CLI\n"""\nsv = "Regler CLI"\nen = "Rules CLI "\n'
    )
    assert cli.read_rules_file(path) == {
        "fi": "Säännöt CLI",
        "sv": "Regler CLI",
        "en": "Rules CLI",
    }


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ('fi = "Säännöt"\nen = "Rules"\n', "sv"),
        ('fi = "Säännöt"\nsv = "Regler"\nen = "   "\n', "en"),
        ("", "fi, sv, en"),
    ],
)
def test_cli_rules_file_missing_a_language_exits(tmp_path: Path, body: str, missing: str) -> None:
    path = write_rules_file(tmp_path, body)
    with pytest.raises(SystemExit) as exc:
        cli.read_rules_file(path)
    assert f"missing: {missing}" in str(exc.value)


async def test_cli_publishes_rules_from_a_file(server: Server, tmp_path: Path) -> None:
    account = await member(server)
    path = write_rules_file(tmp_path, 'fi = "Säännöt CLI"\nsv = "Regler CLI"\nen = "Rules CLI"\n')
    # The command opens its own registers and bus, and sets the process-wide bus
    # back to None when done: in this shared process the server's bus is restored.
    server_bus = get_bus()
    try:
        said = await cli.publish_rules(server.settings, path, only_if_none=False)
        again = await cli.publish_rules(server.settings, path, only_if_none=True)
    finally:
        set_bus(server_bus)
    assert said.startswith("published rules version 2"), said
    assert again == "rules already published; nothing to do"
    assert await RulesVersion.all().count() == 2
    body = await server.gql(RULES, {"first": 5}, headers={"Accept-Language": "sv"})
    current = body["data"]["rules"]["current"]
    assert current["version"] == 2
    assert current["text"] == "Regler CLI"
    assert await AuditEntry.filter(action="rules.publish", actor_role="system").count() == 2
    notice = await Notification.get(member_id=account.member_id)
    assert notice.kind == "RULES_CHANGED"
    assert notice.params == {"rulesVersionId": db_id(current["id"], "RulesVersion")}
    me = await server.gql(ME, token=account.token)
    assert me["data"]["me"]["mustAcceptRules"] is True
