"""Real-time threaded discussions over websockets (graphql-transport-ws).

Covers: `threadEvents` (the four event kinds, positions 1..N matching the
`thread_event` rows, live-only without `after`, replay-then-live with `after`
while posts arrive during the switch-over, per-subscriber resolution of each
event, restricted areas, streams ended by the session's end), REPLY notices
on the `notifications` subscription, `sendTyping`/`threadTyping`, bad input,
and the number of SQL statements per subscriber when an event is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import timedelta
from random import Random
from typing import Any

import pytest
from graphql.execution.collect_fields import FieldDetails
from strawberry.relay import GlobalID
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from config import override_settings
from models.community import GroupMembership, MemberGroup, Notification, Session
from models.discussions import Post, Thread, ThreadEvent
from resolvers import clock
from subscriptions.bus import get_bus
from subscriptions.feeds import FEEDS
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    CHANGE_PASSWORD,
    LOGOUT,
    PASSWORD,
    RESIGN,
    Account,
    member,
    sign_in,
    staff,
    unique,
)
from tests.ws import WsClient

TRANSPORT_WS = "graphql-transport-ws"
SESSION_END_SECONDS = 3.0

# ---------------------------------------------------------------- documents

CREATE_AREA = """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) {
    __typename
    ... on CreateAreaSuccess { area { id title restricted membersCanStartThreads } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

START_THREAD = """
mutation StartThread($input: StartThreadInput!) {
  startThread(input: $input) {
    __typename
    ... on StartThreadSuccess { thread { id title lastPosition } post { id body depth } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

POST_FIELDS = """
  __typename id threadId parentId depth body bodyHtml removed isMine editedAt
  author { displayName isFormerMember staffBadge }
  reactions { kind count reactedByMe }
"""

ADD_POST = f"""
mutation AddPost($input: AddPostInput!) {{
  addPost(input: $input) {{
    __typename
    ... on PostSuccess {{ post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
    ... on InputError {{ field }}
    ... on RateLimitedError {{ retryAfterSeconds }}
  }}
}}
"""

EDIT_POST = f"""
mutation EditPost($input: EditPostInput!) {{
  editPost(input: $input) {{
    __typename
    ... on PostSuccess {{ post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
  }}
}}
"""

DELETE_POST = f"""
mutation DeletePost($postId: ID!) {{
  deletePost(postId: $postId) {{
    __typename
    ... on PostSuccess {{ post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
  }}
}}
"""

REACT = f"""
mutation React($input: ReactInput!) {{
  react(input: $input) {{
    __typename
    ... on PostSuccess {{ post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
  }}
}}
"""

SEND_TYPING = "mutation Typing($threadId: ID!) { sendTyping(threadId: $threadId) }"

THREAD_EVENTS = f"""
subscription ThreadEvents($threadId: ID!, $after: Int) {{
  threadEvents(threadId: $threadId, after: $after) {{
    __typename position kind threadId
    post {{ {POST_FIELDS} }}
  }}
}}
"""

THREAD_TYPING = """
subscription Typing($threadId: ID!) {
  threadTyping(threadId: $threadId) {
    __typename threadId
    member { __typename id displayName isFormerMember }
  }
}
"""

NOTIFICATIONS_SUBSCRIPTION = """
subscription Notices($after: Int) {
  notifications(after: $after) { __typename id position kind subjectId read }
}
"""


# ---------------------------------------------------------------- websocket client


@asynccontextmanager
async def ws_client(server: Server, token: str | None) -> AsyncIterator[WsClient]:
    """An acknowledged graphql-transport-ws connection (token in connection_init)."""
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        assert ws.subprotocol == TRANSPORT_WS
        client = WsClient(ws)
        init: dict[str, Any] = {"type": "connection_init"}
        if token is not None:
            init["payload"] = {"token": token}
        await client.send(init)
        ack = await client.receive()
        assert ack["type"] == "connection_ack", ack
        yield client


async def wait_listeners(server: Server, channel: str, count: int = 1) -> None:
    """Wait until `count` streams listen on a bus channel (e.g. "thread:3").

    Streams register on the bus before their first database read; the short
    pause covers that read and the Redis SUBSCRIBE round trip.
    """
    key = server.settings.channel_prefix + channel

    def listening() -> int:
        kind, _, number = channel.partition(":")
        if kind == "thread":
            # Thread streams join the worker's feed, which holds the one bus subscription.
            feed = FEEDS.feeds.get(int(number))
            return len(feed.subscribers) if feed is not None else 0
        return len(get_bus().broadcast._subscribers.get(key, ()))

    for _ in range(250):
        if listening() >= count:
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} streams ever listened on {channel}")


async def subscribe_events(
    client: WsClient, thread_gid: str, after: int | None = None, op_id: str = "events"
) -> None:
    variables: dict[str, Any] = {"threadId": thread_gid}
    if after is not None:
        variables["after"] = after
    await client.subscribe(op_id, THREAD_EVENTS, variables)


# ---------------------------------------------------------------- API helpers


def db_id(global_id: str, type_name: str) -> int:
    gid = GlobalID.from_id(global_id)
    assert gid.type_name == type_name, global_id
    return int(gid.node_id)


def client_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def allow_many_posts(server: Server) -> None:
    override_settings(replace(server.settings, posts_per_minute=1000, posts_per_hour=1000))


async def create_area(server: Server, admin: Account, group_gid: str | None = None) -> str:
    data: dict[str, Any] = {
        "titleFi": unique("Alue "),
        "titleSv": "Område",
        "titleEn": "Area",
        "membersCanStartThreads": True,
    }
    if group_gid is not None:
        data["groupId"] = group_gid
    body = await server.gql(CREATE_AREA, {"input": data}, token=admin.token)
    assert "errors" not in body, body
    result = body["data"]["createArea"]
    assert result["__typename"] == "CreateAreaSuccess", result
    assert result["area"]["restricted"] is (group_gid is not None), result
    area_gid: str = result["area"]["id"]
    return area_gid


async def start_thread(
    server: Server, account: Account, area_gid: str, body: str = "Aloitus"
) -> tuple[str, str]:
    """Start a thread; returns (thread id, first post id)."""
    answer = await server.gql(
        START_THREAD,
        {
            "input": {
                "areaId": area_gid,
                "title": unique("Ketju "),
                "body": body,
                "clientKey": client_key(),
            }
        },
        token=account.token,
    )
    assert "errors" not in answer, answer
    result = answer["data"]["startThread"]
    assert result["__typename"] == "StartThreadSuccess", result
    assert result["thread"]["lastPosition"] == 1, result
    return result["thread"]["id"], result["post"]["id"]


async def open_thread(server: Server, admin: Account, starter: Account) -> tuple[str, str]:
    """An open area with one thread started by `starter`: (thread id, first post id)."""
    area = await create_area(server, admin)
    return await start_thread(server, starter, area)


async def add_post(
    server: Server, account: Account, thread_gid: str, body: str, parent: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"threadId": thread_gid, "body": body, "clientKey": client_key()}
    if parent is not None:
        data["parentId"] = parent
    answer = await server.gql(ADD_POST, {"input": data}, token=account.token)
    assert "errors" not in answer, answer
    result = answer["data"]["addPost"]
    assert result["__typename"] == "PostSuccess", result
    post: dict[str, Any] = result["post"]
    return post


async def post_mutation(
    server: Server, document: str, field: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    answer = await server.gql(document, variables, token=token)
    assert "errors" not in answer, answer
    result = answer["data"][field]
    assert result["__typename"] == "PostSuccess", result
    post: dict[str, Any] = result["post"]
    return post


async def react(server: Server, account: Account, post_gid: str, kind: str = "LIKE") -> None:
    await post_mutation(
        server, REACT, "react", {"input": {"postId": post_gid, "kind": kind}}, account.token
    )


async def event_rows(thread_gid: str) -> list[tuple[int, str, str]]:
    """(position, KIND, post global id) of the thread's `thread_event` rows, in order."""
    rows = await ThreadEvent.filter(thread_id=db_id(thread_gid, "Thread")).order_by("position")
    return [
        (
            row.position,
            row.kind.value.upper(),
            str(GlobalID("Post", str(row.post_id))),  # type: ignore[attr-defined]
        )
        for row in rows
    ]


def as_rows(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(e["position"], e["kind"], e["post"]["id"]) for e in events]


async def restricted_thread(server: Server, admin: Account, insider: Account) -> str:
    """A thread in an area restricted to a group holding `insider` (rows made directly)."""
    group = await MemberGroup.create(name=unique("Ryhmä "))
    await GroupMembership.create(group=group, member_id=insider.member_id)
    area = await create_area(server, admin, str(GlobalID("MemberGroup", str(group.id))))
    thread, _ = await start_thread(server, admin, area, "Vain ryhmälle")
    return thread


# ---------------------------------------------------------------- event kinds and positions


async def test_every_kind_of_change_is_an_event_with_the_next_position(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    thread, first = await open_thread(server, admin, anna)
    async with ws_client(server, bob.token) as client:
        await subscribe_events(client, thread, after=0)
        replayed = await client.next_event()
        assert replayed["position"] == 1 and replayed["kind"] == "POST_ADDED", replayed
        assert replayed["post"]["id"] == first
        assert replayed["threadId"] == thread

        reply = await add_post(server, bob, thread, "Vastaus", parent=first)
        added = await client.next_event()
        assert (added["position"], added["kind"]) == (2, "POST_ADDED"), added
        assert added["post"]["id"] == reply["id"]
        assert added["post"]["parentId"] == first and added["post"]["depth"] == 1

        await post_mutation(
            server,
            EDIT_POST,
            "editPost",
            {"input": {"postId": reply["id"], "body": "Uusi"}},
            bob.token,
        )
        edited = await client.next_event()
        assert (edited["position"], edited["kind"]) == (3, "POST_EDITED"), edited
        assert edited["post"]["body"] == "Uusi" and edited["post"]["editedAt"], edited

        await react(server, anna, reply["id"], "HEART")
        reacted = await client.next_event()
        assert (reacted["position"], reacted["kind"]) == (4, "REACTIONS_CHANGED"), reacted
        assert reacted["post"]["reactions"] == [{"kind": "HEART", "count": 1, "reactedByMe": False}]

        await post_mutation(server, DELETE_POST, "deletePost", {"postId": reply["id"]}, bob.token)
        removed = await client.next_event()
        assert (removed["position"], removed["kind"]) == (5, "POST_REMOVED"), removed
        assert removed["post"]["removed"] is True

        # A change that changes nothing (deleting twice) is no event.
        await post_mutation(server, DELETE_POST, "deletePost", {"postId": reply["id"]}, bob.token)
        await client.expect_silence(0.4)
        events = [replayed, added, edited, reacted, removed]
    assert as_rows(events) == await event_rows(thread)
    assert [e["position"] for e in events] == [1, 2, 3, 4, 5]
    stored = await Thread.get(id=db_id(thread, "Thread"))
    assert stored.last_position == 5


async def test_without_after_only_live_events_arrive(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    thread, _ = await open_thread(server, admin, anna)
    await add_post(server, anna, thread, "Kaksi")
    await add_post(server, anna, thread, "Kolme")
    async with ws_client(server, anna.token) as client:
        await subscribe_events(client, thread)
        await wait_listeners(server, f"thread:{db_id(thread, 'Thread')}")
        await client.expect_silence(0.2)  # nothing from before the subscription
        live = await add_post(server, anna, thread, "Neljä")
        event = await client.next_event()
        assert (event["position"], event["kind"]) == (4, "POST_ADDED"), event
        assert event["post"]["id"] == live["id"] and event["post"]["isMine"] is True
        await add_post(server, anna, thread, "Viisi")
        assert (await client.next_event())["position"] == 5
        await client.expect_silence(0.3)


async def test_after_replays_then_goes_live_without_gap_or_duplicate_during_switch_over(
    server: Server,
) -> None:
    """Three authors post 30 posts concurrently over HTTP; five subscribers join partway,
    resuming from different positions; each gets every later position exactly once, in order."""
    allow_many_posts(server)
    admin = await staff(server, "admin")
    anna = await member(server)
    authors = [anna, await member(server), await member(server)]
    reader = await member(server)
    thread, _ = await open_thread(server, admin, anna)  # position 1
    per_author = 10
    final = 1 + len(authors) * per_author
    # (join when this many positions exist, resume after this position)
    plans = [(10, 0), (5, 3), (18, 12), (26, 25), (2, 0)]
    joined = {at: asyncio.Event() for at, _ in plans}
    written: list[int] = []

    async def author(account: Account) -> None:
        for n in range(per_author):
            await add_post(server, account, thread, f"{account.display_name}: {n}")
            written.append(1)
            for at, event in joined.items():
                if 1 + len(written) >= at:
                    event.set()
            await asyncio.sleep(0)

    async def subscriber(at: int, after: int) -> list[dict[str, Any]]:
        await joined[at].wait()
        async with ws_client(server, reader.token) as client:
            await subscribe_events(client, thread, after=after)
            events = await client.events_until(final)
            await client.expect_silence(0.3)
        return events

    results = await asyncio.gather(
        *[subscriber(at, after) for at, after in plans], *[author(a) for a in authors]
    )
    rows = await event_rows(thread)
    assert [r[0] for r in rows] == list(range(1, final + 1))
    assert all(kind == "POST_ADDED" for _, kind, _ in rows)
    for (at, after), events in zip(plans, results[: len(plans)], strict=True):
        positions = [e["position"] for e in events]
        assert positions == list(range(after + 1, final + 1)), (at, after, positions)
        assert as_rows(events) == rows[after:], (at, after)


async def test_concurrent_writers_get_consecutive_positions(server: Server) -> None:
    """Posts and reactions written at the same time all succeed, one position each."""
    allow_many_posts(server)
    admin = await staff(server, "admin")
    writers = [await member(server) for _ in range(4)]
    thread, first = await open_thread(server, admin, writers[0])

    async def write(account: Account) -> None:
        for n in range(5):
            await add_post(server, account, thread, f"Samaan aikaan {n}")
        await react(server, account, first, "LIKE")

    await asyncio.gather(*[write(w) for w in writers])
    rows = await event_rows(thread)
    total = 1 + len(writers) * 6
    assert [r[0] for r in rows] == list(range(1, total + 1))
    assert sum(kind == "REACTIONS_CHANGED" for _, kind, _ in rows) == len(writers)
    stored = await Thread.get(id=db_id(thread, "Thread"))
    assert (stored.last_position, stored.post_count) == (total, 1 + len(writers) * 5)


def live_field_details() -> int:
    """Field groups graphql-core collected that are still alive in this process."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is FieldDetails)


async def test_a_long_lived_subscription_keeps_nothing_per_event(server: Server) -> None:
    """Memory of an open stream does not grow with the events it delivers.

    graphql-core 3.3 shared one memo of collected fields between a
    subscription and every event's executor, so a stream open for hours kept
    the field groups of every event it ever executed (the soak's steady RSS
    growth). The server is in this process: count what is left after 10 and
    after 70 delivered events.
    """
    allow_many_posts(server)
    admin = await staff(server, "admin")
    anna = await member(server)
    thread, _ = await open_thread(server, admin, anna)
    async with ws_client(server, anna.token) as client:
        await subscribe_events(client, thread)
        await wait_listeners(server, f"thread:{db_id(thread, 'Thread')}")
        for n in range(10):
            await add_post(server, anna, thread, f"Lämmittely {n}")
        await client.events_until(11)
        before = live_field_details()
        for n in range(60):
            await add_post(server, anna, thread, f"Pitkä ketju {n}")
        events = await client.events_until(71)
        assert [e["position"] for e in events] == list(range(12, 72))
        after = live_field_details()
    # Each executed event collects about 40 field groups; 60 events kept ~2,400.
    assert after - before < 100, (before, after)


# ---------------------------------------------------------------- per-subscriber payloads


async def test_each_subscriber_resolves_the_event_through_its_own_permissions(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    bob = await member(server)
    thread, first = await open_thread(server, admin, anna)
    gone = await add_post(server, anna, thread, "Katuin tätä")
    await post_mutation(server, DELETE_POST, "deletePost", {"postId": gone["id"]}, anna.token)
    # Stored rows: the text is kept (for moderators), the status says removed.
    row = await Post.get(id=db_id(gone["id"], "Post"))
    assert row.status == "removed" and row.body == "Katuin tätä"

    async with (
        ws_client(server, bob.token) as bob_ws,
        ws_client(server, anna.token) as anna_ws,
        ws_client(server, moderator.token) as mod_ws,
    ):
        replays = {}
        for name, client in (("bob", bob_ws), ("anna", anna_ws), ("mod", mod_ws)):
            await subscribe_events(client, thread, after=0)
            replays[name] = await client.events_until(3)
        for name, events in replays.items():
            assert as_rows(events) == await event_rows(thread), name
            assert [e["kind"] for e in events] == ["POST_ADDED", "POST_ADDED", "POST_REMOVED"]
        # Members see the removed post without its text, in both of its events.
        for name in ("bob", "anna"):
            for event in replays[name][1:]:
                post = event["post"]
                assert post["removed"] is True, (name, post)
                assert post["body"] is None and post["bodyHtml"] is None, (name, post)
        for event in replays["mod"][1:]:
            assert event["post"]["removed"] is True
            assert event["post"]["body"] == "Katuin tätä", event
        assert [e["post"]["isMine"] for e in replays["anna"]] == [True, True, True]
        assert [e["post"]["isMine"] for e in replays["bob"]] == [False, False, False]

        # One live event, three different answers.
        await react(server, bob, first, "LIKE")
        live = {
            name: await client.next_event()
            for name, client in (("bob", bob_ws), ("anna", anna_ws), ("mod", mod_ws))
        }
    for name, event in live.items():
        assert (event["position"], event["kind"]) == (4, "REACTIONS_CHANGED"), (name, event)
        assert event["post"]["id"] == first
        assert event["post"]["body"] == "Aloitus"
    assert live["bob"]["post"]["reactions"] == [{"kind": "LIKE", "count": 1, "reactedByMe": True}]
    assert live["anna"]["post"]["reactions"] == [{"kind": "LIKE", "count": 1, "reactedByMe": False}]
    assert live["bob"]["post"]["isMine"] is False and live["anna"]["post"]["isMine"] is True
    assert live["mod"]["post"]["isMine"] is False


# ---------------------------------------------------------------- restricted areas


async def test_a_restricted_thread_is_not_found_for_outsiders_and_live_for_group_members(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    insider = await member(server)
    outsider = await member(server)
    thread = await restricted_thread(server, admin, insider)
    missing = str(GlobalID("Thread", "999999"))
    async with (
        ws_client(server, outsider.token) as out_ws,
        ws_client(server, insider.token) as in_ws,
    ):
        for op_id, document, after in (
            ("events", THREAD_EVENTS, 0),
            ("live", THREAD_EVENTS, None),
            ("typing", THREAD_TYPING, None),
        ):
            variables: dict[str, Any] = {"threadId": thread}
            if after is not None:
                variables["after"] = after
            await out_ws.subscribe(op_id, document, variables)
            errors = await out_ws.refusal(op_id)
            assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], errors
            assert "Vain" not in json.dumps(errors)
        # A missing thread gets the same answer: the restricted one stays secret.
        await subscribe_events(out_ws, missing, after=0, op_id="missing")
        errors = await out_ws.refusal("missing")
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], errors

        await subscribe_events(in_ws, thread, after=0)
        first = await in_ws.next_event()
        assert first["position"] == 1 and first["post"]["body"] == "Vain ryhmälle", first
        reply = await add_post(
            server, insider, thread, "Ryhmän vastaus", parent=first["post"]["id"]
        )
        live = await in_ws.next_event()
        assert live["position"] == 2 and live["post"]["id"] == reply["id"], live
        await out_ws.expect_silence(0.3)


# ---------------------------------------------------------------- session end


async def end_by_logout(server: Server, leaver: Account, other_token: str) -> None:
    body = await server.gql(LOGOUT, token=leaver.token)
    assert body["data"]["logout"]["__typename"] == "Done", body


async def end_by_password_change(server: Server, leaver: Account, other_token: str) -> None:
    body = await server.gql(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": PASSWORD, "newPassword": "an entirely new passphrase 7"}},
        token=other_token,
    )
    assert body["data"]["changePassword"]["__typename"] == "Done", body


async def end_by_resigning(server: Server, leaver: Account, other_token: str) -> None:
    body = await server.gql(RESIGN, {"password": PASSWORD}, token=leaver.token)
    assert body["data"]["resign"]["__typename"] == "Done", body


@pytest.mark.parametrize(
    "how", [end_by_logout, end_by_password_change, end_by_resigning], ids=lambda f: f.__name__
)
async def test_ending_the_session_ends_the_open_thread_stream_at_once(
    server: Server, how: Any
) -> None:
    admin = await staff(server, "admin")
    leaver = await member(server)
    other = await member(server)
    thread, _ = await open_thread(server, admin, admin)
    # The leaver's second session; after a resignation, another member's stream.
    second = await sign_in(server, leaver.login_name)
    stayer = other.token if how is end_by_resigning else second
    async with ws_client(server, leaver.token) as gone_ws, ws_client(server, stayer) as stay_ws:
        await subscribe_events(gone_ws, thread)
        await subscribe_events(stay_ws, thread)
        await wait_listeners(server, f"thread:{db_id(thread, 'Thread')}", 2)
        ids = (
            await Session.filter(member_id=leaver.member_id)
            .order_by("id")
            .values_list("id", flat=True)
        )
        assert len(ids) == 2
        await how(server, leaver, second)
        async with asyncio.timeout(SESSION_END_SECONDS):
            errors = await gone_ws.refusal("events")
        assert [e["extensions"]["code"] for e in errors] == ["SESSION_ENDED"], errors
        await add_post(server, other, thread, "Vielä täällä")
        event = await stay_ws.next_event()
        assert event["position"] == 2 and event["post"]["body"] == "Vielä täällä", event
        await gone_ws.expect_silence(0.3)
    left = await Session.filter(member_id=leaver.member_id).values_list("id", flat=True)
    assert list(left) == ([] if how is end_by_resigning else [ids[1]])


# ---------------------------------------------------------------- reply notifications


async def test_a_reply_notifies_the_parent_author_live_and_resumably(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    thread, first = await open_thread(server, admin, anna)
    async with ws_client(server, anna.token) as client:
        await client.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"member:{anna.member_id}")
        reply = await add_post(server, bob, thread, "Hyvä pointti", parent=first)
        notice = await client.next_data("notices", "notifications")
        assert notice["__typename"] == "Notification"
        assert notice["kind"] == "REPLY" and notice["subjectId"] == reply["id"], notice
        assert notice["read"] is False
        # Replying to one's own post is no notice; a reply to a reply notifies its author.
        await add_post(server, anna, thread, "Kiitos", parent=reply["id"])
        await client.expect_silence(0.4)
    stored = await Notification.filter(member_id=anna.member_id).order_by("id")
    assert [(n.kind, n.params["postId"]) for n in stored] == [("REPLY", db_id(reply["id"], "Post"))]
    assert await Notification.filter(member_id=bob.member_id).count() == 1  # anna's reply

    second = await add_post(server, bob, thread, "Toinen vastaus", parent=first)
    async with ws_client(server, anna.token) as client:
        await client.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {"after": notice["position"]})
        resumed = await client.next_data("notices", "notifications")
        assert resumed["subjectId"] == second["id"] and resumed["kind"] == "REPLY", resumed
        assert resumed["position"] > notice["position"]
        third = await add_post(server, bob, thread, "Kolmas", parent=first)
        live = await client.next_data("notices", "notifications")
        assert live["subjectId"] == third["id"] and live["position"] > resumed["position"]
        await client.expect_silence(0.3)


# ---------------------------------------------------------------- typing


async def row_counts() -> dict[str, int]:
    counts = {}
    for name in ("community", "contacts"):
        for table in await dbtools.list_tables(name):
            counts[f"{name}.{table}"] = await dbtools.count(name, table)
    return counts


async def test_typing_reaches_others_once_per_interval_and_is_never_stored(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    thread, _ = await open_thread(server, admin, anna)
    async with ws_client(server, anna.token) as anna_ws, ws_client(server, bob.token) as bob_ws:
        await anna_ws.subscribe("typing", THREAD_TYPING, {"threadId": thread})
        await bob_ws.subscribe("typing", THREAD_TYPING, {"threadId": thread})
        await wait_listeners(server, f"typing:{db_id(thread, 'Thread')}", 2)
        before = await row_counts()

        sent = await server.gql(SEND_TYPING, {"threadId": thread}, token=anna.token)
        assert sent == {"data": {"sendTyping": True}}, sent
        signal = await bob_ws.next_data("typing", "threadTyping")
        assert signal["__typename"] == "TypingSignal" and signal["threadId"] == thread
        assert signal["member"]["displayName"] == anna.display_name, signal
        assert signal["member"]["id"] == anna.gid
        await anna_ws.expect_silence(0.3)  # not one's own typing

        again = await server.gql(SEND_TYPING, {"threadId": thread}, token=anna.token)
        assert again == {"data": {"sendTyping": False}}, again
        await bob_ws.expect_silence(0.3)

        clock.move(timedelta(seconds=server.settings.typing_interval_seconds))
        later = await server.gql(SEND_TYPING, {"threadId": thread}, token=anna.token)
        assert later == {"data": {"sendTyping": True}}, later
        signal = await bob_ws.next_data("typing", "threadTyping")
        assert signal["member"]["displayName"] == anna.display_name
        await anna_ws.expect_silence(0.3)
        assert await row_counts() == before


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["garbage", "post", "unknown-type", "empty"])
async def test_a_bad_thread_id_is_a_clean_error_and_the_connection_lives_on(
    server: Server, kind: str
) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    thread, first = await open_thread(server, admin, anna)
    bad = {
        "garbage": "not a global id!",
        "post": first,
        "unknown-type": str(GlobalID("Nonsense", "1")),
        "empty": "",
    }[kind]
    async with ws_client(server, anna.token) as client:
        await subscribe_events(client, bad, after=0, op_id="bad")
        errors = await client.refusal("bad")
        assert errors and all(e.get("message") for e in errors), errors
        assert not any("Unexpected error" in e["message"] for e in errors), errors
        if kind == "post":
            assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], errors
        await client.subscribe("typing", THREAD_TYPING, {"threadId": bad})
        typing_errors = await client.refusal("typing")
        assert [e.get("extensions") for e in typing_errors] == [
            e.get("extensions") for e in errors
        ], typing_errors
        # The same connection still serves a good subscription.
        await subscribe_events(client, thread, after=0)
        assert (await client.next_event())["position"] == 1


@pytest.mark.parametrize("document", [THREAD_EVENTS, THREAD_TYPING], ids=["events", "typing"])
async def test_anonymous_subscribers_are_unauthenticated(server: Server, document: str) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    thread, _ = await open_thread(server, admin, anna)
    async with ws_client(server, None) as client:
        await client.subscribe("anon", document, {"threadId": thread, "after": 0})
        errors = await client.refusal("anon")
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"], errors
        await add_post(server, anna, thread, "Kukaan ei kuule")
        await client.expect_silence(0.3)


# ---------------------------------------------------------------- no N+1


class QueryLog(logging.Handler):
    """Counts SQL statements logged by Tortoise, per asyncio task."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Created connection pool", "Closed connection pool")):
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        name = task.get_name() if task is not None else "-"
        if name != "mail-worker":
            self.statements.append((name, message))


@contextmanager
def counting_queries() -> Iterator[QueryLog]:
    logger = logging.getLogger("tortoise.db_client")
    handler = QueryLog()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def statements_for_one_event(
    server: Server, clients: list[WsClient], change: Any, position: int
) -> list[int]:
    """SQL statements run while `change()` happens and every client receives it,
    counted per asyncio task (the mutation's request, each subscription), largest first."""
    with counting_queries() as log:
        await change()
        for client in clients:
            event = await client.next_event()
            assert event["position"] == position, event
        await asyncio.sleep(0.1)  # anything a stream would still run after delivering
    per_task = Counter(task for task, _ in log.statements)
    return sorted(per_task.values(), reverse=True)


async def test_event_delivery_costs_no_query_per_subscriber(
    server: Server,
) -> None:
    allow_many_posts(server)
    admin = await staff(server, "admin")
    anna = await member(server)
    reactors = [await member(server) for _ in range(3)]
    thread, first = await open_thread(server, admin, anna)
    tid = db_id(thread, "Thread")
    position = 1
    measured: dict[str, dict[int, int]] = {}
    tasks: dict[str, list[int]] = {}

    async def measure(label: str, change: Any) -> None:
        nonlocal position
        totals: dict[int, int] = {}
        for n in (1, 5):
            async with asyncio.TaskGroup() as group:
                connections = [group.create_task(_open(server, anna.token)) for _ in range(n)]
            stack = [c.result() for c in connections]
            try:
                clients = [client for client, _ in stack]
                for client in clients:
                    await subscribe_events(client, thread, after=position)
                await wait_listeners(server, f"thread:{tid}", n)
                position += 1
                per_task = await statements_for_one_event(server, clients, change, position)
                totals[n] = sum(per_task)
                tasks[f"{label}, {n} subscribers"] = per_task
            finally:
                for _, ws in stack:
                    await ws.close()
        measured[label] = totals

    async def new_post() -> None:
        await add_post(server, anna, thread, "Mittaus")

    async def new_reaction() -> None:
        # Each call adds one more reaction to the first post (member x kind).
        reactor, kind = reaction_plan.pop()
        await react(server, reactor, first, kind)

    reaction_plan = [(r, k) for r in reactors for k in ("LIKE", "HEART", "SAD", "HELPFUL")]
    # Each reactor's per-minute reaction counter exists before the measurements (its
    # first use writes one statement more than the rest), on another thread.
    _, elsewhere = await open_thread(server, admin, anna)
    for reactor in reactors:
        await react(server, reactor, elsewhere)

    await measure("post, small thread", new_post)
    await measure("reaction, few reactions", new_reaction)
    # Grow the thread: 25 more posts and 8 more reactions on the measured post.
    for n in range(25):
        await add_post(server, anna, thread, f"Täyte {n}")
    for _ in range(8):
        await new_reaction()
    position = (await Thread.get(id=tid)).last_position
    await measure("post, big thread", new_post)
    await measure("reaction, many reactions", new_reaction)

    per_subscriber = {label: (t[5] - t[1]) / 4 for label, t in measured.items()}
    report = {
        label: {"totals": measured[label], "per_subscriber": per_subscriber[label]}
        for label in measured
    }
    print(f"\nSQL statements per delivered event: {report}\nper task: {tasks}")
    # The worker's feed reads each event once (event, post with author, reactions);
    # subscribers render their own view from that snapshot without a query.
    for label, cost in per_subscriber.items():
        assert cost == 0, report
        assert measured[label][1] == measured[label][5], report
    # Neither the thread's size nor the number of reactions changes the cost.
    assert per_subscriber["post, small thread"] == per_subscriber["post, big thread"], report
    assert (
        per_subscriber["reaction, few reactions"] == per_subscriber["reaction, many reactions"]
    ), report


async def _open(server: Server, token: str) -> tuple[WsClient, ClientConnection]:
    ws = await connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)])
    client = WsClient(ws)
    await client.send({"type": "connection_init", "payload": {"token": token}})
    ack = await client.receive()
    assert ack["type"] == "connection_ack", ack
    return client, ws


STREAMS, ROUNDS = 8, 40


async def stop(client: WsClient, op: str, after: float) -> None:
    await asyncio.sleep(after)
    await client.send({"type": "complete", "id": op})


async def read_all(client: WsClient) -> None:
    """Take whatever a socket is sent (its buffer must not fill)."""
    with contextlib.suppress(Exception):
        while True:
            await client.ws.recv()


async def test_streams_stopped_while_events_arrive_all_end(server: Server) -> None:
    """A subscription stopped as an event reaches it ends: it does not live on.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that lands just as
    the awaited ``get()`` completes; a stream waiting that way kept running
    after its operation was stopped or its socket closed, with nobody to
    deliver to, and held the worker's shutdown for its whole grace period.
    Stop streams at jittered moments around a post's fan-out, and count what
    is still running afterwards.
    """
    from ops import metrics

    allow_many_posts(server)
    admin = await staff(server, "admin")
    anna = await member(server)
    thread, _ = await open_thread(server, admin, anna)
    feed_id = db_id(thread, "Thread")

    def running() -> float:
        value: float = metrics.SUBSCRIPTIONS_ACTIVE._value.get()
        return value

    for _ in range(100):  # earlier tests' sockets may still be closing
        if running() == 0:
            break
        await asyncio.sleep(0.05)
    baseline = running()
    feeds: list[Any] = []  # every feed the thread had (a new one after each round)
    random = Random(7)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(ws_client(server, anna.token)) for _ in range(STREAMS)
        ]
        readers = [asyncio.create_task(read_all(client)) for client in clients]
        stack.callback(lambda: [reader.cancel() for reader in readers])
        for round_ in range(ROUNDS):
            op = f"op-{round_}"
            for client in clients:
                await subscribe_events(client, thread, op_id=op)
            for _ in range(250):
                feed = FEEDS.feeds.get(feed_id)
                if feed is not None and len(feed.subscribers) >= STREAMS:
                    feeds.append(feed)
                    break
                await asyncio.sleep(0.01)
            await add_post(server, anna, thread, f"Virta {round_}")

            await asyncio.gather(*(stop(client, op, random.uniform(0, 0.01)) for client in clients))
    for _ in range(100):
        if running() <= baseline and all(feed.task.done() for feed in feeds):
            break
        await asyncio.sleep(0.05)
    left = running() - baseline
    assert left <= 0, f"{left} of {STREAMS * ROUNDS} stopped streams still running"
    # Each of the thread's feeds (one task per thread and worker) ended with its last subscriber.
    assert feed_id not in FEEDS.feeds
    assert len(feeds) == ROUNDS and all(feed.task.done() for feed in feeds)
