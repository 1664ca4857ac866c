"""Two server processes, one Redis: cross-worker events that survive a Redis restart.

Two ``community serve`` processes (workers A and B) share the databases and a
private redis-server. A member subscribes to a thread's events on B while
posts are written on A. Mid-stream Redis is killed and started again: every
post must still be accepted, both workers must report the bus unready while
Redis is down and ready after (without being restarted), and the subscriber
must end with every post exactly once, in order.

The Redis server is private to this module (own port and directory), since
the test kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.conftest import (
    BACKEND,
    PG_DSN,
    _create_pg_databases,
    _drop_pg_databases,
    free_port,
)
from tests.private_redis import PrivateRedis
from tests.smtp import token_in

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary"
)

ROOT = Path(__file__).resolve().parent.parent
COMMUNITY = str(Path(sys.executable).parent / "community")
PASSWORD = "correct horse battery staple"
STALL = 8.0  # a subscriber hearing nothing for this long resumes on a new socket

RULES_QUERY = "{ rules { current { id } } }"
REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) { __typename ... on Error { code message } }
}
"""
VERIFY_EMAIL = """
mutation Verify($token: String!) {
  verifyEmail(token: $token) { __typename ... on Error { code message } }
}
"""
LOGIN = """
mutation Login($login: String!, $password: String!) {
  login(input: {login: $login, password: $password}) {
    __typename
    ... on LoginSuccess { token me { id role } }
    ... on Error { code message }
  }
}
"""
CREATE_AREA = """
mutation CreateArea($input: CreateAreaInput!) {
  createArea(input: $input) {
    __typename
    ... on CreateAreaSuccess { area { id } }
    ... on Error { code message }
  }
}
"""
START_THREAD = """
mutation StartThread($input: StartThreadInput!) {
  startThread(input: $input) {
    __typename
    ... on StartThreadSuccess { thread { id lastPosition } }
    ... on Error { code message }
  }
}
"""
ADD_POST = """
mutation AddPost($input: AddPostInput!) {
  addPost(input: $input) {
    __typename
    ... on PostSuccess { post { id body } }
    ... on Error { code message }
  }
}
"""
THREAD_EVENTS = """
subscription Events($thread: ID!, $after: Int) {
  threadEvents(threadId: $thread, after: $after) { position kind post { body } }
}
"""


# ---------------------------------------------------------------- processes


@dataclass
class Worker:
    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def readyz(self) -> tuple[int, dict[str, bool]]:
        response = await self.http.get("/readyz")
        checks: dict[str, bool] = response.json()["checks"]
        return response.status_code, checks


@dataclass
class Cluster:
    env: dict[str, str]
    redis: PrivateRedis
    a: Worker
    b: Worker
    mail_dir: Path
    community_db: str
    admin_login: str
    run_id: str


async def run_cli(env: dict[str, str], *args: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [COMMUNITY, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"community {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


async def start_worker(name: str, env: dict[str, str], tmp: Path) -> Worker:
    port = free_port()
    log = tmp / f"worker-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [COMMUNITY, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    worker = Worker(name, port, log, process, http)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/readyz")).status_code == 200:
                return worker
        assert time.monotonic() < deadline, f"worker {name} did not start: {log.read_text()}"
        await asyncio.sleep(0.05)


