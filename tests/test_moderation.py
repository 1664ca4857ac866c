"""Moderation over HTTP and websockets, with the database checked too.

Covers: members' reports with a category and an optional note (once per member
per post, not one's own, not removed posts, not posts one cannot see, a daily
cap per member), the automatic hold at `report_hide_threshold` distinct
reporters (who then sees the text: the author and moderators only; replies
and reactions refused), the moderation queues (REPORTED, HELD, DECIDED) with
their permissions, filters and pagination, never naming reporters, and the
decisions APPROVE / REMOVE / RESTORE: their effects on the post, the thread
events, the audit log and the author's notice, idempotence (also when two
moderators decide at once), inapplicable decisions, and the live views of
members and authors.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from strawberry.relay import GlobalID
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from config import override_settings
from models.community import AuditEntry, GroupMembership, MemberGroup, Notification
from models.discussions import EventKind, Post, PostStatus, Reaction, ThreadEvent
from models.moderation import Report
from resolvers import clock
from resolvers import moderation as moderation_logic
from resolvers.discussions import access_post
from subscriptions.bus import get_bus
from subscriptions.feeds import FEEDS
from tests.conftest import Server
from tests.helpers import Account, assert_no_permission, assert_unauthenticated, member, staff
from tests.ws import RECEIVE_SECONDS, WsClient

TRANSPORT_WS = "graphql-transport-ws"
CATEGORIES = (
    "MISINFORMATION",
    "SPAM_OR_TROLLING",
    "SELLING",
    "PERSONAL_ATTACK",
    "ILLEGAL_ACTIVITY",
    "OFFENSIVE",
    "PERSONAL_DATA",
    "OTHER",
)

# ---------------------------------------------------------------- documents

POST_FIELDS = """
  __typename id threadId body bodyHtml removed pending removedByModerator isMine
  author { id displayName isFormerMember staffBadge }
  reactions { kind count reactedByMe }
