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