async def stop_worker(worker: Worker) -> None:
    await worker.http.aclose()
    worker.process.terminate()
    try:
        await asyncio.to_thread(worker.process.wait, 10)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        await asyncio.to_thread(worker.process.wait)


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    run_id = f"ctwo_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg_names = [f"{run_id}_community", f"{run_id}_contacts"]
    if BACKEND == "postgres":
        try:
            await _create_pg_databases(pg_names)
        except (OSError, asyncpg.PostgresError) as exc:
            (pytest.fail if os.environ.get("CI") else pytest.skip)(f"PostgreSQL needed: {exc}")
        community_db = f"{PG_DSN}/{pg_names[0]}"
        contacts_db = f"{PG_DSN}/{pg_names[1]}"
    else:
        community_db = f"sqlite://{tmp_path}/community.sqlite3"
        contacts_db = f"sqlite://{tmp_path}/contacts.sqlite3"
    redis = PrivateRedis(tmp_path)
    mail_dir = tmp_path / "mail"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMMUNITY_", "BROADCAST_", "SMTP_", "MAIL_", "CONTACTS_"))
    }
    env.update(
        COMMUNITY_ENV="test",
        COMMUNITY_DB_URL=community_db,
        CONTACTS_DB_URL=contacts_db,
        BROADCAST_URL=redis.url,
        BROADCAST_CHANNEL_PREFIX=f"{run_id}:",
        MAIL_WORKER="false",
        MAIL_DIR=str(mail_dir),
        PUBLIC_BASE_URL="https://community.test",
        STAFF_PASSWORD=PASSWORD,
        LOG_LEVEL="warning",
    )
    workers: list[Worker] = []
    try:
        redis.start()
        await run_cli(env, "migrate")
        await run_cli(env, "publish-rules")
        admin_login = "opschief1"
        await run_cli(
            env, "create-staff", "--role", "admin", "--login", admin_login, "--display-name", "Ops"
        )
        workers.append(await start_worker("A", env, tmp_path))
        workers.append(await start_worker("B", env, tmp_path))
        yield Cluster(
            env, redis, workers[0], workers[1], mail_dir, community_db, admin_login, run_id
        )
    finally:
        for worker in workers:
            await stop_worker(worker)
        redis.kill()
        if BACKEND == "postgres":
            await _drop_pg_databases(pg_names)


# ---------------------------------------------------------------- helpers


async def sign_in(worker: Worker, login_name: str) -> str:
    result = (await worker.gql(LOGIN, {"login": login_name, "password": PASSWORD}))["login"]
    assert result["__typename"] == "LoginSuccess", result
    token: str = result["token"]
    return token


async def verification_token(cluster: Cluster, address: str) -> str:
    """Deliver the outbox as the mail worker does, and read the link from the .eml file."""
    await run_cli(cluster.env, "mail-worker", "--once")
    for path in sorted(cluster.mail_dir.glob("*-verify.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"] == address:
            return token_in(message)
    raise AssertionError(f"no verify email to {address} in {cluster.mail_dir}")


async def new_member(cluster: Cluster) -> str:
    """Register on worker A, verify through the emailed link, sign in on worker B."""
    rules_id = (await cluster.a.gql(RULES_QUERY))["rules"]["current"]["id"]
    email = "follower@example.com"
    registered = await cluster.a.gql(
        REGISTER,
        {
            "input": {
                "email": email,
                "birthDate": "1990-05-17",
                "language": "FI",
                "loginName": "follower1",
                "displayName": "Seuraaja",
                "password": PASSWORD,
                "rulesVersionId": rules_id,
            }
        },
    )
    assert registered["register"]["__typename"] == "RegisterSuccess", registered
    token = await verification_token(cluster, email)
    verified = await cluster.a.gql(VERIFY_EMAIL, {"token": token})
    assert verified["verifyEmail"]["__typename"] == "VerifyEmailSuccess", verified
    return await sign_in(cluster.b, "follower1")


async def thread_positions(cluster: Cluster, thread_id: int) -> list[int]:
    """The stored event positions of a thread, read straight from the database."""
    sql = "SELECT position FROM thread_event WHERE thread_id = {} ORDER BY position"
    if cluster.community_db.startswith("sqlite://"):
        import sqlite3

        path = cluster.community_db.removeprefix("sqlite://")
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [row[0] for row in db.execute(sql.format("?"), (thread_id,))]
    conn = await asyncpg.connect(cluster.community_db, timeout=5)
    try:
        return [row[0] for row in await conn.fetch(sql.format("$1"), thread_id)]
    finally:
        await conn.close()


async def open_stream(ws_url: str, token: str, thread: str, after: int) -> ClientConnection:
    return await open_subscription(
        ws_url, token, "1", THREAD_EVENTS, {"thread": thread, "after": after}
    )


async def open_subscription(
    ws_url: str, token: str, op_id: str, query: str, variables: dict[str, Any] | None = None
) -> ClientConnection:
    """An acknowledged graphql-transport-ws connection with one subscription started."""
    ws = await connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ack["type"] == "connection_ack", ack
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
    return ws


@dataclass
class Follower:
    """A client following a thread, resuming after its last position when needed."""

    ws_url: str
    token: str
    thread: str
    positions: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    resumes: list[str] = field(default_factory=list)  # why each resume happened

    async def run(self) -> None:
        while True:
            after = self.positions[-1] if self.positions else 0
            try:
                ws = await open_stream(self.ws_url, self.token, self.thread, after)
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                self.resumes.append(f"connect failed: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            try:
                reason = await self._follow(ws)
            finally:
                await ws.close()
            self.resumes.append(reason)

    async def _follow(self, ws: ClientConnection) -> str:
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), STALL)
            except TimeoutError:
                return f"stalled after position {self.positions[-1:]}"
            except ConnectionClosed as exc:
                return f"closed: {exc!r}"
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next" and "errors" not in message["payload"]:
                event = message["payload"]["data"]["threadEvents"]
                assert event["kind"] == "POST_ADDED", event
                self.positions.append(event["position"])
                self.bodies.append(event["post"]["body"])
            else:
                return f"stream ended: {message}"


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the test


