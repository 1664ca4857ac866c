"""Discussion benchmark: fan-out, thread page and memory, beside a bare baseline.

    .venv/bin/python -m bench.discussions_bench [--sizes 100,1000,2000] [--events 10]

Needs PostgreSQL and Redis on 127.0.0.1 (as the tests do); creates and drops
its own databases and uses its own channel prefix. It starts two uvicorn
processes of the community server (one worker each, on one Redis and one
PostgreSQL) and two of the bare baseline (``bench/bare_app.py``), then:

1. fan-out: N authenticated ``threadEvents`` subscribers spread over the two
   workers; one post is written over HTTP and the time until each subscriber
   has it is measured (p50, p99, last), with the workers' CPU time per event;
   the same N clients on the bare websocket get the same payload published
   on the same Redis;
2. thread page: requests per second of a 20-post page (display names and
   reaction counts) over GraphQL vs the bare JSON endpoint;
3. memory: the workers' RSS growth per idle authenticated subscription.

Set-up writes members and sessions straight into the database (thousands of
sign-ins would only measure argon2). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TICKS = os.sysconf("SC_CLK_TCK")
SUBSCRIPTION = (
    "subscription($t: ID!) { threadEvents(threadId: $t) { position kind "
    "post { id body depth author { displayName } reactions { kind count } } } }"
)
PAGE = (
    "query($t: ID!) { node(id: $t) { ... on Thread { posts(first: 20) { edges { node { "
    "id body depth parentId createdAt author { displayName } reactions { kind count } } } } } } }"
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def wait_up(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(f"http://127.0.0.1:{port}/healthz")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} did not start")


class Clients:
    """N websocket clients that timestamp every message they receive."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.arrivals: list[float] = []
        self.expected = 0
        self.done = asyncio.Event()

    async def _read(self, ws: ClientConnection) -> None:
        async for _ in ws:
            self.arrivals.append(time.perf_counter())
            if len(self.arrivals) >= self.expected:
                self.done.set()

    async def open_graphql(self, ports: list[int], tokens: list[str], thread_gid: str) -> None:
        async def one(i: int, token: str) -> None:
            ws = await connect(
                f"ws://127.0.0.1:{ports[i % len(ports)]}/graphql",
                subprotocols=[Subprotocol("graphql-transport-ws")],
                max_queue=None,
                open_timeout=60,
            )
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            await ws.recv()
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIPTION, "variables": {"t": thread_gid}},
                    }
                )
            )
            self.sockets.append(ws)

        for start in range(0, len(tokens), 100):
            await asyncio.gather(
                *(one(i, t) for i, t in enumerate(tokens[start : start + 100], start))
            )
        self.tasks = [asyncio.create_task(self._read(ws)) for ws in self.sockets]

    async def open_bare(self, ports: list[int], n: int) -> None:
        async def one(i: int) -> None:
            ws = await connect(f"ws://127.0.0.1:{ports[i % len(ports)]}/ws", max_queue=None)
            self.sockets.append(ws)

        for start in range(0, n, 100):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + 100))))
        self.tasks = [asyncio.create_task(self._read(ws)) for ws in self.sockets]

    async def measure(self, trigger: Any, pids: list[int]) -> tuple[list[float], float]:
        """Latencies (ms) of one event to every client, and server CPU seconds for it."""
        self.arrivals = []
        self.expected = len(self.sockets)
        self.done.clear()
        cpu_before = cpu_seconds(pids)
        start = time.perf_counter()
        await trigger()
        try:
            await asyncio.wait_for(self.done.wait(), timeout=60)
        except TimeoutError:
            pass
        await asyncio.sleep(0.05)
        cpu = cpu_seconds(pids) - cpu_before
        return [(t - start) * 1000 for t in self.arrivals], cpu

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def make_members(version: Any, count: int) -> list[Any]:
    """Active members who accepted the rules, written straight into the database."""
    from models.community import Member, MemberStatus, RulesAcceptance
    from resolvers import clock

    people = []
    for i in range(count):
        person = await Member.create(
            login_name=f"bench{i}",
            login_key=f"bench{i}",
            display_name=f"Bench Person {i}",
            display_key=f"benchperson{i}",
            status=MemberStatus.ACTIVE,
            activated_at=clock.now(),
        )
        await RulesAcceptance.create(member=person, rules=version)
        people.append(person)
    return people


