"""Real-time anonymous threaded discussions over HTTP, with the database checked too.

Covers: areas (staff only, fi/sv/en texts in the viewer's language, open or
restricted to a member group), who may start threads, posts and replies as a
flat list with parent and depth (capped at 3), cursor pagination both ways and
`around` a post, plain text storage with safe HTML rendering, refusals that
leave no rows, editing within the window with history, soft deletion,
reactions, pseudonymous authors and former members, read positions, unread
counts and followed threads, idempotent writes by client key (also when
retried concurrently), per-member write limits, the rules gate, reply
notifications, and query counts that do not grow with the page (no N+1).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from strawberry.relay import GlobalID

from config import override_settings
from models.community import GroupMembership, MemberGroup, Notification
from models.discussions import (
    Area,
    EventKind,
    Post,
    PostEdit,
    PostStatus,
    Reaction,
    ReadPosition,
    Thread,
    ThreadEvent,
)
from resolvers import clock
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    ACCEPT_RULES,
    NOTIFICATIONS,
    RESIGN,
    Account,
    assert_no_permission,
    member,
    publish_rules,
    staff,
    unique,
)

# ---------------------------------------------------------------- documents

POST_FIELDS = """
fragment PostFields on Post {
  id threadId parentId depth body bodyHtml removed createdAt editedAt isMine
  author { id displayName isFormerMember staffBadge }
  reactions { kind count reactedByMe }
}
"""

AREA_FIELDS = """
fragment AreaFields on Area {
  id title description titleFi titleSv titleEn descriptionFi descriptionSv descriptionEn
  restricted membersCanStartThreads
}
"""

CREATE_AREA = (
    """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) {
    __typename
    ... on CreateAreaSuccess { area { ...AreaFields } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""
    + AREA_FIELDS
)

START_THREAD = (
    """
mutation StartThread($input: StartThreadInput!) {
  startThread(input: $input) {
    __typename
    ... on StartThreadSuccess {
      thread { id title areaId postCount lastPosition readPosition unreadCount
               startedBy { displayName staffBadge } }
      post { ...PostFields }
    }
    ... on Error { code message }
    ... on InputError { field }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""
    + POST_FIELDS
)

ADD_POST = (
    """
mutation AddPost($input: AddPostInput!) {
  addPost(input: $input) {
    __typename
    ... on PostSuccess { post { ...PostFields } }
    ... on Error { code message }
    ... on InputError { field }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""
    + POST_FIELDS
)

EDIT_POST = (
    """
mutation EditPost($input: EditPostInput!) {
  editPost(input: $input) {
    __typename
    ... on PostSuccess { post { ...PostFields } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""
    + POST_FIELDS
)

DELETE_POST = (
    """
mutation DeletePost($id: ID!) {
  deletePost(postId: $id) {
    __typename
    ... on PostSuccess { post { ...PostFields } }
    ... on Error { code message }
  }
}
"""
    + POST_FIELDS
)

REACT = (
    """
mutation React($input: ReactInput!) {
  react(input: $input) {
    __typename
    ... on PostSuccess { post { ...PostFields } }
    ... on Error { code message }
  }
}
"""
    + POST_FIELDS
)

MARK_THREAD_READ = """
mutation MarkThreadRead($threadId: ID!, $position: Int) {
  markThreadRead(threadId: $threadId, position: $position) {
    __typename
    ... on MarkThreadReadSuccess {
      readPosition
      thread { id lastPosition readPosition unreadCount }
    }
    ... on Error { code message }
  }
}
"""

THREAD_PAGE = (
    """
query ThreadPage($id: ID!, $first: Int! = 20, $after: String, $order: PostOrder! = NEWEST_FIRST,
                 $around: ID) {
  node(id: $id) {
    __typename
    ... on Thread {
      id title postCount lastPosition unreadCount readPosition
      startedBy { displayName staffBadge }
      posts(first: $first, after: $after, order: $order, around: $around) {
        edges { cursor node { ...PostFields } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
    + POST_FIELDS
)

THREAD_STATE = """
query ThreadState($id: ID!) {
  node(id: $id) { ... on Thread { id lastPosition readPosition unreadCount postCount } }
}
"""

AREAS = (
    """
{ areas { ...AreaFields } }
"""
    + AREA_FIELDS
)

AREA_THREADS = """
{
  areas {
    id
    threads(first: 20) {
      edges { node { id title unreadCount readPosition startedBy { displayName } } }
    }
  }
}
"""

UNREAD_THREADS = """
{ unreadThreads { unreadCount thread { id title areaId } } }
"""

DISCUSSION_NODE = (
    """
query DiscussionNode($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Area { title }
    ... on Thread { title }
    ... on Post { ...PostFields }
  }
}
"""
    + POST_FIELDS
)

MEMBER_TYPE_FIELDS = """
{ __type(name: "Member") { fields { name } } }
"""

# ---------------------------------------------------------------- helpers


def gid(type_name: str, row_id: int) -> str:
    return str(GlobalID(type_name, str(row_id)))


def db_id(global_id: str) -> int:
    return int(GlobalID.from_id(global_id).node_id)


def ckey() -> str:
    """A fresh valid client key."""
    return f"k-{uuid.uuid4().hex[:16]}"


def result_of(body: dict[str, Any], field: str, typename: str) -> dict[str, Any]:
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][field]
    assert result["__typename"] == typename, body
    return result


def refused(body: dict[str, Any], field: str, typename: str, code: str) -> dict[str, Any]:
    result = result_of(body, field, typename)
    assert result["code"] == code, body
    assert result["message"], body
    return result


def failed(result: dict[str, Any], typename: str, code: str) -> None:
    """A mutation's result object is the expected error."""
    assert result["__typename"] == typename, result
    assert result["code"] == code and result["message"], result


def succeeded(result: dict[str, Any]) -> dict[str, Any]:
    """A PostSuccess result object; returns the post."""
    assert result["__typename"] == "PostSuccess", result
    post: dict[str, Any] = result["post"]
    return post


def bad_input(body: dict[str, Any]) -> None:
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def row_counts() -> dict[str, int]:
    """Rows in every discussion table (and notifications), to prove nothing partial is left."""
    return {
        "area": await Area.all().count(),
        "thread": await Thread.all().count(),
        "post": await Post.all().count(),
        "thread_event": await ThreadEvent.all().count(),
        "reaction": await Reaction.all().count(),
        "post_edit": await PostEdit.all().count(),
        "read_position": await ReadPosition.all().count(),
        "notification": await Notification.all().count(),
    }


async def create_area(
    server: Server,
    actor: Account,
    *,
    members_start: bool = True,
    group_id: str | None = None,
    title: str = "Yleinen",
) -> str:
    data: dict[str, Any] = {
        "titleFi": title,
        "titleSv": f"{title} sv",
        "titleEn": f"{title} en",
        "membersCanStartThreads": members_start,
    }
    if group_id is not None:
        data["groupId"] = group_id
    body = await server.gql(CREATE_AREA, {"input": data}, token=actor.token)
    area_id: str = result_of(body, "createArea", "CreateAreaSuccess")["area"]["id"]
    return area_id


async def start_thread(
    server: Server, actor: Account, area_id: str, title: str = "Ketju", body: str = "Aloitus"
) -> tuple[str, str]:
    """Start a thread; returns (thread id, first post id)."""
    answer = await server.gql(
        START_THREAD,
        {"input": {"areaId": area_id, "title": title, "body": body, "clientKey": ckey()}},
        token=actor.token,
    )
    result = result_of(answer, "startThread", "StartThreadSuccess")
    return result["thread"]["id"], result["post"]["id"]


async def add_post(
    server: Server,
    actor: Account,
    thread_id: str,
    body: str = "Viesti",
    parent_id: str | None = None,
    client_key: str | None = None,
) -> dict[str, Any]:
    """Call addPost; returns the mutation's result object."""
    data: dict[str, Any] = {
        "threadId": thread_id,
        "body": body,
        "clientKey": client_key or ckey(),
    }
    if parent_id is not None:
        data["parentId"] = parent_id
    answer = await server.gql(ADD_POST, {"input": data}, token=actor.token)
    assert "errors" not in answer, answer
    result: dict[str, Any] = answer["data"]["addPost"]
    return result


async def posted(
    server: Server,
    actor: Account,
    thread_id: str,
    body: str = "Viesti",
    parent_id: str | None = None,
) -> dict[str, Any]:
    """Add a post (asserts success); returns the Post."""
    result = await add_post(server, actor, thread_id, body, parent_id)
    assert result["__typename"] == "PostSuccess", result
    post: dict[str, Any] = result["post"]
    return post


async def react(
    server: Server, actor: Account, post_id: str, kind: str, on: bool = True
) -> dict[str, Any]:
    body = await server.gql(
        REACT, {"input": {"postId": post_id, "kind": kind, "on": on}}, token=actor.token
    )
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["react"]
    return result


async def thread_page(server: Server, actor: Account, thread_id: str, **variables: Any) -> Any:
    body = await server.gql(THREAD_PAGE, {"id": thread_id, **variables}, token=actor.token)
    assert "errors" not in body, body
    return body["data"]["node"]


async def node_of(server: Server, actor: Account, node_id: str) -> Any:
    body = await server.gql(DISCUSSION_NODE, {"id": node_id}, token=actor.token)
    assert "errors" not in body, body
    return body["data"]["node"]


async def thread_state(server: Server, actor: Account, thread_id: str) -> dict[str, Any]:
    body = await server.gql(THREAD_STATE, {"id": thread_id}, token=actor.token)
    assert "errors" not in body, body
    state: dict[str, Any] = body["data"]["node"]
    return state


async def mark_read(
    server: Server, actor: Account, thread_id: str, position: int | None = None
) -> dict[str, Any]:
    variables: dict[str, Any] = {"threadId": thread_id}
    if position is not None:
        variables["position"] = position
    body = await server.gql(MARK_THREAD_READ, variables, token=actor.token)
    return result_of(body, "markThreadRead", "MarkThreadReadSuccess")


async def unread_threads(server: Server, actor: Account) -> dict[str, int]:
    body = await server.gql(UNREAD_THREADS, token=actor.token)
    assert "errors" not in body, body
    return {u["thread"]["id"]: u["unreadCount"] for u in body["data"]["unreadThreads"]}


def edge_ids(page: Any) -> list[str]:
    return [edge["node"]["id"] for edge in page["posts"]["edges"]]


class _StatementLog(logging.Handler):
    """Collects SQL statements logged by Tortoise's database clients."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Created connection", "Closed connection")):
            return
        if "outbox_message" in message:
            return  # the mail worker polls in the background, not part of any request
        self.statements.append(message)


@contextmanager
def statement_log() -> Iterator[_StatementLog]:
    logger = logging.getLogger("tortoise.db_client")
    handler = _StatementLog()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def statements_for(
    server: Server, document: str, variables: dict[str, Any], token: str
) -> list[str]:
    """The SQL statements one HTTP request executes (after a warm-up request)."""
    warm = await server.gql(document, variables, token=token)
    assert "errors" not in warm, warm
    with statement_log() as log:
        body = await server.gql(document, variables, token=token)
    assert "errors" not in body, body
    return log.statements


# ---------------------------------------------------------------- areas


async def test_only_staff_create_areas_with_texts_in_three_languages(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    full_input = {
        "titleFi": "Yleinen",
        "titleSv": "Allmänt",
        "titleEn": "General",
        "descriptionFi": "Kaikesta",
        "descriptionSv": "Om allt",
        "descriptionEn": "About everything",
    }
    refused_body = await server.gql(CREATE_AREA, {"input": full_input}, token=anna.token)
    assert_no_permission(refused_body, "FORBIDDEN")
    assert await Area.all().count() == 0

    body = await server.gql(CREATE_AREA, {"input": full_input}, token=admin.token)
    area = result_of(body, "createArea", "CreateAreaSuccess")["area"]
    assert area["restricted"] is False
    assert area["membersCanStartThreads"] is False  # staff start threads unless allowed
    assert (area["titleFi"], area["titleSv"], area["titleEn"]) == ("Yleinen", "Allmänt", "General")
    row = await Area.get(id=db_id(area["id"]))
    assert (row.title_fi, row.title_sv, row.title_en) == ("Yleinen", "Allmänt", "General")
    assert (row.description_fi, row.description_sv, row.description_en) == (
        "Kaikesta",
        "Om allt",
        "About everything",
    )
    assert row.group_id is None  # type: ignore[attr-defined]
    assert row.created_by_id == admin.member_id

    moderator = await staff(server, "moderator")
    body = await server.gql(
        CREATE_AREA,
        {"input": {"titleFi": "Toinen", "titleSv": "Andra", "titleEn": "Second"}},
        token=moderator.token,
    )
    result_of(body, "createArea", "CreateAreaSuccess")

    sven = await member(server, language="SV")
    emma = await member(server, language="EN")
    for viewer, title, description, second in (
        (anna, "Yleinen", "Kaikesta", "Toinen"),
        (sven, "Allmänt", "Om allt", "Andra"),
        (emma, "General", "About everything", "Second"),
    ):
        listed = await server.gql(AREAS, token=viewer.token)
        assert "errors" not in listed, listed
        areas = listed["data"]["areas"]
        assert [(a["title"], a["description"]) for a in areas] == [
            (title, description),
            (second, ""),
        ]
        assert areas[0]["id"] == area["id"]

    empty = await server.gql(
        CREATE_AREA,
        {"input": {"titleFi": "  ", "titleSv": "Tomt", "titleEn": "Empty"}},
        token=admin.token,
    )
    refused(empty, "createArea", "InputError", "TEXT_EMPTY")
    assert await Area.all().count() == 2


async def test_restricted_area_is_seen_only_by_its_group_and_staff(server: Server) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    insider = await member(server)
    outsider = await member(server)
    group = await MemberGroup.create(name=unique("ryhmä"))
    await GroupMembership.create(group=group, member_id=insider.member_id)
    group_gid = gid("MemberGroup", group.id)

    open_area = await create_area(server, admin, title="Avoin")
    body = await server.gql(
        CREATE_AREA,
        {
            "input": {
                "titleFi": "Suljettu",
                "titleSv": "Stängd",
                "titleEn": "Closed",
                "groupId": group_gid,
                "membersCanStartThreads": True,
            }
        },
        token=admin.token,
    )
    area = result_of(body, "createArea", "CreateAreaSuccess")["area"]
    assert area["restricted"] is True
    closed_area = area["id"]
    assert (await Area.get(id=db_id(closed_area))).group_id == group.id  # type: ignore[attr-defined]

    thread_id, first_post = await start_thread(server, insider, closed_area, "Sisäpiiri")
    reply = await posted(server, admin, thread_id, "Henkilökunta näkee", first_post)

    for viewer in (insider, moderator, admin):
        listed = await server.gql(AREAS, token=viewer.token)
        assert [a["id"] for a in listed["data"]["areas"]] == [open_area, closed_area], listed
        assert (await node_of(server, viewer, closed_area))["__typename"] == "Area"
        assert (await node_of(server, viewer, thread_id))["title"] == "Sisäpiiri"
        assert (await node_of(server, viewer, reply["id"]))["body"] == "Henkilökunta näkee"

    listed = await server.gql(AREAS, token=outsider.token)
    assert [a["id"] for a in listed["data"]["areas"]] == [open_area], listed
    for hidden in (closed_area, thread_id, first_post, reply["id"]):
        assert await node_of(server, outsider, hidden) is None, hidden

    before = await row_counts()
    refused(
        await server.gql(
            ADD_POST,
            {"input": {"threadId": thread_id, "body": "Hei", "clientKey": ckey()}},
            token=outsider.token,
        ),
        "addPost",
        "NotAllowedError",
        "NOT_FOUND",
    )
    refused(
        await server.gql(
            ADD_POST,
            {
                "input": {
                    "threadId": thread_id,
                    "body": "Hei",
                    "clientKey": ckey(),
                    "parentId": first_post,
                }
            },
            token=outsider.token,
        ),
        "addPost",
        "NotAllowedError",
        "NOT_FOUND",
    )
    refused(
        await server.gql(
            START_THREAD,
            {"input": {"areaId": closed_area, "title": "Minä", "body": "Hei", "clientKey": ckey()}},
            token=outsider.token,
        ),
        "startThread",
        "NotAllowedError",
        "NOT_FOUND",
    )
    failed(await react(server, outsider, first_post, "LIKE"), "NotAllowedError", "NOT_FOUND")
    refused(
        await server.gql(MARK_THREAD_READ, {"threadId": thread_id}, token=outsider.token),
        "markThreadRead",
        "NotAllowedError",
        "NOT_FOUND",
    )
    # A restricted area answers exactly as a missing one does.
    missing = await server.gql(
        ADD_POST,
        {"input": {"threadId": gid("Thread", 999_999), "body": "Hei", "clientKey": ckey()}},
        token=outsider.token,
    )
    hidden = await server.gql(
        ADD_POST,
        {"input": {"threadId": thread_id, "body": "Hei", "clientKey": ckey()}},
        token=outsider.token,
    )
    assert missing["data"]["addPost"] == hidden["data"]["addPost"], (missing, hidden)
    assert await row_counts() == before
    assert await unread_threads(server, outsider) == {}

    # Leaving the group hides the area again, also from the followed threads.
    await posted(server, admin, thread_id, "Uutta sisäpiirille")
    assert await unread_threads(server, insider) == {thread_id: 2}
    await GroupMembership.filter(group_id=group.id, member_id=insider.member_id).delete()
    assert await unread_threads(server, insider) == {}
    assert await node_of(server, insider, thread_id) is None
    listed = await server.gql(AREAS, token=insider.token)
    assert [a["id"] for a in listed["data"]["areas"]] == [open_area], listed

    # An unknown group is refused and creates nothing.
    unknown = await server.gql(
        CREATE_AREA,
        {
            "input": {
                "titleFi": "X",
                "titleSv": "X",
                "titleEn": "X",
                "groupId": gid("MemberGroup", group.id + 100),
            }
        },
        token=admin.token,
    )
    assert unknown["data"]["createArea"]["code"] == "NOT_FOUND", unknown
    assert await Area.all().count() == 2


async def test_members_start_threads_only_where_allowed(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    staff_only = await create_area(server, admin, members_start=False)
    open_area = await create_area(server, admin, members_start=True)

    before = await row_counts()
    body = await server.gql(
        START_THREAD,
        {"input": {"areaId": staff_only, "title": "Oma", "body": "Hei", "clientKey": ckey()}},
        token=anna.token,
    )
    refused(body, "startThread", "NotAllowedError", "STAFF_STARTS_THREADS")
    assert await row_counts() == before

    body = await server.gql(
        START_THREAD,
        {"input": {"areaId": staff_only, "title": "Tiedote", "body": "Hei", "clientKey": ckey()}},
        token=admin.token,
    )
    started = result_of(body, "startThread", "StartThreadSuccess")
    assert started["thread"]["startedBy"]["staffBadge"] == "ADMIN"

    body = await server.gql(
        START_THREAD,
        {
            "input": {
                "areaId": open_area,
                "title": " Oma ketju ",
                "body": "Hei",
                "clientKey": ckey(),
            }
        },
        token=anna.token,
    )
    started = result_of(body, "startThread", "StartThreadSuccess")
    thread, first = started["thread"], started["post"]
    assert thread["title"] == "Oma ketju"
    assert thread["areaId"] == open_area
    assert (thread["postCount"], thread["lastPosition"], thread["readPosition"]) == (1, 1, 1)
    assert thread["startedBy"] == {"displayName": anna.display_name, "staffBadge": None}
    assert (first["depth"], first["parentId"], first["isMine"]) == (0, None, True)
    row = await Thread.get(id=db_id(thread["id"]))
    assert row.started_by_id == anna.member_id  # type: ignore[attr-defined]
    assert row.area_id == db_id(open_area)  # type: ignore[attr-defined]
    assert (row.post_count, row.last_position) == (1, 1)
    events = await ThreadEvent.filter(thread_id=row.id).values_list("position", "kind", "post_id")
    assert events == [(1, EventKind.POST_ADDED, db_id(first["id"]))]


# ---------------------------------------------------------------- posts and replies


async def test_replies_nest_three_deep_in_a_flat_list(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    thread_id, root = await start_thread(server, anna, area)

    chain = [root]
    for depth, author in ((1, bob), (2, anna), (3, bob)):
        reply = await posted(server, author, thread_id, f"Syvyys {depth}", chain[-1])
        assert (reply["depth"], reply["parentId"]) == (depth, chain[-1])
        chain.append(reply["id"])
    sibling = await posted(server, anna, thread_id, "Toinen vastaus", root)
    assert sibling["depth"] == 1

    before = await row_counts()
    too_deep = await add_post(server, anna, thread_id, "Liian syvä", chain[-1])
    assert too_deep["__typename"] == "InputError", too_deep
    assert (too_deep["code"], too_deep["field"]) == ("REPLY_TOO_DEEP", "parentId")
    missing_parent = await add_post(server, anna, thread_id, "Ei ole", gid("Post", 999_999))
    assert missing_parent["code"] == "NOT_FOUND", missing_parent
    _, other_root = await start_thread(server, bob, area, "Muu ketju")
    before = await row_counts()
    elsewhere = await add_post(server, anna, thread_id, "Väärä ketju", other_root)
    assert elsewhere["code"] == "NOT_FOUND", elsewhere  # a parent must be in the same thread
    assert await row_counts() == before

    rows = {p.id: p for p in await Post.filter(thread_id=db_id(thread_id))}
    assert [rows[db_id(i)].depth for i in chain] == [0, 1, 2, 3]
    parents = [rows[db_id(i)].parent_id for i in chain]  # type: ignore[attr-defined]
    assert parents == [
        None,
        *[db_id(i) for i in chain[:-1]],
    ]

    page = await thread_page(server, bob, thread_id, order="OLDEST_FIRST")
    flat = [
        (e["node"]["id"], e["node"]["parentId"], e["node"]["depth"]) for e in page["posts"]["edges"]
    ]
    assert flat == [
        (root, None, 0),
        (chain[1], root, 1),
        (chain[2], chain[1], 2),
        (chain[3], chain[2], 3),
        (sibling["id"], root, 1),
    ]
    assert page["postCount"] == 5


async def test_posts_paginate_both_ways_and_around_a_post(server: Server) -> None:
    override_settings(replace(server.settings, posts_per_minute=1000, posts_per_hour=1000))
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area, body="Viesti 0")
    ids = [first_post]
    for n in range(1, 23):
        ids.append((await posted(server, anna, thread_id, f"Viesti {n}"))["id"])

    for order, expected in (("NEWEST_FIRST", ids[::-1]), ("OLDEST_FIRST", ids)):
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            page = await thread_page(server, anna, thread_id, first=5, after=after, order=order)
            pages += 1
            edges = page["posts"]["edges"]
            assert 1 <= len(edges) <= 5
            seen += [e["node"]["id"] for e in edges]
            info = page["posts"]["pageInfo"]
            assert info["endCursor"] == edges[-1]["cursor"]
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        assert seen == expected, order
        assert len(set(seen)) == len(ids)
        assert pages == 5  # 23 posts, 5 a page

    page = await thread_page(server, anna, thread_id, first=5, around=ids[12])
    assert edge_ids(page) == ids[10:15]
    assert page["posts"]["pageInfo"]["hasNextPage"] is True
    page = await thread_page(server, anna, thread_id, first=5, around=ids[0])
    assert edge_ids(page) == ids[0:5]
    page = await thread_page(server, anna, thread_id, first=5, around=ids[-1])
    assert edge_ids(page)[-1] == ids[-1]
    assert ids[-1] in edge_ids(page) and edge_ids(page) == ids[-len(edge_ids(page)) :]
    assert page["posts"]["pageInfo"]["hasNextPage"] is False

    for first in (101, 0):
        body = await server.gql(THREAD_PAGE, {"id": thread_id, "first": first}, token=anna.token)
        bad_input(body)
    body = await server.gql(
        THREAD_PAGE, {"id": thread_id, "first": 101, "around": ids[3]}, token=anna.token
    )
    bad_input(body)
    body = await server.gql(THREAD_PAGE, {"id": thread_id, "first": 100}, token=anna.token)
    assert len(body["data"]["node"]["posts"]["edges"]) == len(ids)


# ---------------------------------------------------------------- text


TYPED = (
    # NUL and bidi overrides are refused before execution (INVALID_TEXT, test_abuse);
    # zero-width spaces and stray whitespace are cleaned.
    "  Hei <script>alert(1)</script> **lihava** _kursiivi_ "
    "https://example.com/a?b=1&c=2 \u200b\r\n"
    'rivi2 javascript:alert(1) <img src=x onerror="alert(1)"> Cafe\u0301\u200b  '
)
CLEANED = (
    "Hei <script>alert(1)</script> **lihava** _kursiivi_ https://example.com/a?b=1&c=2\n"
    'rivi2 javascript:alert(1) <img src=x onerror="alert(1)"> Café'
)
RENDERED = re.compile(
    re.escape(
        "Hei &lt;script&gt;alert(1)&lt;/script&gt; <strong>lihava</strong> <em>kursiivi</em> "
        '<a href="https://example.com/a?b=1&amp;c=2" '
    )
    + r'rel="[^"]*\bnofollow\b[^"]*"'
    + re.escape(
        ">https://example.com/a?b=1&amp;c=2</a><br>"
        "rivi2 javascript:alert(1) &lt;img src=x onerror=&quot;alert(1)&quot;&gt; Café"
    )
)


async def test_text_is_stored_plain_and_rendered_as_safe_html(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, _ = await start_thread(server, anna, area)

    post = await posted(server, anna, thread_id, TYPED)
    assert post["body"] == CLEANED
    assert RENDERED.fullmatch(post["bodyHtml"]), post["bodyHtml"]
    tags = set(re.findall(r"</?([a-zA-Z]+)", post["bodyHtml"]))
    assert tags <= {"strong", "em", "a", "br"}, tags

    row = await Post.get(id=db_id(post["id"]))
    assert row.body == CLEANED
    for value in await dbtools.text_values("community"):
        for generated in ("<strong>", "<em>", "<br>", "<a href", "&lt;", "nofollow"):
            assert generated not in value, value

    # The stored text is served unchanged to everyone, and rendered the same way.
    node = await node_of(server, await member(server), post["id"])
    assert node["body"] == CLEANED and RENDERED.fullmatch(node["bodyHtml"])

    odd = await posted(server, anna, thread_id, "a_b_c **x** ** y ** __ http://x.fi.")
    assert odd["bodyHtml"].startswith('a_b_c <strong>x</strong> ** y ** __ <a href="http://x.fi"')
    assert odd["bodyHtml"].endswith("</a>.")


async def test_refused_texts_leave_no_rows(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area)
    limit = server.settings.post_max_length
    before = await row_counts()

    key = ckey()
    # (NUL and bidi controls never get this far: INVALID_TEXT, see test_abuse.)
    for body in ("", "   \n\t  ", "\u200b\u2060\ufeff"):
        result = await add_post(server, anna, thread_id, body, client_key=key)
        assert result["__typename"] == "InputError", result
        assert (result["code"], result["field"]) == ("TEXT_EMPTY", "body")
        reply = await add_post(server, anna, thread_id, body, first_post, client_key=key)
        assert reply["code"] == "TEXT_EMPTY", reply
    too_long = await add_post(server, anna, thread_id, "x" * (limit + 1), client_key=key)
    assert too_long["__typename"] == "InputError", too_long
    assert too_long["code"] == "TEXT_TOO_LONG", too_long

    for title, body, code in (
        ("Otsikko", "  ", "TEXT_EMPTY"),
        ("  ", "Teksti", "TEXT_EMPTY"),
        ("Otsikko", "x" * (limit + 1), "TEXT_TOO_LONG"),
        ("x" * 201, "Teksti", "TEXT_TOO_LONG"),
    ):
        answer = await server.gql(
            START_THREAD,
            {"input": {"areaId": area, "title": title, "body": body, "clientKey": key}},
            token=anna.token,
        )
        refused(answer, "startThread", "InputError", code)
    assert await row_counts() == before

    # Nothing was kept under the key, so it still works; exactly the maximum is accepted.
    accepted = await add_post(server, anna, thread_id, "y" * limit, client_key=key)
    assert accepted["__typename"] == "PostSuccess", accepted
    assert len((await Post.get(id=db_id(accepted["post"]["id"]))).body) == limit
    after = await row_counts()
    assert (after["post"], after["thread_event"]) == (
        before["post"] + 1,
        before["thread_event"] + 1,
    )


# ---------------------------------------------------------------- edit and delete


async def test_author_edits_within_the_window_and_history_is_kept(server: Server) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area, body="Alkuperäinen")
    assert (await node_of(server, anna, first_post))["editedAt"] is None

    body = await server.gql(
        EDIT_POST, {"input": {"postId": first_post, "body": "Korjattu **nyt**"}}, token=anna.token
    )
    edited = result_of(body, "editPost", "PostSuccess")["post"]
    assert edited["body"] == "Korjattu **nyt**"
    assert edited["bodyHtml"] == "Korjattu <strong>nyt</strong>"
    assert edited["editedAt"] is not None
    body = await server.gql(
        EDIT_POST, {"input": {"postId": first_post, "body": "Kolmas versio"}}, token=anna.token
    )
    result_of(body, "editPost", "PostSuccess")

    row = await Post.get(id=db_id(first_post))
    assert row.body == "Kolmas versio" and row.edited_at is not None
    history: list[Any] = (
        await PostEdit.filter(post_id=row.id).order_by("id").values_list("old_body", flat=True)
    )
    assert list(history) == ["Alkuperäinen", "Korjattu **nyt**"]
    kinds: list[Any] = (
        await ThreadEvent.filter(thread_id=db_id(thread_id))
        .order_by("position")
        .values_list("kind", flat=True)
    )
    assert list(kinds) == [EventKind.POST_ADDED, EventKind.POST_EDITED, EventKind.POST_EDITED]

    before = await row_counts()
    for other in (bob, moderator):
        body = await server.gql(
            EDIT_POST, {"input": {"postId": first_post, "body": "Ei sinun"}}, token=other.token
        )
        refused(body, "editPost", "NotAllowedError", "NOT_AUTHOR")
    body = await server.gql(
        EDIT_POST, {"input": {"postId": first_post, "body": " \n "}}, token=anna.token
    )
    refused(body, "editPost", "InputError", "TEXT_EMPTY")

    clock.move(timedelta(minutes=server.settings.edit_window_minutes, seconds=5))
    body = await server.gql(
        EDIT_POST, {"input": {"postId": first_post, "body": "Liian myöhään"}}, token=anna.token
    )
    refused(body, "editPost", "NotAllowedError", "EDIT_WINDOW_CLOSED")
    assert await row_counts() == before
    assert (await Post.get(id=row.id)).body == "Kolmas versio"


async def test_author_deletes_softly_and_only_moderators_still_see_the_text(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, bob, area)
    post = await posted(server, anna, thread_id, "Poistettava", first_post)
    await react(server, bob, post["id"], "LIKE")

    body = await server.gql(DELETE_POST, {"id": post["id"]}, token=bob.token)
    refused(body, "deletePost", "NotAllowedError", "NOT_AUTHOR")

    body = await server.gql(DELETE_POST, {"id": post["id"]}, token=anna.token)
    deleted = result_of(body, "deletePost", "PostSuccess")["post"]
    assert deleted["removed"] is True
    assert deleted["body"] is None and deleted["bodyHtml"] is None

    row = await Post.get(id=db_id(post["id"]))
    assert row.status == PostStatus.REMOVED and row.removed_at is not None
    raw = await dbtools.all_rows("community")
    assert [r["status"] for r in raw["post"] if r["id"] == row.id] == ["removed"]
    events = await ThreadEvent.filter(post_id=row.id, kind=EventKind.POST_REMOVED).count()
    assert events == 1

    for viewer in (anna, bob):
        node = await node_of(server, viewer, post["id"])
        assert node["removed"] is True
        assert node["body"] is None and node["bodyHtml"] is None, viewer
        page = await thread_page(server, viewer, thread_id, order="OLDEST_FIRST")
        listed = page["posts"]["edges"][1]["node"]
        assert (listed["id"], listed["removed"], listed["body"], listed["bodyHtml"]) == (
            post["id"],
            True,
            None,
            None,
        )
    seen = await node_of(server, moderator, post["id"])
    assert seen["removed"] is True and seen["body"] == "Poistettava"

    before = await row_counts()
    again = await server.gql(DELETE_POST, {"id": post["id"]}, token=anna.token)
    assert result_of(again, "deletePost", "PostSuccess")["post"]["removed"] is True
    reply = await add_post(server, bob, thread_id, "Vastaus", post["id"])
    assert reply["code"] == "POST_REMOVED", reply
    failed(await react(server, bob, post["id"], "HEART"), "NotAllowedError", "POST_REMOVED")
    body = await server.gql(
        EDIT_POST, {"input": {"postId": post["id"], "body": "Takaisin"}}, token=anna.token
    )
    assert body["data"]["editPost"]["code"] == "POST_REMOVED", body
    assert await row_counts() == before


# ---------------------------------------------------------------- reactions


async def test_reactions_one_of_each_kind_per_member(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    _, first_post = await start_thread(server, anna, area)
    post_row = db_id(first_post)

    first = succeeded(await react(server, anna, first_post, "LIKE"))
    assert first["reactions"] == [{"kind": "LIKE", "count": 1, "reactedByMe": True}]
    succeeded(await react(server, anna, first_post, "LIKE"))
    succeeded(await react(server, anna, first_post, "HEART"))
    succeeded(await react(server, bob, first_post, "LIKE"))
    assert (
        await Reaction.filter(post_id=post_row, member_id=anna.member_id, kind="like").count() == 1
    )
    assert await Reaction.filter(post_id=post_row).count() == 3
    changes = await ThreadEvent.filter(post_id=post_row, kind=EventKind.REACTIONS_CHANGED).count()
    assert changes == 3  # the repeated LIKE changed nothing

    def counts(node: dict[str, Any]) -> dict[str, tuple[int, bool]]:
        return {r["kind"]: (r["count"], r["reactedByMe"]) for r in node["reactions"]}

    assert counts(await node_of(server, anna, first_post)) == {
        "LIKE": (2, True),
        "HEART": (1, True),
    }
    assert counts(await node_of(server, bob, first_post)) == {
        "LIKE": (2, True),
        "HEART": (1, False),
    }
    assert counts(await node_of(server, admin, first_post)) == {
        "LIKE": (2, False),
        "HEART": (1, False),
    }

    taken = succeeded(await react(server, anna, first_post, "LIKE", on=False))
    assert counts(taken) == {"LIKE": (1, False), "HEART": (1, True)}
    assert not await Reaction.exists(post_id=post_row, member_id=anna.member_id, kind="like")
    succeeded(await react(server, anna, first_post, "HEART", on=False))
    succeeded(await react(server, anna, first_post, "HEART", on=False))
    assert counts(await node_of(server, bob, first_post)) == {"LIKE": (1, True)}
    assert await Reaction.filter(post_id=post_row).values_list("member_id", "kind") == [
        (bob.member_id, "like")
    ]

    body = await server.gql(
        REACT, {"input": {"postId": first_post, "kind": "ANGRY"}}, token=bob.token
    )
    assert body.get("errors"), body
    assert await Reaction.filter(post_id=post_row).count() == 1


# ---------------------------------------------------------------- authors


async def test_authors_show_as_pseudonyms_and_stay_after_resigning(server: Server) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server, displayName="Kirjoittaja Anna")
    bob = await member(server)
    emma = await member(server, language="EN")
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area)
    staff_post = await posted(server, moderator, thread_id, "Moderaattori täällä", first_post)

    fields = await server.gql(MEMBER_TYPE_FIELDS)
    assert {f["name"] for f in fields["data"]["__type"]["fields"]} == {
        "id",
        "displayName",
        "isFormerMember",
        "staffBadge",
    }
    page = await thread_page(server, bob, thread_id, order="OLDEST_FIRST")
    authors = [e["node"]["author"] for e in page["posts"]["edges"]]
    assert authors == [
        {
            "id": anna.gid,
            "displayName": "Kirjoittaja Anna",
            "isFormerMember": False,
            "staffBadge": None,
        },
        {
            "id": moderator.gid,
            "displayName": moderator.display_name,
            "isFormerMember": False,
            "staffBadge": "MODERATOR",
        },
    ]
    assert staff_post["author"]["staffBadge"] == "MODERATOR"

    body = await server.gql(RESIGN, {"password": anna.password}, token=anna.token)
    assert result_of(body, "resign", "Done")["ok"] is True
    assert await Post.filter(author_id=anna.member_id).count() == 1
    assert (await Post.get(id=db_id(first_post))).body == "Aloitus"

    for viewer, former in ((bob, "entinen jäsen"), (emma, "former member")):
        page = await thread_page(server, viewer, thread_id, order="OLDEST_FIRST")
        node = page["posts"]["edges"][0]["node"]
        assert node["body"] == "Aloitus"
        assert node["author"] == {
            "id": anna.gid,
            "displayName": former,
            "isFormerMember": True,
            "staffBadge": None,
        }
        assert page["startedBy"]["displayName"] == former
    for value in await dbtools.text_values("community"):
        assert "Kirjoittaja Anna" not in value

    # Replying to a former member's post works; nobody is notified.
    await posted(server, bob, thread_id, "Vastaus entiselle", first_post)
    assert await Notification.filter(kind="REPLY").count() == 0


# ---------------------------------------------------------------- reading


async def test_read_positions_unread_counts_and_followed_threads(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    carol = await member(server)
    area = await create_area(server, admin)
    other_area = await create_area(server, admin, title="Toinen")
    thread_id, first_post = await start_thread(server, anna, area)  # position 1

    assert await thread_state(server, anna, thread_id) == {
        "id": thread_id,
        "lastPosition": 1,
        "readPosition": 1,
        "unreadCount": 0,
        "postCount": 1,
    }
    await posted(server, bob, thread_id, "Bob 1")  # 2
    await posted(server, bob, thread_id, "Bob 2", first_post)  # 3
    await react(server, bob, first_post, "LIKE")  # 4: not a post, never unread
    state = await thread_state(server, anna, thread_id)
    assert (state["lastPosition"], state["readPosition"], state["unreadCount"]) == (4, 1, 2)
    # Never opened: everything by others is unread, yet the thread is not followed.
    carol_state = await thread_state(server, carol, thread_id)
    assert (carol_state["readPosition"], carol_state["unreadCount"]) == (0, 3)
    assert await unread_threads(server, carol) == {}
    assert await unread_threads(server, anna) == {thread_id: 2}

    marked = await mark_read(server, anna, thread_id, 2)
    assert marked["readPosition"] == 2
    assert (marked["thread"]["readPosition"], marked["thread"]["unreadCount"]) == (2, 1)
    back = await mark_read(server, anna, thread_id, 1)
    assert back["readPosition"] == 2  # never moves back
    assert (
        await ReadPosition.get(member_id=anna.member_id, thread_id=db_id(thread_id))
    ).position == 2

    # My own post moves my read position: my posts never count as unread.
    mine = await posted(server, anna, thread_id, "Anna 2")  # 5
    state = await thread_state(server, anna, thread_id)
    assert (state["readPosition"], state["unreadCount"]) == (5, 0)
    assert await unread_threads(server, anna) == {}
    await posted(server, bob, thread_id, "Bob 3", mine["id"])  # 6
    assert (await thread_state(server, anna, thread_id))["unreadCount"] == 1
    # bob wrote last, so nothing is unread for him.
    bob_state = await thread_state(server, bob, thread_id)
    assert (bob_state["readPosition"], bob_state["unreadCount"]) == (6, 0)

    # Carol opens the thread at its start, and writes in a thread of another area.
    assert (await mark_read(server, carol, thread_id, 0))["readPosition"] == 0
    second_thread, _ = await start_thread(server, admin, other_area, "Toinen ketju")
    await posted(server, carol, second_thread, "Carol")
    await posted(server, bob, second_thread, "Bob vastaa")
    await posted(server, admin, second_thread, "Admin vastaa")
    assert await unread_threads(server, carol) == {thread_id: 5, second_thread: 2}
    assert list(await unread_threads(server, carol)) == [second_thread, thread_id]

    to_end = await mark_read(server, carol, thread_id)
    assert to_end["readPosition"] == to_end["thread"]["lastPosition"] == 6
    assert to_end["thread"]["unreadCount"] == 0
    beyond = await mark_read(server, carol, second_thread, 1000)
    assert beyond["readPosition"] == beyond["thread"]["lastPosition"]
    assert await unread_threads(server, carol) == {}
    rows = (
        await ReadPosition.filter(member_id=carol.member_id)
        .order_by("thread_id")
        .values_list("thread_id", "position")
    )
    assert rows == [(db_id(thread_id), 6), (db_id(second_thread), beyond["readPosition"])]


# ---------------------------------------------------------------- idempotency


async def test_client_key_makes_writes_idempotent(server: Server) -> None:
    override_settings(replace(server.settings, posts_per_minute=100))
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)

    key = ckey()
    start_input = {"areaId": area, "title": "Kerran", "body": "Vain kerran", "clientKey": key}
    first = result_of(
        await server.gql(START_THREAD, {"input": start_input}, token=anna.token),
        "startThread",
        "StartThreadSuccess",
    )
    again = result_of(
        await server.gql(START_THREAD, {"input": start_input}, token=anna.token),
        "startThread",
        "StartThreadSuccess",
    )
    assert (again["thread"]["id"], again["post"]["id"]) == (
        first["thread"]["id"],
        first["post"]["id"],
    )
    thread_id = first["thread"]["id"]
    assert await Thread.all().count() == 1 and await Post.all().count() == 1

    key = ckey()
    one = await add_post(server, anna, thread_id, "Kerran", client_key=key)
    two = await add_post(server, anna, thread_id, "Kerran", client_key=key)
    assert one["__typename"] == two["__typename"] == "PostSuccess"
    assert one["post"]["id"] == two["post"]["id"]
    assert await Post.filter(client_key=key).count() == 1

    # Retried concurrently: still one post, one event.
    key = ckey()
    answers = await asyncio.gather(
        *(add_post(server, anna, thread_id, "Samaan aikaan", client_key=key) for _ in range(5))
    )
    assert {a["__typename"] for a in answers} == {"PostSuccess"}, answers
    assert len({a["post"]["id"] for a in answers}) == 1, answers
    rows = await Post.filter(client_key=key)
    assert len(rows) == 1
    assert await ThreadEvent.filter(post_id=rows[0].id).count() == 1

    key = ckey()
    start_input = {"areaId": area, "title": "Rinnakkain", "body": "Kerran", "clientKey": key}
    started = await asyncio.gather(
        *(server.gql(START_THREAD, {"input": start_input}, token=anna.token) for _ in range(5))
    )
    results = [result_of(s, "startThread", "StartThreadSuccess") for s in started]
    assert len({r["thread"]["id"] for r in results}) == 1, results
    assert len({r["post"]["id"] for r in results}) == 1, results
    assert await Thread.filter(title="Rinnakkain").count() == 1
    assert await Post.filter(client_key=key).count() == 1
    thread_row = await Thread.get(title="Rinnakkain")
    assert await ThreadEvent.filter(thread_id=thread_row.id).count() == 1
    assert await Thread.all().count() == 2

    before = await row_counts()
    for bad in ("short", "has spaces 123", "x" * 65, "ääkköset-123", "semi;colon12", "1234567"):
        result = await add_post(server, anna, thread_id, "Hei", client_key=bad)
        assert result["__typename"] == "InputError", result
        assert (result["code"], result["field"]) == ("CLIENT_KEY_INVALID", "clientKey")
        body = await server.gql(
            START_THREAD,
            {"input": {"areaId": area, "title": "T", "body": "B", "clientKey": bad}},
            token=anna.token,
        )
        refused(body, "startThread", "InputError", "CLIENT_KEY_INVALID")
    assert await row_counts() == before


# ---------------------------------------------------------------- write limits


async def test_posts_per_minute_and_hour_are_limited_for_members_not_staff(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, _ = await start_thread(server, admin, area)
    override_settings(replace(server.settings, posts_per_minute=3, posts_per_hour=5))

    for n in range(3):
        await posted(server, anna, thread_id, f"Nopea {n}")
    before = await row_counts()
    limited = await add_post(server, anna, thread_id, "Neljäs")
    assert limited["__typename"] == "RateLimitedError", limited
    assert limited["code"] == "TOO_MANY_POSTS"
    assert 0 < limited["retryAfterSeconds"] <= 60
    body = await server.gql(
        START_THREAD,
        {"input": {"areaId": area, "title": "Uusi", "body": "Hei", "clientKey": ckey()}},
        token=anna.token,
    )
    assert body["data"]["startThread"]["code"] == "TOO_MANY_POSTS", body
    assert await row_counts() == before

    for n in range(6):  # staff are not limited
        await posted(server, admin, thread_id, f"Henkilökunta {n}")

    clock.move(timedelta(seconds=61))
    await posted(server, anna, thread_id, "Taas")
    await posted(server, anna, thread_id, "Viides")
    before = await row_counts()
    hourly = await add_post(server, anna, thread_id, "Kuudes")
    assert hourly["__typename"] == "RateLimitedError", hourly
    assert hourly["code"] == "TOO_MANY_POSTS"
    assert 60 < hourly["retryAfterSeconds"] <= 3600
    clock.move(timedelta(seconds=61))
    assert (await add_post(server, anna, thread_id, "Yhä"))["code"] == "TOO_MANY_POSTS"
    assert await row_counts() == before

    clock.move(timedelta(hours=1))
    await posted(server, anna, thread_id, "Tunnin päästä")
    assert await Post.filter(author_id=anna.member_id).count() == 6


async def test_concurrent_posts_in_one_thread_all_land_with_gapless_positions(
    server: Server,
) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area)
    writers = [anna, bob, admin, moderator]

    answers = await asyncio.gather(
        *(
            add_post(server, writers[n % 4], thread_id, f"Yhtä aikaa {n}", first_post)
            for n in range(8)
        ),
        *(react(server, writers[n], first_post, "LIKE") for n in range(4)),
    )
    assert {a["__typename"] for a in answers} == {"PostSuccess"}, answers
    row = await Thread.get(id=db_id(thread_id))
    positions: list[Any] = (
        await ThreadEvent.filter(thread_id=row.id)
        .order_by("position")
        .values_list("position", flat=True)
    )
    assert list(positions) == list(range(1, 14))
    assert (row.last_position, row.post_count) == (13, 9)
    assert await Post.filter(thread_id=row.id).count() == 9


async def test_post_limit_holds_for_a_concurrent_burst(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, _ = await start_thread(server, admin, area)
    override_settings(replace(server.settings, posts_per_minute=3))

    answers = await asyncio.gather(
        *(add_post(server, anna, thread_id, f"Ryöppy {n}") for n in range(8))
    )
    kinds = sorted(a["__typename"] for a in answers)
    assert kinds == ["PostSuccess"] * 3 + ["RateLimitedError"] * 5, answers
    assert await Post.filter(author_id=anna.member_id).count() == 3


# ---------------------------------------------------------------- rules gate


async def test_members_must_accept_new_rules_before_writing(server: Server) -> None:
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area)
    rules = await publish_rules(server, admin, 2)

    before = await row_counts()
    refused(
        await server.gql(
            ADD_POST,
            {"input": {"threadId": thread_id, "body": "Hei", "clientKey": ckey()}},
            token=anna.token,
        ),
        "addPost",
        "NotAllowedError",
        "RULES_NOT_ACCEPTED",
    )
    refused(
        await server.gql(
            START_THREAD,
            {"input": {"areaId": area, "title": "T", "body": "B", "clientKey": ckey()}},
            token=anna.token,
        ),
        "startThread",
        "NotAllowedError",
        "RULES_NOT_ACCEPTED",
    )
    failed(
        await react(server, anna, first_post, "LIKE"),
        "NotAllowedError",
        "RULES_NOT_ACCEPTED",
    )
    refused(
        await server.gql(
            EDIT_POST, {"input": {"postId": first_post, "body": "Uusi"}}, token=anna.token
        ),
        "editPost",
        "NotAllowedError",
        "RULES_NOT_ACCEPTED",
    )
    assert await row_counts() == before
    assert (await Post.get(id=db_id(first_post))).body == "Aloitus"
    # Reading still works, and staff are not bound by the members' rules.
    assert (await thread_state(server, anna, thread_id))["postCount"] == 1
    await posted(server, moderator, thread_id, "Henkilökunta kirjoittaa")

    accepted = await server.gql(ACCEPT_RULES, {"versionId": rules["id"]}, token=anna.token)
    result_of(accepted, "acceptRules", "AcceptRulesSuccess")
    await posted(server, anna, thread_id, "Hyväksytty")
    succeeded(await react(server, anna, first_post, "LIKE"))


# ---------------------------------------------------------------- notifications


async def test_reply_notifies_the_parent_author_but_not_oneself(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    thread_id, first_post = await start_thread(server, anna, area)

    reply = await posted(server, bob, thread_id, "Vastaan", first_post)
    await posted(server, anna, thread_id, "Itselleni", first_post)
    await posted(server, bob, thread_id, "Itselleni myös", reply["id"])
    await posted(server, bob, thread_id, "Ei vastaus")

    rows = await Notification.filter(kind="REPLY").values_list("member_id", "params")
    assert rows == [(anna.member_id, {"postId": db_id(reply["id"]), "threadId": db_id(thread_id)})]
    body = await server.gql(NOTIFICATIONS, {"first": 20}, token=anna.token)
    replies = [
        e["node"] for e in body["data"]["notifications"]["edges"] if e["node"]["kind"] == "REPLY"
    ]
    assert [(n["subjectId"], n["read"]) for n in replies] == [(reply["id"], False)]
    body = await server.gql(NOTIFICATIONS, {"first": 20}, token=bob.token)
    assert [e for e in body["data"]["notifications"]["edges"] if e["node"]["kind"] == "REPLY"] == []
    subject = await node_of(server, anna, reply["id"])
    assert subject["__typename"] == "Post" and subject["body"] == "Vastaan"


# ---------------------------------------------------------------- query counts


async def test_thread_page_query_count_does_not_grow_with_posts(server: Server) -> None:
    override_settings(replace(server.settings, posts_per_minute=1000, posts_per_hour=1000))
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    anna = await member(server)
    bob = await member(server)
    carol = await member(server)
    writers = [anna, bob, carol, moderator]
    area = await create_area(server, admin)

    async def build(size: int) -> str:
        thread_id, first_post = await start_thread(server, anna, area)
        ids = [first_post]
        for n in range(1, size):
            parent = ids[n - 1] if n % 3 == 1 else None
            ids.append((await posted(server, writers[n % 4], thread_id, f"P{n}", parent))["id"])
        for n, post_id in enumerate(ids):
            await react(server, writers[(n + 1) % 4], post_id, "LIKE")
            if n % 2 == 0:
                await react(server, writers[(n + 2) % 4], post_id, "HEART")
        return thread_id

    small = await build(3)
    large = await build(20)
    variables = {"first": 20, "order": "OLDEST_FIRST"}
    small_page = await thread_page(server, bob, small, **variables)
    large_page = await thread_page(server, bob, large, **variables)
    assert len(large_page["posts"]["edges"]) == 20 and len(small_page["posts"]["edges"]) == 3
    assert {e["node"]["author"]["displayName"] for e in large_page["posts"]["edges"]} == {
        w.display_name for w in writers
    }
    assert all(e["node"]["reactions"] for e in large_page["posts"]["edges"])

    few = await statements_for(server, THREAD_PAGE, {"id": small, **variables}, bob.token)
    many = await statements_for(server, THREAD_PAGE, {"id": large, **variables}, bob.token)
    assert len(few) > 0
    assert len(many) == len(few), "\n".join(["3 posts:", *few, "20 posts:", *many])


async def test_area_thread_list_query_count_does_not_grow_with_threads(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server)
    bob = await member(server)
    area = await create_area(server, admin)
    await create_area(server, admin, title="Toinen")

    async def add_threads(count: int) -> None:
        for n in range(count):
            starter = (anna, bob, admin)[n % 3]
            thread_id, first_post = await start_thread(server, starter, area, f"Ketju {n}")
            await posted(server, admin, thread_id, "Vastaus", first_post)

    await add_threads(2)
    few = await statements_for(server, AREA_THREADS, {}, bob.token)
    await add_threads(10)
    body = await server.gql(AREA_THREADS, token=bob.token)
    nodes = [e["node"] for e in body["data"]["areas"][0]["threads"]["edges"]]
    assert len(nodes) == 12
    assert {n["startedBy"]["displayName"] for n in nodes} == {
        anna.display_name,
        bob.display_name,
        admin.display_name,
    }
    assert any(n["readPosition"] > 0 for n in nodes) and any(n["unreadCount"] > 0 for n in nodes)
    many = await statements_for(server, AREA_THREADS, {}, bob.token)
    assert len(many) == len(few), "\n".join(["2 threads:", *few, "12 threads:", *many])


async def test_reactions_are_limited_per_member_a_minute_not_for_staff(server: Server) -> None:
    """Each reaction change is a live event for every subscriber of the thread."""
    limit = server.settings.reactions_per_minute
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    anna = await member(server)
    area = await create_area(server, admin, members_start=True)
    thread_gid, post = await start_thread(server, anna, area)
    thread_row = db_id(thread_gid)
    events_before = await ThreadEvent.filter(thread_id=thread_row).count()
    kinds = ["LIKE", "HEART", "HELPFUL", "LAUGH", "SAD"]
    for n in range(limit):
        done = await react(server, anna, post, kinds[n % 5], on=(n // 5) % 2 == 0)
        assert done["__typename"] == "PostSuccess", (n, done)
    refused = await server.gql(
        """mutation React($input: ReactInput!) {
          react(input: $input) {
            __typename ... on Error { code message } ... on RateLimitedError { retryAfterSeconds }
          }
        }""",
        {"input": {"postId": post, "kind": "LIKE", "on": True}},
        token=anna.token,
    )
    result = refused["data"]["react"]
    assert (result["__typename"], result["code"]) == ("RateLimitedError", "TOO_MANY_REACTIONS")
    assert 0 < result["retryAfterSeconds"] <= 60
    # Every allowed change was one event; the refused one wrote nothing.
    assert await ThreadEvent.filter(thread_id=thread_row).count() == events_before + limit
    # Staff are not limited.
    for n in range(limit + 2):
        done = await react(server, mod, post, "LIKE", on=n % 2 == 0)
        assert done["__typename"] == "PostSuccess", (n, done)
    # A minute later the member may react again.
    clock.move(timedelta(seconds=61))
    again = await react(server, anna, post, "SAD", on=True)
    assert again["__typename"] == "PostSuccess", again