async def test_events_cross_workers_and_survive_a_redis_restart(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    admin = await sign_in(a, cluster.admin_login)
    area = await a.gql(
        CREATE_AREA,
        {
            "input": {
                "titleFi": "Yleinen",
                "titleSv": "Allmänt",
                "titleEn": "General",
                "membersCanStartThreads": True,
            }
        },
        token=admin,
    )
    assert area["createArea"]["__typename"] == "CreateAreaSuccess", area
    started = await a.gql(
        START_THREAD,
        {
            "input": {
                "areaId": area["createArea"]["area"]["id"],
                "title": "Across workers",
                "body": "Post 0",
                "clientKey": "thread-0001",
            }
        },
        token=admin,
    )
    assert started["startThread"]["__typename"] == "StartThreadSuccess", started
    thread = started["startThread"]["thread"]["id"]
    member_token = await new_member(cluster)

    # The member follows the thread on worker B from the start (position 1 is replayed).
    follower = Follower(b.ws_url, member_token, thread)
    following = asyncio.create_task(follower.run())

    async def follower_has(count: int) -> bool:
        assert not following.done(), following
        return len(follower.positions) >= count

    # Posts on A, in the background; records each answer and Redis's state when sent.
    results: list[tuple[str, dict[str, Any]]] = []
    redis_state = "up"
    stop_posting = asyncio.Event()

    async def poster() -> None:
        n = 0
        while not stop_posting.is_set():
            n += 1
            state = redis_state
            body = await a.gql(
                ADD_POST,
                {"input": {"threadId": thread, "body": f"Post {n}", "clientKey": f"post-{n:06d}"}},
                token=admin,
            )
            results.append((state, body["addPost"]))
            await asyncio.sleep(0.03)

    posting: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: follower_has(1), 10, "the replay of position 1 on worker B")
        posting = asyncio.create_task(poster())

        # Live across workers: posts written on A arrive on B.
        await wait_for(lambda: follower_has(11), 10, "10 live posts on worker B")

        # Redis dies mid-stream. Both workers notice; posting goes on.
        cluster.redis.kill()
        redis_state = "down"

        async def both_unready() -> bool:
            answers = [await w.readyz() for w in (a, b)]
            return all(code == 503 and not checks["bus"] for code, checks in answers)

        await wait_for(both_unready, 10, "both workers to report the bus down")
        for worker in (a, b):
            code, checks = await worker.readyz()
            assert code == 503
            assert checks == {"community": True, "contacts": True, "bus": False}, worker.name

        async def posted_while_down() -> bool:
            assert posting is not None and not posting.done(), posting
            return sum(1 for state, _ in results if state == "down") >= 8

        await wait_for(posted_while_down, 10, "posts written while Redis is down")

        # Redis returns on the same port; the workers recover without a restart.
        cluster.redis.start()
        redis_state = "back"

        async def both_ready() -> bool:
            answers = [await w.readyz() for w in (a, b)]
            return all(code == 200 and checks["bus"] for code, checks in answers)

        await wait_for(both_ready, 10, "both workers to report the bus ready again")
        redis_state = "ready"

        async def posted_after() -> bool:
            assert posting is not None and not posting.done(), posting
            return sum(1 for state, _ in results if state == "ready") >= 10

        await wait_for(posted_after, 10, "posts written after Redis returned")
        stop_posting.set()
        await asyncio.wait_for(posting, 10)

        # Every post was accepted, whatever Redis was doing.
        failed = [(state, r) for state, r in results if r["__typename"] != "PostSuccess"]
        assert failed == []
        total = 1 + len(results)
        assert await thread_positions(cluster, int(_node_id(thread))) == list(range(1, total + 1))

        # The follower on B ends with every post exactly once, in order.
        await wait_for(lambda: follower_has(total), 10, f"all {total} positions on worker B")
        await asyncio.sleep(0.3)  # nothing more may come
        assert follower.positions == list(range(1, total + 1))
        assert follower.bodies == [f"Post {n}" for n in range(total)]
        # ... on the socket it opened first: the stream on B recovered by itself.
        assert follower.resumes == []
    finally:
        stop_posting.set()
        for task in (posting, following):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # Worker B (the one with subscribers) logged the loss and the reconnect.
    log_b = b.log.read_text()
    assert "bus lost its Redis connection" in log_b, log_b
    assert "bus reconnected to Redis and resubscribed" in log_b, log_b
    assert b.process.poll() is None and a.process.poll() is None

    # A client resuming after a position on the other worker gets exactly the rest.
    ws = await open_stream(a.ws_url, member_token, thread, total - 5)
    try:
        resumed = []
        for _ in range(5):
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] == "next", message
            resumed.append(message["payload"]["data"]["threadEvents"]["position"])
        assert resumed == list(range(total - 4, total + 1))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
    finally:
        await ws.close()


