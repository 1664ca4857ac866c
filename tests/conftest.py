"""Test harness: a real uvicorn server in the test's event loop, real databases,
a real SMTP server (aiosmtpd), and the real broadcast bus.

``COMMUNITY_TEST_DB=sqlite`` (default) runs on two SQLite files and the
in-memory bus; ``COMMUNITY_TEST_DB=postgres`` creates two fresh PostgreSQL
databases and uses Redis with a unique channel prefix, and drops the
databases afterwards. Under CI (``CI=true``) an unreachable PostgreSQL or
Redis fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn

from config import Settings, load_settings, override_settings
from resolvers import clock
from tests import dbtools
from tests.smtp import SmtpServer

# Every log record of the run is scanned for email addresses and identity codes.
pytest_plugins = ["tests.logcheck"]

BACKEND = os.environ.get("COMMUNITY_TEST_DB", "sqlite")
PG_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RULES_TEXT = {"fi": "Säännöt 1", "sv": "Regler 1", "en": "Rules 1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """The running community server and its surroundings."""

    url: str
    ws_url: str
    settings: Settings
    smtp: SmtpServer
    http: httpx.AsyncClient

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a GraphQL operation; asserts HTTP 200 and returns the JSON body."""
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def _create_pg_databases(names: list[str]) -> None:
    conn = await asyncpg.connect(f"{PG_DSN}/postgres", timeout=5)
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_pg_databases(names: list[str]) -> None:
    conn = await asyncpg.connect(f"{PG_DSN}/postgres", timeout=5)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _redis_reachable() -> bool:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


def make_settings(tmp: Path, smtp_port: int, run_id: str) -> Settings:
    base = load_settings({"COMMUNITY_ENV": "test"})
    if BACKEND == "postgres":
        community = f"{PG_DSN}/{run_id}_community"
        contacts = f"{PG_DSN}/{run_id}_contacts"
        broadcast = REDIS_URL
    else:
        community = f"sqlite://{tmp}/community.sqlite3"
        contacts = f"sqlite://{tmp}/contacts.sqlite3"
        broadcast = "memory://"
    return replace(
        base,
        community_db_url=community,
        contacts_db_url=contacts,
        broadcast_url=broadcast,
        channel_prefix=f"{run_id}:",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        mail_poll_seconds=0.2,
        mail_dir=str(tmp / "mail"),
        public_base_url="https://community.test",
        # Links from new members are held, and repeated texts refused, by default;
        # most tests post links and the same texts freely (test_checks turns both on).
        new_member_link_posts=0,
        repeat_post_minutes=0,
        # The suite sends far more study mail than a minute's real allowance;
        # test_study_participation drives a throttled worker of its own.
        mail_bulk_per_minute=100_000,
    )


async def start_server(
    settings: Settings, attach: bool = False
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve the app in this process; ``attach=True`` for a second server (other limits)
    on the databases and bus the session's server has open."""
    from app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, attach=attach),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    assert server.started, "server did not start"
    return server, task, port


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    from cli import run_migrations

    tmp = tmp_path_factory.mktemp("community")
    run_id = f"ctest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    smtp = SmtpServer()
    smtp.start()
    settings = make_settings(tmp, smtp.port, run_id)
    pg_names = [f"{run_id}_community", f"{run_id}_contacts"]
    if BACKEND == "postgres":
        # Under CI a missing service fails the run; on a laptop it skips the PostgreSQL pass.
        unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
        try:
            await _create_pg_databases(pg_names)
        except (OSError, asyncpg.PostgresError) as exc:
            smtp.stop()
            unavailable(f"PostgreSQL is required for COMMUNITY_TEST_DB=postgres: {exc}")
        if not await _redis_reachable():
            smtp.stop()
            await _drop_pg_databases(pg_names)
            unavailable(f"Redis is required for COMMUNITY_TEST_DB=postgres at {REDIS_URL}")
    override_settings(settings)
    try:
        await run_migrations(settings)
        uv, task, port = await start_server(settings)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Server(
                url=f"http://127.0.0.1:{port}",
                ws_url=f"ws://127.0.0.1:{port}/graphql",
                settings=settings,
                smtp=smtp,
                http=http,
            )
        uv.should_exit = True
        await task
    finally:
        override_settings(None)
        smtp.stop()
        if BACKEND == "postgres":
            await _drop_pg_databases(pg_names)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test starts from empty registers with rules version 1 published."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: Server = request.getfixturevalue("server")
    from resolvers.postchecks import forget_word_lists
    from resolvers.rules import do_publish_rules

    clock.reset()
    override_settings(srv.settings)
    for name in ("community", "contacts"):
        await dbtools.truncate_all(name)
    forget_word_lists()  # the worker's cached word lists belong to the emptied database
    srv.smtp.clear()
    await do_publish_rules(None, RULES_TEXT["fi"], RULES_TEXT["sv"], RULES_TEXT["en"])
    yield
    clock.reset()
    override_settings(srv.settings)


def pytest_report_header(config: pytest.Config) -> str:
    return f"community test backend: {BACKEND}"