async def seed(settings: Any, members: int, sessions: int) -> dict[str, Any]:
    """Members, an area, a thread with 25 posts and reactions, and N sessions."""
    from tortoise.context import TortoiseContext

    from config import override_settings
    from models.community import Session
    from models.discussions import ReactionKind
    from resolvers import accounts, clock, crypto, discussions, rules
    from subscriptions.bus import Bus, set_bus

    override_settings(settings)
    bus = Bus("memory://")
    await bus.connect()
    set_bus(bus)
    async with TortoiseContext() as ctx:
        await ctx.init(config=settings.tortoise_config())
        version = await rules.do_publish_rules(None, "fi", "sv", "en")
        admin = await accounts.do_create_staff(
            "admin", "benchops", "Bench Staff", "correct horse battery"
        )
        people = await make_members(version, members)
        area = await discussions.do_create_area(
            admin, {"fi": "Alue", "sv": "Område", "en": "Area"}, {}, None, True
        )
        first = await discussions.do_start_thread(admin, area.id, "Bench", "Hello", "bench-start-0")
        thread_id = first.thread_id  # type: ignore[attr-defined]
        kinds = list(ReactionKind)
        for i in range(25):
            author = people[i % len(people)]
            post = await discussions.do_add_post(
                author, thread_id, f"Post {i} **bold**", f"bench-post-{i}"
            )
            for j in range(i % 4):
                await discussions.do_react(people[(i + j) % len(people)], post.id, kinds[j], True)
        tokens = []
        now = clock.now()
        rows = []
        for i in range(sessions + 1):
            token = secrets.token_urlsafe(32)
            tokens.append(token)
            owner = admin if i == 0 else people[i % len(people)]
            rows.append(
                Session(
                    member_id=owner.id,
                    token_hash=crypto.hash_token(token),
                    last_seen_at=now,
                    expires_at=now.replace(year=now.year + 1),
                )
            )
        await Session.bulk_create(rows, batch_size=500)
        await ctx.close_connections()
    await bus.disconnect()
    set_bus(None)
    return {"thread_id": thread_id, "admin_token": tokens[0], "tokens": tokens[1:]}


