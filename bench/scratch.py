"""A scratch community for in-process benchmarks: both registers migrated, Tortoise open,
an in-memory bus; PostgreSQL databases of its own (dropped afterwards) or SQLite files."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

PG = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432")


@contextlib.asynccontextmanager
async def scratch_community(backend: str, **overrides: Any) -> AsyncIterator[Any]:
    """Yields the settings in force; everything is torn down on exit."""
    from tortoise.context import TortoiseContext

    from cli import run_migrations
    from config import load_settings, override_settings
    from subscriptions.bus import Bus, set_bus

    run_id = f"bench_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp())
    admin_conn = None
    if backend == "postgres":
        admin_conn = await asyncpg.connect(f"{PG}/postgres")
        for name in ("community", "contacts"):
            await admin_conn.execute(f'CREATE DATABASE "{run_id}_{name}"')
        urls = (f"{PG}/{run_id}_community", f"{PG}/{run_id}_contacts")
    else:
        urls = (f"sqlite://{tmp}/community.sqlite3", f"sqlite://{tmp}/contacts.sqlite3")
    settings = replace(
        load_settings({"COMMUNITY_ENV": "test"}),
        community_db_url=urls[0],
        contacts_db_url=urls[1],
        mail_dir=str(tmp / "mail"),
        **overrides,
    )
    override_settings(settings)
    bus = Bus("memory://")
    try:
        await run_migrations(settings)
        await bus.connect()
        set_bus(bus)
        async with TortoiseContext() as ctx:
            await ctx.init(config=settings.tortoise_config())
            try:
                yield settings
            finally:
                await ctx.close_connections()
    finally:
        await bus.disconnect()
        set_bus(None)
        override_settings(None)
        if admin_conn is not None:
            for name in ("community", "contacts"):
                await admin_conn.execute(f'DROP DATABASE IF EXISTS "{run_id}_{name}" WITH (FORCE)')
            await admin_conn.close()