async def open_thread(worker: Worker, admin: str, title: str) -> str:
    """A new open area with one thread started by the admin (position 1); its id."""
    area = await worker.gql(
        CREATE_AREA,
        {
            "input": {
                "titleFi": title,
                "titleSv": title,
                "titleEn": title,
                "membersCanStartThreads": True,
            }
        },
        token=admin,
    )
    started = await worker.gql(
        START_THREAD,
        {
            "input": {
                "areaId": area["createArea"]["area"]["id"],
                "title": title,
                "body": "Post 0",
                "clientKey": f"{title.lower()}-0000",
            }
        },
        token=admin,
    )
    thread: str = started["startThread"]["thread"]["id"]
    return thread


async def test_after_a_redis_outage_open_streams_catch_up_without_a_new_event(
    cluster: Cluster,
) -> None:
    """What was written while Redis was down reaches open streams as soon as it is back.

    Publishing fails during the outage, so nothing would wake the streams
    until the next event or their periodic resync (15 s). When Redis confirms
    the subscriptions again, each stream re-reads the database: the thread's
    posts and the reply notice arrive within seconds, on the same sockets,
    with no further write.
    """
    a, b = cluster.a, cluster.b
    admin = await sign_in(a, cluster.admin_login)
    thread = await open_thread(a, admin, "Outage")
    member_token = await new_member(cluster)
    mine = await a.gql(
        ADD_POST,
        {"input": {"threadId": thread, "body": "Minun", "clientKey": "outage-mine"}},
        token=member_token,
    )
    assert mine["addPost"]["__typename"] == "PostSuccess", mine
    my_post = mine["addPost"]["post"]["id"]

    events = await open_stream(b.ws_url, member_token, thread, 0)
    notices = await open_subscription(
        b.ws_url, member_token, "n", "subscription { notifications { position kind } }"
    )
    try:

        async def next_message(ws: ClientConnection, timeout: float) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                    continue
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                data: dict[str, Any] = message["payload"]["data"]
                return data

        replayed = [(await next_message(events, 5))["threadEvents"]["position"] for _ in (1, 2)]
        assert replayed == [1, 2]
        await asyncio.sleep(0.5)  # the notifications stream is subscribed on the bus

        cluster.redis.kill()

        async def both_unready() -> bool:
            answers = [await w.readyz() for w in (a, b)]
            return all(code == 503 for code, _ in answers)

        await wait_for(both_unready, 10, "both workers to report the bus down")
        for n in (1, 2, 3):
            written = await a.gql(
                ADD_POST,
                {
                    "input": {
                        "threadId": thread,
                        "body": f"Katkon aikana {n}",
                        "clientKey": f"outage-{n:04d}",
                        **({"parentId": my_post} if n == 3 else {}),
                    }
                },
                token=admin,
            )
            assert written["addPost"]["__typename"] == "PostSuccess", written

        cluster.redis.start()

        async def both_ready() -> bool:
            answers = [await w.readyz() for w in (a, b)]
            return all(code == 200 and checks["bus"] for code, checks in answers)

        await wait_for(both_ready, 10, "both workers to report the bus ready again")
        back_at = time.monotonic()
        # No further write: well within the streams' 15 s periodic resync.
        caught_up = [(await next_message(events, 5))["threadEvents"] for _ in (3, 4, 5)]
        assert [(e["position"], e["post"]["body"]) for e in caught_up] == [
            (3, "Katkon aikana 1"),
            (4, "Katkon aikana 2"),
            (5, "Katkon aikana 3"),
        ]
        notice = (await next_message(notices, 5))["notifications"]
        assert notice["kind"] == "REPLY", notice
        assert time.monotonic() - back_at < 5
        with pytest.raises(TimeoutError):  # each once
            await next_message(events, 0.5)
    finally:
        await events.close()
        await notices.close()