async def http_rate(
    ports: list[int], path: str, body: Any, requests: int, headers: dict[str, str]
) -> float:
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
    counter = iter(range(requests))

    async def worker(k: int) -> None:
        client = clients[k % len(clients)]
        for _ in counter:
            if body is None:
                response = await client.get(path, headers=headers)
            else:
                response = await client.post(path, json=body, headers=headers)
            response.raise_for_status()

    await asyncio.gather(*(worker(k) for k in range(16)))  # warm-up pass reuses the iterator
    counter = iter(range(requests))
    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(16)))
    elapsed = time.perf_counter() - start
    for client in clients:
        await client.aclose()
    return requests / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,2000")
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--page-requests", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from strawberry.relay import GlobalID

    from config import load_settings

    run = f"bench_{uuid.uuid4().hex[:8]}"
    admin_conn = await asyncpg.connect(f"{PG}/postgres")
    for name in (f"{run}_community", f"{run}_contacts"):
        await admin_conn.execute(f'CREATE DATABASE "{name}"')
    processes: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench"))
    try:
        env = dict(os.environ)
        env.update(
            COMMUNITY_DB_URL=f"{PG}/{run}_community",
            CONTACTS_DB_URL=f"{PG}/{run}_contacts",
            BROADCAST_URL=REDIS,
            BROADCAST_CHANNEL_PREFIX=f"{run}:",
            MAIL_WORKER="false",
            MAIL_DIR=str(tmp / "mail"),
            POSTS_PER_MINUTE="100000",
            POSTS_PER_HOUR="100000",
            REACTIONS_PER_MINUTE="100000",
            LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "warning"),
            BARE_DSN=f"{PG}/{run}_community",
            BARE_REDIS=REDIS,
            BARE_CHANNEL=f"{run}:bare",
        )
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "community", "migrate"], env=env, check=True, cwd=ROOT)
        settings = replace(
            load_settings(env),
            community_db_url=env["COMMUNITY_DB_URL"],
            contacts_db_url=env["CONTACTS_DB_URL"],
            posts_per_minute=100000,
            posts_per_hour=100000,
        )
        data = await seed(settings, members=50, sessions=max(sizes))
        thread_gid = str(GlobalID("Thread", str(data["thread_id"])))
        graphql_ports = [free_port(), free_port()]
        bare_ports = [free_port(), free_port()]
        for port in graphql_ports:
            processes.append(
                subprocess.Popen(
                    [bin_dir / "community", "serve", "--no-migrate", "--port", str(port)],
                    env=env,
                    cwd=ROOT,
                )
            )
        for port in bare_ports:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "bench.bare_app:app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--ws",
                        "websockets-sansio",
                        # The same websocket settings as the community server.
                        "--ws-per-message-deflate",
                        "true" if env.get("WS_COMPRESSION") == "true" else "false",
                    ],
                    env=env,
                    cwd=ROOT,
                )
            )
        for port in graphql_ports + bare_ports:
            await wait_up(port)
        graphql_pids = [p.pid for p in processes[:2]]
        bare_pids = [p.pid for p in processes[2:]]
        admin_headers = {"Authorization": f"Bearer {data['admin_token']}"}
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{graphql_ports[0]}", timeout=60)
        from redis import asyncio as aioredis

        redis = aioredis.Redis.from_url(REDIS)

        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(
            "servers: 2 uvicorn processes each (one worker), PostgreSQL 15, Redis; client on the same cores"
        )
        rows_out = []
        counter = 0
        for n in sizes:
            graphql_clients = Clients()
            rss_before = rss_kib(graphql_pids)
            t_open = time.perf_counter()
            await graphql_clients.open_graphql(graphql_ports, data["tokens"][:n], thread_gid)
            open_seconds = time.perf_counter() - t_open
            await asyncio.sleep(2 + n / 1000)
            rss_after = rss_kib(graphql_pids)
            latencies: list[list[float]] = []
            cpus: list[float] = []
            for _ in range(args.events):
                counter += 1

                async def post(i: int = counter) -> None:
                    response = await http.post(
                        "/graphql",
                        json={
                            "query": "mutation($i: AddPostInput!) { addPost(input: $i) { __typename } }",
                            "variables": {
                                "i": {
                                    "threadId": thread_gid,
                                    "body": f"Fan-out {i}",
                                    "clientKey": f"bench-fan-{i:06d}",
                                }
                            },
                        },
                        headers=admin_headers,
                    )
                    response.raise_for_status()

                lat, cpu = await graphql_clients.measure(post, graphql_pids)
                latencies.append(lat)
                cpus.append(cpu)
            await graphql_clients.close()
            bare_payload = json.dumps(
                {
                    "id": "1",
                    "type": "next",
                    "payload": {
                        "data": {
                            "threadEvents": {
                                "position": 0,
                                "kind": "POST_ADDED",
                                "post": {
                                    "id": "UG9zdDox",
                                    "body": "Fan-out",
                                    "depth": 0,
                                    "author": {"displayName": "Bench Staff"},
                                    "reactions": [],
                                },
                            }
                        }
                    },
                }
            )
            bare_clients = Clients()
            bare_rss_before = rss_kib(bare_pids)
            await bare_clients.open_bare(bare_ports, n)
            await asyncio.sleep(1 + n / 2000)
            bare_rss = (rss_kib(bare_pids) - bare_rss_before) / n
            bare_lat: list[list[float]] = []
            bare_cpu: list[float] = []
            for _ in range(args.events):

                async def publish() -> None:
                    await redis.publish(env["BARE_CHANNEL"], bare_payload)

                lat, cpu = await bare_clients.measure(publish, bare_pids)
                bare_lat.append(lat)
                bare_cpu.append(cpu)
            await bare_clients.close()

            def summary(runs: list[list[float]]) -> tuple[float, float, float, int]:
                complete = [r for r in runs if r]
                return (
                    statistics.median(percentile(r, 0.5) for r in complete),
                    statistics.median(percentile(r, 0.99) for r in complete),
                    statistics.median(max(r) for r in complete),
                    min(len(r) for r in runs),
                )

            rows_out.append(
                (
                    n,
                    summary(latencies),
                    statistics.median(cpus),
                    summary(bare_lat),
                    statistics.median(bare_cpu),
                    ((rss_after - rss_before) / n, bare_rss),
                    open_seconds,
                )
            )
            await asyncio.sleep(1)

        print(
            "\nFan-out of one post (medians of",
            args.events,
            "events; ms from the write / publish):",
        )
        print(
            "| N | GraphQL p50 / p99 / last | bare p50 / p99 / last | delivered (min) | server CPU per event GraphQL / bare | RSS per idle connection GraphQL / bare | opening N sockets |"
        )
        print("|---|---|---|---|---|---|---|")
        for n, g, g_cpu, b, b_cpu, rss, opened in rows_out:
            print(
                f"| {n:,} | {g[0]:.0f} / {g[1]:.0f} / {g[2]:.0f} | {b[0]:.0f} / {b[1]:.0f} / {b[2]:.0f} | "
                f"{g[3]} / {b[3]} | {g_cpu * 1000:.0f} ms / {b_cpu * 1000:.0f} ms | {rss[0]:.1f} / {rss[1]:.1f} KiB | {opened:.1f} s |"
            )

        page_rate = await http_rate(
            graphql_ports,
            "/graphql",
            {"query": PAGE, "variables": {"t": thread_gid}},
            args.page_requests,
            admin_headers,
        )
        bare_rate = await http_rate(
            bare_ports, f"/page?thread={data['thread_id']}", None, args.page_requests, {}
        )
        print(
            f"\nThread page (20 posts, names, reaction counts), 16 concurrent clients over 2 processes:\n"
            f"| GraphQL | bare JSON | ratio |\n|---|---|---|\n"
            f"| {page_rate:.0f} req/s | {bare_rate:.0f} req/s | {page_rate / bare_rate:.2f}x |"
        )
        await http.aclose()
        await redis.aclose()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for name in (f"{run}_community", f"{run}_contacts"):
            await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()


if __name__ == "__main__":
    asyncio.run(main())