"""

CREATE_AREA = """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) {
    __typename
    ... on CreateAreaSuccess { area { id restricted } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

START_THREAD = f"""
mutation StartThread($input: StartThreadInput!) {{
  startThread(input: $input) {{
    __typename
    ... on StartThreadSuccess {{ thread {{ id }} post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
    ... on InputError {{ field }}
  }}
}}
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

REPORT_POST = """
mutation ReportPost($input: ReportPostInput!) {
  reportPost(input: $input) {
    __typename
    ... on ReportPostSuccess { reported }
    ... on Error { code message }
    ... on InputError { field }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""

MODERATE_POST = f"""
mutation ModeratePost($input: ModeratePostInput!) {{
  moderatePost(input: $input) {{
    __typename
    ... on ModeratePostSuccess {{ applied post {{ {POST_FIELDS} }} }}
    ... on Error {{ code message }}
    ... on InputError {{ field }}
  }}
}}
"""

MODERATION_QUEUE = f"""
query Queue(
  $queue: ModerationQueue!, $first: Int! = 20, $after: String, $areaId: ID,
  $category: ReportCategory
) {{
  moderationQueue(
    queue: $queue, first: $first, after: $after, areaId: $areaId, category: $category
  ) {{
    edges {{
      cursor
      node {{
        __typename threadId openReports reportNotes heldReason
        reportsByCategory {{ category count }}
        decision decisionCategory decidedAt
        decidedBy {{ __typename id displayName isFormerMember staffBadge }}
        post {{ {POST_FIELDS} }}
      }}
    }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

THREAD_POSTS = f"""
query ThreadPosts($id: ID!) {{
  node(id: $id) {{
    __typename
    ... on Thread {{
      posts(first: 50, order: OLDEST_FIRST) {{ edges {{ node {{ {POST_FIELDS} }} }} }}
    }}
  }}
}}
"""

POST_NODE = f"""
query PostNode($id: ID!) {{
  node(id: $id) {{ __typename ... on Post {{ {POST_FIELDS} }} }}
}}
"""

MY_NOTIFICATIONS = """
query MyNotifications {
  notifications(first: 50) {
    edges { node { __typename id position kind subjectId category read } }
  }
}
"""

SCHEMA_TYPES = """
{
  __schema {
    types {
      name kind
      fields { name type { name kind ofType { name kind ofType { name kind ofType { name } } } } }
    }
  }
}
"""

THREAD_EVENTS = f"""
subscription ThreadEvents($threadId: ID!, $after: Int) {{
  threadEvents(threadId: $threadId, after: $after) {{
    __typename position kind threadId
    post {{ {POST_FIELDS} }}
  }}
}}
"""

NOTIFICATIONS_SUBSCRIPTION = """
subscription Notices($after: Int) {
  notifications(after: $after) { __typename id position kind subjectId category read }
}
"""

# ---------------------------------------------------------------- websocket client


@asynccontextmanager
async def ws_client(server: Server, token: str) -> AsyncIterator[WsClient]:
    """An acknowledged graphql-transport-ws connection (token in connection_init)."""
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        assert ws.subprotocol == TRANSPORT_WS
        client = WsClient(ws)
        await client.send({"type": "connection_init", "payload": {"token": token}})
        ack = await client.receive()
        assert ack["type"] == "connection_ack", ack
        yield client


async def wait_listeners(server: Server, channel: str, count: int = 1) -> None:
    """Wait until `count` streams listen on a bus channel ("thread:3", "member:5")."""
    key = server.settings.channel_prefix + channel

    def listening() -> int:
        kind, _, number = channel.partition(":")
        if kind == "thread":
            feed = FEEDS.feeds.get(int(number))
            return len(feed.subscribers) if feed is not None else 0
        return len(get_bus().broadcast._subscribers.get(key, ()))

    for _ in range(250):
        if listening() >= count:
            await asyncio.sleep(0.3)  # the stream's first read and the SUBSCRIBE round trip
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} streams ever listened on {channel}")


# ---------------------------------------------------------------- helpers


def gid(type_name: str, row_id: int) -> str:
    return str(GlobalID(type_name, str(row_id)))


def db_id(global_id: str, type_name: str = "Post") -> int:
    parsed = GlobalID.from_id(global_id)
    assert parsed.type_name == type_name, global_id
    return int(parsed.node_id)


def ckey() -> str:
    return f"k-{uuid.uuid4().hex[:16]}"


def allow_many_posts(server: Server, **more: Any) -> None:
    override_settings(replace(server.settings, posts_per_minute=1000, posts_per_hour=1000, **more))


def no_email(body: dict[str, Any]) -> None:
    """Moderators see pseudonyms only: no email address anywhere in an answer."""
    assert "@" not in json.dumps(body), body


@dataclass
class World:
    admin: Account
    mod: Account
    author: Account
    area: str
    thread: str
    post: str  # the thread's first post, by `author`


async def members(server: Server, n: int) -> list[Account]:
    # One after another: registering while another member verifies deadlocks on SQLite
    # (register locks community then contacts, verifyEmail contacts then community).
    return [await member(server) for _ in range(n)]


async def create_area(server: Server, admin: Account, group_gid: str | None = None) -> str:
    data: dict[str, Any] = {
        "titleFi": "Alue",
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
    area: str = result["area"]["id"]
    return area


async def start_thread(
    server: Server, account: Account, area: str, body: str = "Aloitus"
) -> tuple[str, str]:
    """Start a thread; returns (thread id, first post id)."""
    answer = await server.gql(
        START_THREAD,
        {"input": {"areaId": area, "title": "Ketju", "body": body, "clientKey": ckey()}},
        token=account.token,
    )
    assert "errors" not in answer, answer
    result = answer["data"]["startThread"]
    assert result["__typename"] == "StartThreadSuccess", result
    return result["thread"]["id"], result["post"]["id"]


async def add_post(
    server: Server, account: Account, thread: str, body: str, parent: str | None = None
) -> dict[str, Any]:
    """Call addPost; returns the result object."""
    data: dict[str, Any] = {"threadId": thread, "body": body, "clientKey": ckey()}
    if parent is not None:
        data["parentId"] = parent
    answer = await server.gql(ADD_POST, {"input": data}, token=account.token)
    assert "errors" not in answer, answer
    result: dict[str, Any] = answer["data"]["addPost"]
    return result


async def posted(server: Server, account: Account, thread: str, body: str) -> str:
    result = await add_post(server, account, thread, body)
    assert result["__typename"] == "PostSuccess", result
    post_id: str = result["post"]["id"]
    return post_id


async def world(server: Server, text: str = "Tämä on viesti") -> World:
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    author = await member(server)
    area = await create_area(server, admin)
    thread, post = await start_thread(server, author, area, text)
    return World(admin, mod, author, area, thread, post)


async def report(
    server: Server,
    account: Account | None,
    post: str,
    category: str = "SPAM_OR_TROLLING",
    note: str = "",
) -> dict[str, Any]:
    """Call reportPost; returns the whole answer."""
    data: dict[str, Any] = {"postId": post, "category": category}
    if note:
        data["note"] = note
    body: dict[str, Any] = await server.gql(
        REPORT_POST, {"input": data}, token=account.token if account else None
    )
    return body


async def reported(
    server: Server, account: Account, post: str, category: str = "SPAM_OR_TROLLING", note: str = ""
) -> None:
    body = await report(server, account, post, category, note)
    assert "errors" not in body, body
    assert body["data"]["reportPost"] == {"__typename": "ReportPostSuccess", "reported": True}


def report_result(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["reportPost"]
    return result


def failed(result: dict[str, Any], typename: str, code: str) -> None:
    assert result["__typename"] == typename, result
    assert result["code"] == code and result["message"], result


async def moderate(
    server: Server,
    account: Account | None,
    post: str,
    decision: str,
    category: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Call moderatePost; returns the whole answer (never holding an email address)."""
    data: dict[str, Any] = {"postId": post, "decision": decision, "note": note}
    if category is not None:
        data["category"] = category
    body = await server.gql(
        MODERATE_POST, {"input": data}, token=account.token if account else None
    )
    no_email(body)
    return body


async def decided(
    server: Server,
    account: Account,
    post: str,
    decision: str,
    category: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """A successful moderatePost; returns its ModeratePostSuccess."""
    body = await moderate(server, account, post, decision, category, note)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["moderatePost"]
    assert result["__typename"] == "ModeratePostSuccess", result
    return result


async def queue_page(
    server: Server, account: Account | None, queue: str, **variables: Any
) -> dict[str, Any]:
    """Call moderationQueue; returns the whole answer (never holding an email address)."""
    body = await server.gql(
        MODERATION_QUEUE, {"queue": queue, **variables}, token=account.token if account else None
    )
    no_email(body)
    return body


async def queue_items(
    server: Server, account: Account, queue: str, **variables: Any
) -> dict[str, dict[str, Any]]:
    """One page of a queue as {post id: item}."""
    body = await queue_page(server, account, queue, **variables)
    assert "errors" not in body, body
    items: dict[str, dict[str, Any]] = {}
    for edge in body["data"]["moderationQueue"]["edges"]:
        assert edge["node"]["__typename"] == "ModerationItem", edge
        items[edge["node"]["post"]["id"]] = edge["node"]
    return items


async def thread_posts(server: Server, account: Account, thread: str) -> dict[str, dict[str, Any]]:
    body = await server.gql(THREAD_POSTS, {"id": thread}, token=account.token)
    assert "errors" not in body, body
    return {e["node"]["id"]: e["node"] for e in body["data"]["node"]["posts"]["edges"]}


async def post_node(server: Server, account: Account, post: str) -> dict[str, Any]:
    body = await server.gql(POST_NODE, {"id": post}, token=account.token)
    assert "errors" not in body, body
    node: dict[str, Any] = body["data"]["node"]
    assert node["__typename"] == "Post", node
    return node


async def events_of(thread: str) -> list[tuple[str, int]]:
    """(KIND, post row id) of a thread's events, in order."""
    rows = await ThreadEvent.filter(thread_id=db_id(thread, "Thread")).order_by("position")
    return [(r.kind.value.upper(), r.post_id) for r in rows]  # type: ignore[attr-defined]


async def hold(server: Server, post: str, reporters: list[Account]) -> None:
    """Report `post` by three distinct members: the default threshold holds it."""
    assert server.settings.report_hide_threshold == 3
    for i, reporter in enumerate(reporters[:3]):
        await reported(server, reporter, post, CATEGORIES[i], note=f"Huomio {i}")
    row = await Post.get(id=db_id(post))
    assert row.status == PostStatus.HELD, row.status


def assert_hidden_from_members(post: dict[str, Any]) -> None:
    assert post["body"] is None and post["bodyHtml"] is None, post


# ---------------------------------------------------------------- reports


async def test_member_reports_a_post_once_with_any_category_and_an_optional_note(
    server: Server,
) -> None:
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    posts = [w.post] + [
        await posted(server, w.author, w.thread, f"Viesti {i}") for i in range(len(CATEGORIES) - 1)
    ]
    for post, category in zip(posts, CATEGORIES, strict=True):
        note = "" if category == "OTHER" else f"Syy: {category.lower()}"
        await reported(server, bob, post, category, note)
    rows = await Report.filter(reporter_id=bob.member_id).order_by("id")
    assert [(r.post_id, r.category.value, r.note, r.settled_at) for r in rows] == [  # type: ignore[attr-defined]
        (db_id(p), c.lower(), "" if c == "OTHER" else f"Syy: {c.lower()}", None)
        for p, c in zip(posts, CATEGORIES, strict=True)
    ]

    # The same member again, even with another category: refused, still one row.
    again = report_result(await report(server, bob, w.post, "SELLING", "Uudestaan"))
    failed(again, "NotAllowedError", "ALREADY_REPORTED")
    same_post = await Report.filter(post_id=db_id(w.post))
    assert [(r.reporter_id, r.category.value) for r in same_post] == [  # type: ignore[attr-defined]
        (bob.member_id, "misinformation")
    ]

    # Two identical reports at once: one is filed, the other refused.
    carl = await member(server)
    racing = await asyncio.gather(*(report(server, carl, posts[1], "OFFENSIVE") for _ in range(2)))
    results = sorted(report_result(b)["__typename"] for b in racing)
    assert results == ["NotAllowedError", "ReportPostSuccess"], racing
    assert await Report.filter(post_id=db_id(posts[1]), reporter_id=carl.member_id).count() == 1

    # A too long note is refused with its field, and files nothing.
    long_note = report_result(await report(server, carl, posts[2], "OTHER", "x" * 1001))
    failed(long_note, "InputError", "TEXT_TOO_LONG")
    assert long_note["field"] == "note", long_note
    assert not await Report.exists(post_id=db_id(posts[2]), reporter_id=carl.member_id)
    # One report never holds anything.
    assert await Post.filter(status=PostStatus.HELD).count() == 0


async def test_reports_that_are_refused_file_nothing(server: Server) -> None:
    w = await world(server)
    bob, insider = await members(server, 2)

    own = report_result(await report(server, w.author, w.post))
    failed(own, "NotAllowedError", "CANNOT_REPORT_OWN")

    # A post its author deleted cannot be reported.
    doomed = await posted(server, w.author, w.thread, "Poistan tämän")
    deleted = await server.gql(DELETE_POST, {"postId": doomed}, token=w.author.token)
    assert deleted["data"]["deletePost"]["__typename"] == "PostSuccess", deleted
    gone = report_result(await report(server, bob, doomed))
    failed(gone, "NotAllowedError", "POST_REMOVED")

    # A post in a restricted area the reporter cannot see answers as a missing one does.
    group = await MemberGroup.create(name="Ryhmä")
    await GroupMembership.create(group=group, member_id=insider.member_id)
    closed_area = await create_area(server, w.admin, gid("MemberGroup", group.id))
    _, secret = await start_thread(server, insider, closed_area, "Vain ryhmälle")
    hidden = report_result(await report(server, bob, secret))
    failed(hidden, "NotAllowedError", "NOT_FOUND")
    missing = report_result(await report(server, bob, gid("Post", db_id(secret) + 1000)))
    failed(missing, "NotAllowedError", "NOT_FOUND")
    assert hidden["message"] == missing["message"]
    not_a_post = report_result(await report(server, bob, w.thread))
    failed(not_a_post, "NotAllowedError", "NOT_FOUND")

    anonymous = await report(server, None, w.post)
    assert_unauthenticated(anonymous)
    assert anonymous["data"] is None, anonymous

    assert await Report.all().count() == 0
    # The same member reports a visible post of another member.
    await reported(server, bob, w.post)
    assert await Report.all().count() == 1


async def test_daily_report_cap_per_member_lifts_after_a_day(server: Server) -> None:
    allow_many_posts(server, reports_per_day=2)
    w = await world(server)
    bob, carl = await members(server, 2)
    posts = [w.post] + [await posted(server, w.author, w.thread, f"Viesti {i}") for i in range(3)]

    await reported(server, bob, posts[0])
    await reported(server, bob, posts[1], "SELLING")
    third = report_result(await report(server, bob, posts[2], "OTHER"))
    failed(third, "RateLimitedError", "TOO_MANY_REPORTS")
    assert third["retryAfterSeconds"] > 0, third
    assert await Report.filter(reporter_id=bob.member_id).count() == 2
    # The cap is per member: another member still reports.
    await reported(server, carl, posts[2])

    clock.move(timedelta(days=1, minutes=1))
    await reported(server, bob, posts[2], "OTHER")
    assert await Report.filter(reporter_id=bob.member_id).count() == 3
    rows = await Report.filter(reporter_id=bob.member_id).order_by("id")
    assert [r.post_id for r in rows] == [db_id(p) for p in posts[:3]]  # type: ignore[attr-defined]


async def test_report_cap_retry_after_tells_when_reporting_works_again(server: Server) -> None:
    """`retryAfterSeconds` is "try again after": after it a report is accepted."""
    allow_many_posts(server, reports_per_day=2)
    w = await world(server)
    bob = await member(server)
    posts = [w.post] + [await posted(server, w.author, w.thread, f"Viesti {i}") for i in range(2)]
    await reported(server, bob, posts[0])
    clock.move(timedelta(hours=3))
    await reported(server, bob, posts[1])
    refused = report_result(await report(server, bob, posts[2]))
    failed(refused, "RateLimitedError", "TOO_MANY_REPORTS")
    wait = refused["retryAfterSeconds"]
    # The first report leaves the 24-hour window 21 hours from now: no sooner.
    assert 20 * 3600 <= wait <= 21 * 3600 + 60, refused
    clock.move(timedelta(seconds=wait + 1))
    await reported(server, bob, posts[2])


# ---------------------------------------------------------------- automatic hold


async def test_three_distinct_reporters_hold_a_post_two_do_not(server: Server) -> None:
    w = await world(server, "Kiistanalainen **väite**")
    bob, carl, dora, eve = await members(server, 4)
    post_row_id = db_id(w.post)

    await reported(server, bob, w.post, "MISINFORMATION", "Väärää tietoa")
    await reported(server, carl, w.post, "MISINFORMATION")
    row = await Post.get(id=post_row_id)
    assert (row.status, row.held_reason) == (PostStatus.VISIBLE, None)
    assert await events_of(w.thread) == [("POST_ADDED", post_row_id)]
    assert not await AuditEntry.exists(action="post.hold")
    assert (await post_node(server, eve, w.post))["body"] == "Kiistanalainen **väite**"

    await reported(server, dora, w.post, "OFFENSIVE")
    row = await Post.get(id=post_row_id)
    assert (row.status, row.held_reason) == (PostStatus.HELD, "reports")
    assert row.decided_at is None and row.decision is None
    assert await events_of(w.thread) == [
        ("POST_ADDED", post_row_id),
        ("POST_HIDDEN", post_row_id),
    ]
    holds = await AuditEntry.filter(action="post.hold")
    assert [(a.actor_id, a.actor_role, a.target_member_id, a.details) for a in holds] == [
        (None, "system", w.author.member_id, {"post": post_row_id})
    ]

    # Other members: the held post is gone from the thread and by node.
    assert w.post not in await thread_posts(server, eve, w.thread)
    body = await server.gql(POST_NODE, {"id": w.post}, token=bob.token)
    assert body == {"data": {"node": None}}, body
    # The author sees the text, marked pending.
    mine = (await thread_posts(server, w.author, w.thread))[w.post]
    assert mine["body"] == "Kiistanalainen **väite**" and mine["isMine"] is True, mine
    assert mine["bodyHtml"] == "Kiistanalainen <strong>väite</strong>", mine
    assert mine["pending"] is True
    # Moderators and admins see the text.
    for staffer in (w.mod, w.admin):
        seen = (await thread_posts(server, staffer, w.thread))[w.post]
        assert seen["body"] == "Kiistanalainen **väite**" and seen["pending"] is True, seen

    # To other members a held post does not exist: no reply, reaction or further
    # report; nothing is stored.
    reply = await add_post(server, eve, w.thread, "Vastaus", parent=w.post)
    failed(reply, "NotAllowedError", "NOT_FOUND")
    reaction = await server.gql(
        REACT, {"input": {"postId": w.post, "kind": "LIKE"}}, token=eve.token
    )
    assert "errors" not in reaction, reaction
    failed(reaction["data"]["react"], "NotAllowedError", "NOT_FOUND")
    late = await server.gql(
        REPORT_POST, {"input": {"postId": w.post, "category": "OTHER"}}, token=eve.token
    )
    failed(late["data"]["reportPost"], "NotAllowedError", "NOT_FOUND")
    assert await Post.all().count() == 1
    assert await Reaction.all().count() == 0
    assert await Report.filter(post_id=post_row_id).count() == 3
    assert [k for k, _ in await events_of(w.thread)].count("POST_HIDDEN") == 1
    assert await AuditEntry.filter(action="post.hold").count() == 1


async def test_reports_arriving_at_once_hold_the_post_exactly_once(server: Server) -> None:
    w = await world(server)
    reporters = await members(server, 3)
    bodies = await asyncio.gather(
        *(report(server, r, w.post, "SPAM_OR_TROLLING") for r in reporters)
    )
    assert all(report_result(b)["__typename"] == "ReportPostSuccess" for b in bodies), bodies
    row = await Post.get(id=db_id(w.post))
    assert row.status == PostStatus.HELD, row.status
    assert [k for k, _ in await events_of(w.thread)] == ["POST_ADDED", "POST_HIDDEN"]
    assert await AuditEntry.filter(action="post.hold").count() == 1
    assert await Report.filter(post_id=row.id).count() == 3


async def test_a_report_that_read_the_post_before_the_hold_does_not_hold_it_again(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four reports read the visible post, then are filed one after another: the third
    holds it; the fourth must not hold it a second time (a second POST_HIDDEN and audit)."""
    w = await world(server)
    reporters = await members(server, 4)
    read = {r.member_id: asyncio.Event() for r in reporters}
    turn = {r.member_id: asyncio.Event() for r in reporters}

    async def paused_access(viewer: Any, post_id: int) -> Post:
        post = await access_post(viewer, post_id)
        if viewer.id in read:
            read[viewer.id].set()
            await turn[viewer.id].wait()
        return post

    monkeypatch.setattr(moderation_logic, "access_post", paused_access)
    tasks = [asyncio.create_task(report(server, r, w.post, "OFFENSIVE")) for r in reporters]
    async with asyncio.timeout(RECEIVE_SECONDS):
        for event in read.values():
            await event.wait()
    for reporter, task in zip(reporters, tasks, strict=True):
        turn[reporter.member_id].set()
        async with asyncio.timeout(RECEIVE_SECONDS):
            result = report_result(await task)
        assert result["__typename"] == "ReportPostSuccess", result
    row = await Post.get(id=db_id(w.post))
    assert row.status == PostStatus.HELD, row.status
    assert await Report.filter(post_id=row.id).count() == 4
    assert [k for k, _ in await events_of(w.thread)] == ["POST_ADDED", "POST_HIDDEN"]
    assert await AuditEntry.filter(action="post.hold").count() == 1


# ---------------------------------------------------------------- queues


async def test_only_moderators_and_admins_work_the_queue_and_decide(server: Server) -> None:
    w = await world(server)
    bob = await member(server)
    researcher = await staff(server, "researcher")
    await reported(server, bob, w.post)

    for queue in ("REPORTED", "HELD", "DECIDED"):
        for account in (bob, w.author, researcher):
            refused = await queue_page(server, account, queue)
            assert_no_permission(refused, "FORBIDDEN")
            assert refused["data"] is None, refused
        assert_unauthenticated(await queue_page(server, None, queue))
    for account in (w.mod, w.admin):
        assert list(await queue_items(server, account, "REPORTED")) == [w.post]

    for account in (bob, w.author, researcher):
        refused = await moderate(server, account, w.post, "REMOVE", "SPAM_OR_TROLLING")
        assert_no_permission(refused, "FORBIDDEN")
    assert_unauthenticated(await moderate(server, None, w.post, "REMOVE", "SPAM_OR_TROLLING"))
    row = await Post.get(id=db_id(w.post))
    assert (row.status, row.decided_at, row.decision) == (PostStatus.VISIBLE, None, None)
    assert await AuditEntry.filter(action__startswith="post.").count() == 0
    assert await Report.filter(settled_at__isnull=False).count() == 0

    # An admin decides as a moderator does.
    result = await decided(server, w.admin, w.post, "REMOVE", "SPAM_OR_TROLLING")
    assert result["applied"] is True
    audit = await AuditEntry.get(action="post.remove")
    assert (audit.actor_id, audit.actor_role) == (w.admin.member_id, "admin")


async def test_queues_show_why_a_post_is_there_and_never_who_reported(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server, "Ensimmäinen")
    bob, carl, dora = await members(server, 3)
    reported_post = await posted(server, w.author, w.thread, "Myyn halvalla")
    held_post = await posted(server, w.author, w.thread, "Pidätetty")
    decided_post = await posted(server, w.author, w.thread, "Poistettu")

    await reported(server, bob, reported_post, "SELLING", "Mainostaa tuotetta")
    await reported(server, carl, reported_post, "SELLING")
    await reported(server, dora, reported_post, "SPAM_OR_TROLLING", "Roskaa")
    await hold(server, held_post, [bob, carl, dora])
    await reported(server, bob, decided_post, "PERSONAL_ATTACK")
    await decided(server, w.mod, decided_post, "REMOVE", "PERSONAL_ATTACK", "Henkilöön menevää")
    # Two reports leave the first post visible: only REPORTED lists it.
    await reported(server, bob, w.post, "OFFENSIVE", "Loukkaava")
    await reported(server, carl, w.post, "OFFENSIVE")

    reported_items = await queue_items(server, w.mod, "REPORTED")
    assert list(reported_items) == [w.post], reported_items
    item = reported_items[w.post]
    assert item["__typename"] == "ModerationItem" and item["threadId"] == w.thread
    assert item["openReports"] == 2 and item["heldReason"] is None, item
    assert item["reportsByCategory"] == [{"category": "OFFENSIVE", "count": 2}], item
    assert item["reportNotes"] == ["Loukkaava"], item
    assert item["post"]["body"] == "Ensimmäinen" and item["post"]["pending"] is False, item
    assert item["decision"] is None and item["decidedBy"] is None and item["decidedAt"] is None
    assert item["post"]["author"]["displayName"] == w.author.display_name

    # Three reports held the other two posts: HELD lists them, newest first.
    held = await queue_items(server, w.mod, "HELD")
    assert list(held) == [held_post, reported_post], held
    selling = held[reported_post]
    assert selling["heldReason"] == "reports" and selling["openReports"] == 3, selling
    assert selling["reportsByCategory"] == [
        {"category": "SELLING", "count": 2},
        {"category": "SPAM_OR_TROLLING", "count": 1},
    ], selling
    assert sorted(selling["reportNotes"]) == ["Mainostaa tuotetta", "Roskaa"], selling
    assert selling["post"]["pending"] is True and selling["post"]["body"] == "Myyn halvalla"
    assert sorted(held[held_post]["reportNotes"]) == ["Huomio 0", "Huomio 1", "Huomio 2"]

    decided_items = await queue_items(server, w.mod, "DECIDED")
    assert list(decided_items) == [decided_post], decided_items
    done = decided_items[decided_post]
    assert done["decision"] == "REMOVE" and done["decisionCategory"] == "PERSONAL_ATTACK", done
    assert done["decidedAt"] is not None and done["openReports"] == 0, done
    assert done["reportNotes"] == [] and done["reportsByCategory"] == [], done
    assert done["decidedBy"] == {
        "__typename": "Member",
        "id": w.mod.gid,
        "displayName": w.mod.display_name,
        "isFormerMember": False,
        "staffBadge": "MODERATOR",
    }
    assert done["post"]["removed"] is True and done["post"]["removedByModerator"] is True
    assert done["post"]["body"] == "Poistettu", done  # moderators still see it

    # Nothing in any queue names a reporter (answers were checked for "@" too).
    for queue in ("REPORTED", "HELD", "DECIDED"):
        text = json.dumps(await queue_page(server, w.admin, queue))
        for reporter in (bob, carl, dora):
            assert reporter.gid not in text and reporter.display_name not in text, queue


async def test_no_queue_type_exposes_reporters_or_contact_data(server: Server) -> None:
    body = await server.gql(SCHEMA_TYPES)
    assert "errors" not in body, body
    types = {t["name"]: t for t in body["data"]["__schema"]["types"]}

    def named(type_ref: dict[str, Any]) -> str:
        while type_ref.get("ofType"):
            type_ref = type_ref["ofType"]
        name: str = type_ref["name"]
        return name

    fields = {f["name"] for f in types["ModerationItem"]["fields"]}
    assert fields == {
        "post",
        "threadId",
        "openReports",
        "reportsByCategory",
        "reportNotes",
        "heldReason",
        "checkDecisions",
        "decision",
        "decisionCategory",
        "decidedAt",
        "decidedBy",
    }, fields
    # Everything reachable from the queue and the decision's answer.
    seen: set[str] = set()
    todo = ["ModerationItemConnection", "ModeratePostResult", "ReportPostResult"]
    while todo:
        name = todo.pop()
        if name in seen or name not in types:
            continue
        seen.add(name)
        for field in types[name]["fields"] or []:
            lowered = field["name"].lower()
            assert "reporter" not in lowered and "reportedby" not in lowered, (name, field)
            for banned in ("email", "contact", "birth", "phone", "login", "password"):
                assert banned not in lowered, (name, field)
            todo.append(named(field["type"]))
    assert {"ModerationItem", "Post", "Member", "CategoryCount"} <= seen, seen
    assert "ContactDetails" not in seen
    assert {f["name"] for f in types["CategoryCount"]["fields"]} == {"category", "count"}
    assert {f["name"] for f in types["Member"]["fields"]} == {
        "id",
        "displayName",
        "isFormerMember",
        "staffBadge",
    }


async def test_queue_filters_by_area_and_category_and_pages_by_cursor(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    other_area = await create_area(server, w.admin)
    other_thread, other_first = await start_thread(server, w.author, other_area, "Toisaalla")
    here = [w.post] + [await posted(server, w.author, w.thread, f"Täällä {i}") for i in range(3)]
    for post in here:
        await reported(server, bob, post, "SPAM_OR_TROLLING")
    await reported(server, bob, other_first, "SELLING")
    everything = [*here, other_first]

    by_area = await queue_items(server, w.mod, "REPORTED", areaId=w.area)
    assert set(by_area) == set(here)
    assert list(await queue_items(server, w.mod, "REPORTED", areaId=other_area)) == [other_first]
    by_category = await queue_items(server, w.mod, "REPORTED", category="SELLING")
    assert list(by_category) == [other_first]
    assert set(await queue_items(server, w.mod, "REPORTED", category="SPAM_OR_TROLLING")) == set(
        here
    )
    assert await queue_items(server, w.mod, "REPORTED", category="OTHER") == {}
    assert (
        await queue_items(server, w.mod, "REPORTED", areaId=other_area, category="SPAM_OR_TROLLING")
        == {}
    )

    # Cursor pages of two, newest post first, each post once.
    seen: list[str] = []
    after = None
    pages = []
    while True:
        variables: dict[str, Any] = {"first": 2}
        if after is not None:
            variables["after"] = after
        body = await queue_page(server, w.mod, "REPORTED", **variables)
        assert "errors" not in body, body
        connection = body["data"]["moderationQueue"]
        seen.extend(e["node"]["post"]["id"] for e in connection["edges"])
        pages.append(len(connection["edges"]))
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == [2, 2, 1]
    assert seen == sorted(everything, key=db_id, reverse=True)

    too_many = await queue_page(server, w.mod, "REPORTED", first=101)
    assert_no_permission(too_many, "BAD_USER_INPUT")
    assert_no_permission(await queue_page(server, w.mod, "REPORTED", first=0), "BAD_USER_INPUT")
    not_an_area = await queue_page(server, w.mod, "REPORTED", areaId=other_thread)
    assert_no_permission(not_an_area, "BAD_USER_INPUT")

    # HELD and DECIDED filter the same way.
    # `bob` reported it already: two others hold it (three open reports, SELLING first).
    for i, reporter in enumerate(await members(server, 2)):
        await reported(server, reporter, other_first, CATEGORIES[i])
    assert (await Post.get(id=db_id(other_first))).status == PostStatus.HELD
    assert list(await queue_items(server, w.mod, "HELD", areaId=other_area)) == [other_first]
    assert await queue_items(server, w.mod, "HELD", areaId=w.area) == {}
    assert list(await queue_items(server, w.mod, "HELD", category="SELLING")) == [other_first]
    assert await queue_items(server, w.mod, "HELD", category="PERSONAL_DATA") == {}
    await decided(server, w.mod, here[0], "REMOVE", "PERSONAL_DATA")
    await decided(server, w.mod, other_first, "REMOVE", "SELLING")
    assert list(await queue_items(server, w.mod, "DECIDED", category="PERSONAL_DATA")) == [here[0]]
    assert list(await queue_items(server, w.mod, "DECIDED", areaId=other_area)) == [other_first]
    assert set(await queue_items(server, w.mod, "DECIDED")) == {here[0], other_first}


# ---------------------------------------------------------------- decisions


async def test_remove_needs_a_category_and_tells_the_author_which_rule_not_who(
    server: Server,
) -> None:
    w = await world(server, "Sinä olet idiootti")
    bob, carl = await members(server, 2)
    post_row_id = db_id(w.post)
    await reported(server, bob, w.post, "PERSONAL_ATTACK", "Solvaa toista")
    await reported(server, carl, w.post, "OFFENSIVE")

    missing = await moderate(server, w.mod, w.post, "REMOVE", note="Ei kategoriaa")
    result = missing["data"]["moderatePost"]
    failed(result, "InputError", "CATEGORY_REQUIRED")
    assert result["field"] == "category", result
    row = await Post.get(id=post_row_id)
    assert (row.status, row.decision) == (PostStatus.VISIBLE, None)
    assert await AuditEntry.filter(action__startswith="post.").count() == 0

    removed = await decided(server, w.mod, w.post, "REMOVE", "PERSONAL_ATTACK", "Sääntö 4")
    assert removed["applied"] is True
    assert removed["post"]["removed"] is True and removed["post"]["removedByModerator"] is True
    assert removed["post"]["body"] == "Sinä olet idiootti"  # the moderator still sees it
    assert removed["post"]["pending"] is False

    row = await Post.get(id=post_row_id)
    assert row.status == PostStatus.MODERATED
    assert (row.decision, row.decision_category, row.decided_by_id) == (
        "remove",
        "personal_attack",
        w.mod.member_id,
    )
    assert row.decided_at is not None and row.held_reason is None
    assert row.body == "Sinä olet idiootti"  # kept for review and restoring
    assert await Report.filter(post_id=post_row_id, settled_at__isnull=True).count() == 0
    assert await events_of(w.thread) == [("POST_ADDED", post_row_id), ("POST_REMOVED", post_row_id)]
    audit = await AuditEntry.get(action="post.remove")
    assert (audit.actor_id, audit.actor_role, audit.target_member_id, audit.reason) == (
        w.mod.member_id,
        "moderator",
        w.author.member_id,
        "Sääntö 4",
    )
    assert audit.details == {"post": post_row_id, "category": "personal_attack"}

    # Members and the author no longer see the text.
    for account in (bob, w.author):
        view = (await thread_posts(server, account, w.thread))[w.post]
        assert_hidden_from_members(view)
        assert view["removed"] is True and view["removedByModerator"] is True, view
    assert (await thread_posts(server, w.admin, w.thread))[w.post]["body"] == "Sinä olet idiootti"

    # The author is told which rule, never who reported or who decided.
    notices = await Notification.filter(member_id=w.author.member_id)
    assert [(n.kind, n.params) for n in notices] == [
        (
            "POST_REMOVED_BY_MODERATOR",
            {"postId": post_row_id, "category": "personal_attack"},
        )
    ]
    assert await Notification.filter(member_id__in=[bob.member_id, carl.member_id]).count() == 0
    body = await server.gql(MY_NOTIFICATIONS, token=w.author.token)
    assert "errors" not in body, body
    nodes = [e["node"] for e in body["data"]["notifications"]["edges"]]
    assert len(nodes) == 1 and nodes[0]["kind"] == "POST_REMOVED_BY_MODERATOR", nodes
    assert nodes[0]["subjectId"] == w.post and nodes[0]["read"] is False, nodes
    assert (nodes[0]["category"] or "").upper() == "PERSONAL_ATTACK", nodes
    text = json.dumps(body)
    for someone in (bob, carl, w.mod):
        assert someone.gid not in text and someone.display_name not in text
    assert "Solvaa toista" not in text


async def test_removal_notice_names_the_rule_as_the_api_spells_it(server: Server) -> None:
    """The notice's `category` is a ReportCategory value as moderatePost takes it."""
    w = await world(server)
    await decided(server, w.mod, w.post, "REMOVE", "PERSONAL_DATA")
    body = await server.gql(MY_NOTIFICATIONS, token=w.author.token)
    assert "errors" not in body, body
    [edge] = body["data"]["notifications"]["edges"]
    assert edge["node"]["category"] in CATEGORIES, edge
    assert edge["node"]["category"] == "PERSONAL_DATA", edge


async def test_approve_shows_a_held_post_again_and_settles_its_reports(server: Server) -> None:
    w = await world(server, "Ihan asiallinen")
    reporters = await members(server, 6)
    post_row_id = db_id(w.post)
    await hold(server, w.post, reporters[:3])
    assert list(await queue_items(server, w.mod, "HELD")) == [w.post]

    approved = await decided(server, w.mod, w.post, "APPROVE", note="Ei rikkomusta")
    assert approved["applied"] is True
    assert approved["post"]["pending"] is False and approved["post"]["removed"] is False
    row = await Post.get(id=post_row_id)
    assert (row.status, row.held_reason, row.decision) == (PostStatus.VISIBLE, None, "approve")
    assert row.reviewed_at is not None and row.decided_by_id == w.mod.member_id
    assert await Report.filter(post_id=post_row_id, settled_at__isnull=True).count() == 0
    assert await Report.filter(post_id=post_row_id, settled_at__isnull=False).count() == 3
    assert [k for k, _ in await events_of(w.thread)] == [
        "POST_ADDED",
        "POST_HIDDEN",
        "POST_RESTORED",
    ]
    audit = await AuditEntry.get(action="post.approve")
    assert (audit.actor_id, audit.target_member_id, audit.reason) == (
        w.mod.member_id,
        w.author.member_id,
        "Ei rikkomusta",
    )
    assert audit.details == {"post": post_row_id, "category": None}
    assert await Notification.filter(member_id=w.author.member_id).count() == 0

    # Everyone sees the text again; it left the HELD and REPORTED queues.
    view = (await thread_posts(server, reporters[4], w.thread))[w.post]
    assert view["body"] == "Ihan asiallinen" and view["pending"] is False, view
    assert await queue_items(server, w.mod, "HELD") == {}
    assert await queue_items(server, w.mod, "REPORTED") == {}
    done = (await queue_items(server, w.mod, "DECIDED"))[w.post]
    assert done["decision"] == "APPROVE" and done["decisionCategory"] is None, done
    assert done["decidedBy"]["displayName"] == w.mod.display_name

    # Settled reports do not count again: new reporters start from zero.
    await reported(server, reporters[3], w.post)
    await reported(server, reporters[4], w.post)
    assert (await Post.get(id=post_row_id)).status == PostStatus.VISIBLE
    listed = await queue_items(server, w.mod, "REPORTED")
    assert list(listed) == [w.post] and listed[w.post]["openReports"] == 2, listed
    await reported(server, reporters[5], w.post)
    assert (await Post.get(id=post_row_id)).status == PostStatus.HELD
    assert [k for k, _ in await events_of(w.thread)].count("POST_HIDDEN") == 2
    assert (await queue_items(server, w.mod, "HELD"))[w.post]["openReports"] == 3


async def test_approving_reports_on_a_visible_post_settles_them_every_time(
    server: Server,
) -> None:
    """A reported (not held) post leaves the REPORTED queue when approved, also the second time."""
    w = await world(server)
    bob, carl = await members(server, 2)
    post_row_id = db_id(w.post)
    await reported(server, bob, w.post, "OTHER", "Epäselvä")
    first = await decided(server, w.mod, w.post, "APPROVE")
    assert first["applied"] is True
    assert await queue_items(server, w.mod, "REPORTED") == {}
    # No visible change, so no thread event.
    assert [k for k, _ in await events_of(w.thread)] == ["POST_ADDED"]
    assert await AuditEntry.filter(action="post.approve").count() == 1

    # A new report after the review: in the queue again, and approving settles it.
    await reported(server, carl, w.post, "OTHER", "Edelleen epäselvä")
    assert list(await queue_items(server, w.mod, "REPORTED")) == [w.post]
    await decided(server, w.mod, w.post, "APPROVE")
    assert await Report.filter(post_id=post_row_id, settled_at__isnull=True).count() == 0
    assert await queue_items(server, w.mod, "REPORTED") == {}


async def test_restore_undoes_a_removal(server: Server) -> None:
    w = await world(server, "Palautettava")
    bob = await member(server)
    post_row_id = db_id(w.post)
    await decided(server, w.mod, w.post, "REMOVE", "MISINFORMATION", "Virhe")
    restored = await decided(server, w.admin, w.post, "RESTORE", note="Tarkistettu: oikein")
    assert restored["applied"] is True
    assert restored["post"]["removed"] is False and restored["post"]["removedByModerator"] is False
    row = await Post.get(id=post_row_id)
    assert (row.status, row.decision, row.decision_category, row.decided_by_id) == (
        PostStatus.VISIBLE,
        "restore",
        None,
        w.admin.member_id,
    )
    assert [k for k, _ in await events_of(w.thread)] == [
        "POST_ADDED",
        "POST_REMOVED",
        "POST_RESTORED",
    ]
    actions = [
        (a.action, a.actor_id, a.reason)
        for a in await AuditEntry.filter(action__startswith="post.").order_by("id")
    ]
    assert actions == [
        ("post.remove", w.mod.member_id, "Virhe"),
        ("post.restore", w.admin.member_id, "Tarkistettu: oikein"),
    ]
    view = await post_node(server, bob, w.post)
    assert view["body"] == "Palautettava" and view["removed"] is False, view
    # Members may react again.
    reaction = await server.gql(
        REACT, {"input": {"postId": w.post, "kind": "HEART"}}, token=bob.token
    )
    assert reaction["data"]["react"]["__typename"] == "PostSuccess", reaction


async def test_the_same_decision_twice_is_applied_once(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server)
    reporters = await members(server, 3)
    other = await posted(server, w.author, w.thread, "Toinen")

    first = await decided(server, w.mod, w.post, "REMOVE", "SELLING", "Myynti")
    second = await decided(server, w.mod, w.post, "REMOVE", "SELLING", "Myynti")
    assert (first["applied"], second["applied"]) == (True, False)
    assert second["post"]["removedByModerator"] is True
    assert await AuditEntry.filter(action="post.remove").count() == 1
    assert [k for k, _ in await events_of(w.thread)].count("POST_REMOVED") == 1
    assert await Notification.filter(member_id=w.author.member_id).count() == 1

    await hold(server, other, reporters)
    approvals = [await decided(server, w.mod, other, "APPROVE") for _ in range(2)]
    assert [a["applied"] for a in approvals] == [True, False]
    assert await AuditEntry.filter(action="post.approve").count() == 1
    assert [k for k, _ in await events_of(w.thread)].count("POST_RESTORED") == 1

    # RESTORE of a post that is visible is answered, not applied.
    restore = await decided(server, w.mod, other, "RESTORE")
    assert restore["applied"] is False
    assert await AuditEntry.filter(action="post.restore").count() == 0
    assert [k for k, _ in await events_of(w.thread)].count("POST_RESTORED") == 1


async def test_two_moderators_deciding_at_once_apply_it_once(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server)
    mod2 = await staff(server, "moderator")
    reporters = await members(server, 3)
    other = await posted(server, w.author, w.thread, "Toinen")

    removals = await asyncio.gather(
        decided(server, w.mod, w.post, "REMOVE", "OFFENSIVE"),
        decided(server, mod2, w.post, "REMOVE", "OFFENSIVE"),
    )
    assert sorted(r["applied"] for r in removals) == [False, True], removals
    assert await AuditEntry.filter(action="post.remove").count() == 1
    assert [k for k, _ in await events_of(w.thread)].count("POST_REMOVED") == 1
    assert await Notification.filter(member_id=w.author.member_id).count() == 1
    winner = w.mod if removals[0]["applied"] else mod2
    assert (await Post.get(id=db_id(w.post))).decided_by_id == winner.member_id

    await hold(server, other, reporters)
    approvals = await asyncio.gather(
        decided(server, w.mod, other, "APPROVE"), decided(server, mod2, other, "APPROVE")
    )
    assert sorted(a["applied"] for a in approvals) == [False, True], approvals
    assert await AuditEntry.filter(action="post.approve").count() == 1
    assert [k for k, _ in await events_of(w.thread)].count("POST_RESTORED") == 1


async def test_decisions_that_do_not_apply_are_refused_with_their_code(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server)
    reporters = await members(server, 3)
    held = await posted(server, w.author, w.thread, "Pidätetty")
    deleted = await posted(server, w.author, w.thread, "Itse poistettu")
    await hold(server, held, reporters)
    gone = await server.gql(DELETE_POST, {"postId": deleted}, token=w.author.token)
    assert gone["data"]["deletePost"]["__typename"] == "PostSuccess", gone
    await decided(server, w.mod, w.post, "REMOVE", "OTHER")
    audits_before = await AuditEntry.all().count()
    events_before = await events_of(w.thread)

    cases = [
        (w.post, "APPROVE", None),  # removed by a moderator: RESTORE, not APPROVE
        (held, "RESTORE", None),  # held: APPROVE or REMOVE
        (deleted, "APPROVE", None),  # deleted by its author
        (deleted, "RESTORE", None),
        (deleted, "REMOVE", "OTHER"),
    ]
    for post, decision, category in cases:
        body = await moderate(server, w.mod, post, decision, category)
        assert "errors" not in body, body
        failed(body["data"]["moderatePost"], "NotAllowedError", "DECISION_NOT_APPLICABLE")
    statuses = {
        p.id: p.status
        for p in await Post.filter(id__in=[db_id(x) for x in (w.post, held, deleted)])
    }
    assert statuses == {
        db_id(w.post): PostStatus.MODERATED,
        db_id(held): PostStatus.HELD,
        db_id(deleted): PostStatus.REMOVED,
    }
    assert await AuditEntry.all().count() == audits_before
    assert await events_of(w.thread) == events_before

    unknown = await moderate(server, w.mod, gid("Post", db_id(held) + 1000), "APPROVE")
    failed(unknown["data"]["moderatePost"], "NotAllowedError", "NOT_FOUND")
    not_a_post = await moderate(server, w.mod, w.thread, "APPROVE")
    failed(not_a_post["data"]["moderatePost"], "NotAllowedError", "NOT_FOUND")


async def test_approve_that_loses_a_race_to_remove_does_not_restore_the_post(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An APPROVE checked against a held post, applied after another moderator removed it,
    must not make the removed post visible (APPROVE does not apply to removed posts)."""
    w = await world(server, "Rikkoo sääntöjä")
    slow_mod = await staff(server, "moderator")
    reporters = await members(server, 3)
    await hold(server, w.post, reporters)

    original = access_post
    checked = asyncio.Event()
    go_on = asyncio.Event()

    async def paused_access(viewer: Any, post_id: int) -> Post:
        post = await original(viewer, post_id)
        if viewer.id == slow_mod.member_id:
            checked.set()
            await go_on.wait()
        return post

    monkeypatch.setattr(moderation_logic, "access_post", paused_access)
    approving = asyncio.create_task(moderate(server, slow_mod, w.post, "APPROVE"))
    async with asyncio.timeout(RECEIVE_SECONDS):
        await checked.wait()
    removal = await decided(server, w.mod, w.post, "REMOVE", "OFFENSIVE")
    assert removal["applied"] is True
    go_on.set()
    async with asyncio.timeout(RECEIVE_SECONDS):
        body = await approving
    assert "errors" not in body, body
    # Answered as an APPROVE of a removed post is: it does not apply.
    failed(body["data"]["moderatePost"], "NotAllowedError", "DECISION_NOT_APPLICABLE")
    row = await Post.get(id=db_id(w.post))
    assert (row.status, row.decision) == (PostStatus.MODERATED, "remove")
    assert [k for k, _ in await events_of(w.thread)] == [
        "POST_ADDED",
        "POST_HIDDEN",
        "POST_REMOVED",
    ]
    assert await AuditEntry.filter(action="post.approve").count() == 0


# ---------------------------------------------------------------- live


async def test_members_see_holds_removals_and_restores_live(server: Server) -> None:
    allow_many_posts(server)
    w = await world(server, "Alkuperäinen")
    reporters = await members(server, 3)
    bob = await member(server)
    other = await posted(server, w.author, w.thread, "Poistettava")
    thread_row_id = db_id(w.thread, "Thread")
    position = (await events_of(w.thread)).__len__()

    async with (
        ws_client(server, bob.token) as bob_ws,
        ws_client(server, w.author.token) as author_ws,
        ws_client(server, w.mod.token) as mod_ws,
    ):
        for client in (bob_ws, author_ws, mod_ws):
            await client.subscribe("events", THREAD_EVENTS, {"threadId": w.thread})
        await author_ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"thread:{thread_row_id}", 3)
        await wait_listeners(server, f"member:{w.author.member_id}")

        # The third report hides the post: members lose the text, live.
        for reporter in reporters[:2]:
            await reported(server, reporter, w.post, "MISINFORMATION")
        await bob_ws.expect_silence(0.3)
        await reported(server, reporters[2], w.post, "MISINFORMATION")
        hidden = await bob_ws.next_event()
        assert hidden["kind"] == "POST_HIDDEN" and hidden["position"] == position + 1, hidden
        assert hidden["post"]["id"] == w.post and hidden["post"]["pending"] is True
        assert_hidden_from_members(hidden["post"])
        authors = await author_ws.next_event()
        assert authors["kind"] == "POST_HIDDEN", authors
        assert authors["post"]["body"] == "Alkuperäinen" and authors["post"]["isMine"] is True
        mods = await mod_ws.next_event()
        assert mods["kind"] == "POST_HIDDEN" and mods["post"]["body"] == "Alkuperäinen", mods

        # Approval brings it back.
        await decided(server, w.mod, w.post, "APPROVE")
        back = await bob_ws.next_event()
        assert back["kind"] == "POST_RESTORED" and back["position"] == position + 2, back
        assert back["post"]["body"] == "Alkuperäinen" and back["post"]["pending"] is False
        for client in (author_ws, mod_ws):
            assert (await client.next_event())["kind"] == "POST_RESTORED"

        # A removal drops the text for members; the author is told which rule, live.
        await decided(server, w.mod, other, "REMOVE", "SPAM_OR_TROLLING", "Roskapostia")
        removed = await bob_ws.next_event()
        assert removed["kind"] == "POST_REMOVED" and removed["position"] == position + 3, removed
        assert removed["post"]["id"] == other
        assert removed["post"]["removedByModerator"] is True and removed["post"]["removed"] is True
        assert_hidden_from_members(removed["post"])
        notice = await author_ws.next_data("notices", "notifications")
        assert notice["__typename"] == "Notification", notice
        assert notice["kind"] == "POST_REMOVED_BY_MODERATOR" and notice["subjectId"] == other
        assert (notice["category"] or "").upper() == "SPAM_OR_TROLLING", notice
        assert (await author_ws.next_event())["kind"] == "POST_REMOVED"
        mods_removed = await mod_ws.next_event()
        assert mods_removed["post"]["body"] == "Poistettava", mods_removed

        # A decision answered but not applied sends nothing.
        again = await decided(server, w.mod, other, "REMOVE", "SPAM_OR_TROLLING")
        assert again["applied"] is False
        await bob_ws.expect_silence(0.4)
        await author_ws.expect_silence(0.1)

    stored = await ThreadEvent.filter(thread_id=thread_row_id, position__gt=position).order_by(
        "position"
    )
    assert [e.kind for e in stored] == [
        EventKind.POST_HIDDEN,
        EventKind.POST_RESTORED,
        EventKind.POST_REMOVED,
    ]
