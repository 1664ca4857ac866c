"""Benchmark of the foundation's request path; prints figures, asserts nothing.

    .venv/bin/python -m bench.api_bench [--requests 2000] [--concurrency 16]

1. In-process: executing a typical signed-in document (`me` with sessions,
   and the current rules) through our schema, whose limit rules are built
   once with parser and validation caches, against the baseline the stack
   notes warn about: the same schema with limiter factories per request (a
   new rule class each time, so the validation cache never hits).
2. Over HTTP, one uvicorn worker on SQLite: requests per second and p50/p99
   latency of that document, beside `/healthz` (the bare Starlette floor of
   the same server) in the same run.
3. The cost of one argon2id verification at our parameters (every sign-in).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

DOCUMENT = """
query Home {
  me { displayName language mustAcceptRules
       sessions(first: 5) { edges { node { id current lastSeenAt } } } }
  rules { current { id version publishedAt } }
}
"""
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        COMMUNITY_DB_URL=f"sqlite://{tmp}/community.sqlite3",
        CONTACTS_DB_URL=f"sqlite://{tmp}/contacts.sqlite3",
        MAIL_DIR=str(tmp / "mail"),
        LOGIN_MAX_FAILURES_ADDRESS="1000000",
    )
    return env


async def seed_member(client: httpx.AsyncClient, mail_dir: Path) -> str:
    """Register, verify (through the mail folder) and sign in; returns a token."""
    import re
    from email import message_from_bytes, policy

    rules = (await client.post("/graphql", json={"query": "{ rules { current { id } } }"})).json()
    rules_id = rules["data"]["rules"]["current"]["id"]
    register = """mutation($i: RegisterInput!) { register(input: $i) { __typename } }"""
    await client.post(
        "/graphql",
        json={
            "query": register,
            "variables": {
                "i": {
                    "email": "bench@example.com",
                    "birthDate": "1990-01-01",
                    "language": "EN",
                    "loginName": "benchuser",
                    "displayName": "Bench Person",
                    "password": "correct horse battery staple",
                    "rulesVersionId": rules_id,
                }
            },
        },
    )
    for _ in range(200):
        files = sorted(mail_dir.glob("*-verify.eml"))
        if files:
            break
        await asyncio.sleep(0.05)
    message = message_from_bytes(files[-1].read_bytes(), policy=policy.default)
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    token = re.search(r"token=([\w-]+)", body).group(1)  # type: ignore[union-attr]
    await client.post(
        "/graphql",
        json={"query": f'mutation {{ verifyEmail(token: "{token}") {{ __typename }} }}'},
    )
    login = await client.post(
        "/graphql",
        json={
            "query": 'mutation { login(input: {login: "benchuser", '
            'password: "correct horse battery staple"}) { ... on LoginSuccess { token } } }'
        },
    )
    return str(login.json()["data"]["login"]["token"])


async def http_load(
    client: httpx.AsyncClient, requests: int, concurrency: int, call: Any
) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            start = time.perf_counter()
            response = await call(client)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or "errors" in response.text[:20]:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return requests / elapsed, p50, p99, errors


async def in_process(token_holder: dict[str, Any], runs: int) -> dict[str, float]:
    """µs per execution of DOCUMENT: our schema vs limiter factories per request."""
    from strawberry.extensions import (
        MaskErrors,
        MaxAliasesLimiter,
        MaxTokensLimiter,
        QueryDepthLimiter,
    )

    from config import Settings
    from schema import CommunitySchema, Mutation, Query, Subscription, create_schema
    from schema.context import Context
    from schema.limits import should_mask

    ours = create_schema(Settings())
    naive = CommunitySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=2000),
            lambda: QueryDepthLimiter(max_depth=12),
            lambda: MaxAliasesLimiter(max_alias_count=30),
            lambda: MaskErrors(should_mask_error=should_mask),
        ],
    )
    context = token_holder["context"]
    assert isinstance(context, Context)
    results: dict[str, float] = {}
    for name, schema in (("baseline: limiter factories, no caches", naive), ("ours", ours)):
        for _ in range(20):  # warm up
            await schema.execute(DOCUMENT, context_value=context)
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(runs // 5):
                result = await schema.execute(DOCUMENT, context_value=context)
                assert result.errors is None, result.errors
            samples.append((time.perf_counter() - start) / (runs // 5) * 1e6)
        results[name] = statistics.median(samples)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = env_for(tmp)
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "community", "migrate"], env=env, check=True, cwd=ROOT)
        subprocess.run(
            [bin_dir / "community", "publish-rules", "--if-none"],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        port = free_port()
        server = subprocess.Popen(
            [bin_dir / "community", "serve", "--no-migrate", "--port", str(port)],
            env={**env, "LOG_LEVEL": "warning"},
            cwd=ROOT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for _ in range(200):
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                token = await seed_member(client, tmp / "mail")
                headers = {"Authorization": f"Bearer {token}"}

                async def graphql(c: httpx.AsyncClient) -> httpx.Response:
                    return await c.post("/graphql", json={"query": DOCUMENT}, headers=headers)

                async def healthz(c: httpx.AsyncClient) -> httpx.Response:
                    return await c.get("/healthz")

                await http_load(client, 200, args.concurrency, graphql)  # warm up
                print(
                    f"\nHTTP, 1 uvicorn worker, SQLite, {args.requests} requests, "
                    f"concurrency {args.concurrency} (client on the same 2 cores):"
                )
                for label, call in (
                    ("/healthz (bare Starlette floor)", healthz),
                    ("GraphQL Home", graphql),
                ):
                    rps, p50, p99, errors = await http_load(
                        client, args.requests, args.concurrency, call
                    )
                    print(
                        f"  {label:34} {rps:8.0f} req/s  p50 {p50:6.1f} ms  "
                        f"p99 {p99:6.1f} ms  errors {errors}"
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)

        # In-process execution against the same databases.
        from tortoise.context import TortoiseContext

        from config import load_settings, override_settings

        settings = replace(
            load_settings({}),
            community_db_url=env["COMMUNITY_DB_URL"],
            contacts_db_url=env["CONTACTS_DB_URL"],
        )
        override_settings(settings)
        async with TortoiseContext() as ctx:
            await ctx.init(config=settings.tortoise_config())
            from models.community import Session
            from resolvers.crypto import hash_token
            from schema.context import Context

            session = await Session.get(token_hash=hash_token(token)).prefetch_related("member")
            holder = {"context": Context(request=None, response=None, session=session)}  # type: ignore[arg-type]
            results = await in_process(holder, args.runs)
            await ctx.close_connections()
        print(f"\nIn-process schema.execute of Home on SQLite, median of 5 x {args.runs // 5}:")
        for label, micros in results.items():
            print(f"  {label:40} {micros:8.0f} us/op")

    from resolvers.passwords import HASHER

    hashed = HASHER.hash("correct horse battery staple")
    start = time.perf_counter()
    for _ in range(20):
        HASHER.verify(hashed, "correct horse battery staple")
    print(
        f"\nargon2id verify (m=19 MiB, t=2, p=1): "
        f"{(time.perf_counter() - start) / 20 * 1000:.1f} ms per sign-in"
    )


if __name__ == "__main__":
    asyncio.run(main())
