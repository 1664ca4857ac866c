"""Smoke test of discussions through the API (areas, threads, posts, events)."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from models.discussions import Post, ThreadEvent
from tests.conftest import Server
from tests.helpers import member, staff

CREATE_AREA = """
mutation($input: CreateAreaInput!) { createArea(input: $input) {
  __typename ... on CreateAreaSuccess { area { id title restricted } }
  ... on Error { code message } } }
"""
START_THREAD = """
mutation($input: StartThreadInput!) { startThread(input: $input) {
  __typename ... on StartThreadSuccess { thread { id title lastPosition } post { id body depth } }
  ... on Error { code message } } }
"""
ADD_POST = """
mutation($input: AddPostInput!) { addPost(input: $input) {
  __typename ... on PostSuccess { post { id body bodyHtml depth parentId author { displayName } } }
  ... on Error { code message } ... on RateLimitedError { retryAfterSeconds } } }
"""
THREAD_PAGE = """
query($id: ID!, $order: PostOrder) { node(id: $id) { ... on Thread { title postCount unreadCount
  posts(first: 20, order: $order) { edges { node { id body depth author { displayName }
  reactions { kind count reactedByMe } } } } } } }
"""


async def test_discussion_flow(server: Server) -> None:
    admin = await staff(server, "admin")
    anna = await member(server, displayName="Anna K")
    body = await server.gql(
        CREATE_AREA,
        {
            "input": {
                "titleFi": "Yleinen",
                "titleSv": "Allmänt",
                "titleEn": "General",
                "membersCanStartThreads": True,
            }
        },
        token=admin.token,
    )
    area_id = body["data"]["createArea"]["area"]["id"]
    started = await server.gql(
        START_THREAD,
        {
            "input": {
                "areaId": area_id,
                "title": "Hello",
                "body": "First <b>post</b>",
                "clientKey": "key-000001",
            }
        },
        token=anna.token,
    )
    result = started["data"]["startThread"]
    assert result["__typename"] == "StartThreadSuccess", started
    thread_id = result["thread"]["id"]
    first_post = result["post"]["id"]

    bob = await member(server)
    async with connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": bob.token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription($t: ID!) { threadEvents(threadId: $t, after: 0) "
                        "{ position kind post { body author { displayName } } } }",
                        "variables": {"t": thread_id},
                    },
                }
            )
        )
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message["payload"]["data"]["threadEvents"]["position"] == 1, message
        reply = await server.gql(
            ADD_POST,
            {
                "input": {
                    "threadId": thread_id,
                    "body": "A **reply**",
                    "clientKey": "key-000002",
                    "parentId": first_post,
                }
            },
            token=bob.token,
        )
        assert reply["data"]["addPost"]["post"]["depth"] == 1, reply
        assert reply["data"]["addPost"]["post"]["bodyHtml"] == "A <strong>reply</strong>"
        again = await server.gql(
            ADD_POST,
            {
                "input": {
                    "threadId": thread_id,
                    "body": "A **reply**",
                    "clientKey": "key-000002",
                    "parentId": first_post,
                }
            },
            token=bob.token,
        )
        assert again["data"]["addPost"]["post"]["id"] == reply["data"]["addPost"]["post"]["id"]
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        event = message["payload"]["data"]["threadEvents"]
        assert event["position"] == 2 and event["kind"] == "POST_ADDED", message
    assert await Post.all().count() == 2
    assert await ThreadEvent.all().count() == 2
    page = await server.gql(
        THREAD_PAGE, {"id": thread_id, "order": "OLDEST_FIRST"}, token=anna.token
    )
    thread = page["data"]["node"]
    assert [e["node"]["depth"] for e in thread["posts"]["edges"]] == [0, 1]
    assert thread["unreadCount"] == 1
    assert thread["posts"]["edges"][0]["node"]["body"] == "First <b>post</b>"


async def test_one_execution_is_shared_by_subscribers_with_the_same_view(server: Server) -> None:
    from schema.sharing import stats
    from subscriptions.feeds import FEEDS

    admin = await staff(server, "admin")
    body = await server.gql(
        CREATE_AREA,
        {"input": {"titleFi": "A", "titleSv": "A", "titleEn": "A", "membersCanStartThreads": True}},
        token=admin.token,
    )
    area_id = body["data"]["createArea"]["area"]["id"]
    anna = await member(server)
    started = await server.gql(
        START_THREAD,
        {"input": {"areaId": area_id, "title": "T", "body": "x", "clientKey": "share-0001"}},
        token=anna.token,
    )
    thread_id = started["data"]["startThread"]["thread"]["id"]
    watchers = [await member(server) for _ in range(2)]
    sockets = []
    query = "subscription($t: ID!) { threadEvents(threadId: $t) { position post { body isMine } } }"
    try:
        # Two members and two sockets of one of them: three identical views, plus the author.
        for token in [watchers[0].token, watchers[1].token, watchers[1].token, anna.token]:
            ws = await connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")])
            sockets.append(ws)
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": query, "variables": {"t": thread_id}},
                    }
                )
            )
        for _ in range(200):
            feed = next(iter(FEEDS.feeds.values()), None)
            if feed is not None and len(feed.subscribers) == 4:
                break
            await asyncio.sleep(0.02)
        before = dict(stats)
        reply = await server.gql(
            ADD_POST,
            {"input": {"threadId": thread_id, "body": "shared", "clientKey": "share-0002"}},
            token=anna.token,
        )
        assert reply["data"]["addPost"]["__typename"] == "PostSuccess", reply
        views = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for ws in sockets]
        posts = [v["payload"]["data"]["threadEvents"]["post"] for v in views]
        assert posts[:3] == [{"body": "shared", "isMine": False}] * 3
        assert posts[3] == {"body": "shared", "isMine": True}
        # Two distinct views (watchers, author): two executions, two shared results.
        assert stats["executed"] - before["executed"] == 2, (before, stats)
        assert stats["shared"] - before["shared"] == 2, (before, stats)
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_websocket_loses_its_session_when_the_session_ends(server: Server) -> None:
    anna = await member(server)
    async with connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": anna.token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"

        async def ask(op_id: str, query: str) -> dict[str, object]:
            await ws.send(
                json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}})
            )
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] == "next", message
            payload: dict[str, object] = message["payload"]
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "complete"
            return payload

        before = await ask("1", "{ me { displayName } }")
        assert before["data"] == {"me": {"displayName": anna.display_name}}
        logout = await server.gql("mutation { logout { __typename } }", token=anna.token)
        assert logout["data"]["logout"]["__typename"] == "Done"
        # The same socket: no longer signed in, for queries and mutations alike.
        after = await ask("2", "{ me { displayName } }")
        assert after["data"] == {"me": None}
        write = await ask("3", "mutation { logoutEverywhere { __typename } }")
        assert write["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # type: ignore[index]


async def test_notification_positions_are_taken_in_commit_order(server: Server) -> None:
    """A member's second notice waits for the first's transaction: positions never
    commit out of order, so a stream reading "after p" cannot skip one."""
    from tortoise.transactions import in_transaction

    from models.community import Notification
    from resolvers.notices import notify

    anna = await member(server)
    opened, release = asyncio.Event(), asyncio.Event()

    async def first() -> int:
        async with in_transaction("community"):
            row = await notify(anna.member_id, "TEST", {})
            opened.set()
            await release.wait()
            return row.position

    async def second() -> int:
        await opened.wait()
        async with in_transaction("community"):
            return (await notify(anna.member_id, "TEST", {})).position

    one, two = asyncio.create_task(first()), asyncio.create_task(second())
    await opened.wait()
    await asyncio.sleep(0.3)
    assert not two.done()  # held behind the first notice's open transaction
    release.set()
    assert (await one, await two) == (1, 2)
    rows = await Notification.filter(member_id=anna.member_id).order_by("id")
    assert [r.position for r in rows] == [1, 2]


async def test_a_parallel_burst_of_sign_ins_is_throttled(server: Server) -> None:
    from dataclasses import replace

    from config import override_settings
    from tests.helpers import login

    anna = await member(server)
    override_settings(replace(server.settings, login_max_failures_account=5))
    results = await asyncio.gather(
        *(login(server, anna.login_name, "not the password at all") for _ in range(15))
    )
    codes = [r["code"] for r in results]
    # Attempts are counted before any password is checked: never more than 5 checks.
    assert codes.count("INVALID_CREDENTIALS") <= 5, codes
    assert codes.count("TOO_MANY_ATTEMPTS") >= 10, codes


async def test_registering_while_others_verify_does_not_deadlock(server: Server) -> None:
    """Register (community, then contacts) beside verify and reset (the same order)."""
    from tests.helpers import VERIFY_EMAIL, register
    from tests.smtp import token_in

    pending = []
    for n in range(8):
        email = f"lockorder{n}@example.com"
        result = await register(server, email=email, loginName=f"lockorder{n}")
        assert result["__typename"] == "RegisterSuccess", result
        pending.append(token_in(await server.smtp.wait_for(email, "verify")))
    calls = [server.gql(VERIFY_EMAIL, {"token": token}) for token in pending]
    calls += [register(server, email=f"lockfresh{n}@example.com") for n in range(8)]
    results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
    assert all("errors" not in r for r in results), results


async def test_members_made_in_parallel_do_not_deadlock_the_registers(server: Server) -> None:
    """Register, verify and sign in, six at once: with verify taking contacts
    before community this deadlocked SQLite now and then."""
    accounts = await asyncio.wait_for(
        asyncio.gather(*(member(server) for _ in range(6))), timeout=40
    )
    assert len({a.member_id for a in accounts}) == 6