async def test_a_ban_during_a_redis_outage_ends_the_members_streams_when_it_returns(
    cluster: Cluster,
) -> None:
    """The ban's request to close sockets on other workers is lost with Redis; the
    resync after the outage makes the member's stream on B re-check its session."""
    a, b = cluster.a, cluster.b
    admin = await sign_in(a, cluster.admin_login)
    thread = await open_thread(a, admin, "Ban")
    member_token = await new_member(cluster)
    member_id = (await a.gql("{ me { id } }", token=member_token))["me"]["id"]

    events = await open_stream(b.ws_url, member_token, thread, 0)
    try:
        first = json.loads(await asyncio.wait_for(events.recv(), 5))
        assert first["type"] == "next" and "errors" not in first["payload"], first
        await asyncio.sleep(0.5)
        cluster.redis.kill()

        async def b_unready() -> bool:
            return (await b.readyz())[0] == 503

        await wait_for(b_unready, 10, "worker B to report the bus down")
        banned = await a.gql(
            """mutation Ban($input: ModerateMemberInput!) {
              moderateMember(input: $input) { __typename }
            }""",
            {
                "input": {
                    "memberId": member_id,
                    "action": "BAN",
                    "category": "SPAM_OR_TROLLING",
                    "note": "Mainoksia",
                }
            },
            token=admin,
        )
        assert banned["moderateMember"]["__typename"] == "ModerateMemberSuccess", banned
        # While Redis is down, worker B has not heard of it: the stream is open.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(events.recv(), 1.0)

        cluster.redis.start()
        ended_at = time.monotonic() + 8  # well before the stream's 60 s session check
        ended: str | None = None
        while ended is None:
            try:
                raw = await asyncio.wait_for(events.recv(), ended_at - time.monotonic())
            except ConnectionClosed as exc:
                ended = f"closed {exc.rcvd.code if exc.rcvd else None}"
                break
            message = json.loads(raw)
            if message["type"] == "ping":
                await events.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next" and message["payload"].get("errors"):
                ended = message["payload"]["errors"][0]["extensions"]["code"]
            else:
                raise AssertionError(f"the banned member's stream went on: {message}")
        assert ended == "SESSION_ENDED", ended
    finally:
        await events.close()


def _node_id(global_id: str) -> str:
    from strawberry.relay import GlobalID

    return GlobalID.from_id(global_id).node_id
