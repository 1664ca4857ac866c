"""The bare baseline for the discussion benchmark: no GraphQL, no ORM.

- ``/ws``: a plain Starlette websocket; every message published on the Redis
  channel ``BARE_CHANNEL`` is forwarded as-is to every open socket (one
  Redis subscription per process, like our bus).
- ``/page?thread=N``: the same 20 newest posts with author display names and
  reaction counts that the GraphQL thread page returns, straight from asyncpg.

Run it like the server: ``uvicorn bench.bare_app:app`` with ``BARE_DSN`` (the
community database) and ``BARE_REDIS`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from redis import asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHANNEL = os.environ.get("BARE_CHANNEL", "bare:thread")
PAGE_SQL = """
SELECT p.id, p.body, p.depth, p.parent_id, p.created_at, m.display_name,
       COALESCE((SELECT json_agg(json_build_object('kind', r.kind, 'count', r.n) ORDER BY r.kind)
                 FROM (SELECT kind, COUNT(*) AS n FROM reaction WHERE post_id = p.id GROUP BY kind) r),
                '[]') AS reactions
FROM post p JOIN member m ON m.id = p.author_id
WHERE p.thread_id = $1 ORDER BY p.id DESC LIMIT 20
"""
sockets: set[WebSocket] = set()
state: dict[str, Any] = {}


async def fan_out() -> None:
    client = aioredis.Redis.from_url(os.environ["BARE_REDIS"])
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        text = message["data"].decode()
        await asyncio.gather(*(ws.send_text(text) for ws in list(sockets)), return_exceptions=True)


async def websocket(ws: WebSocket) -> None:
    await ws.accept()
    sockets.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(ws)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def page(request: Request) -> JSONResponse:
    pool: asyncpg.Pool = state["pool"]
    rows = await pool.fetch(PAGE_SQL, int(request.query_params["thread"]))
    return JSONResponse(
        {
            "posts": [
                {
                    "id": r["id"],
                    "body": r["body"],
                    "depth": r["depth"],
                    "parentId": r["parent_id"],
                    "createdAt": r["created_at"].isoformat(),
                    "author": {"displayName": r["display_name"]},
                    "reactions": json.loads(r["reactions"]),
                }
                for r in rows
            ]
        }
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state["pool"] = await asyncpg.create_pool(os.environ["BARE_DSN"], min_size=1, max_size=10)
    task = asyncio.create_task(fan_out())
    yield
    task.cancel()
    await state["pool"].close()


app = Starlette(
    routes=[Route("/healthz", healthz), Route("/page", page), WebSocketRoute("/ws", websocket)],
    lifespan=lifespan,
)
