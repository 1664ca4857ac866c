"""Raw access to both registers for tests: list tables, dump text, truncate."""

from __future__ import annotations

from typing import Any

from tortoise.connection import get_connection

SKIP = ("tortoise_migrations",)


def dialect(name: str) -> str:
    return str(get_connection(name).capabilities.dialect)


async def list_tables(name: str) -> list[str]:
    conn = get_connection(name)
    if dialect(name) == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        return [r["name"] for r in await conn.execute_query_dict(sql)]
    sql = (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE'"
    )
    return [r["table_name"] for r in await conn.execute_query_dict(sql)]


async def all_rows(name: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of one register (for privacy dumps)."""
    conn = get_connection(name)
    out: dict[str, list[dict[str, Any]]] = {}
    for table in await list_tables(name):
        out[table] = [dict(r) for r in await conn.execute_query_dict(f'SELECT * FROM "{table}"')]
    return out


async def text_values(name: str) -> list[str]:
    """Every value of one register rendered as text (bytes decoded leniently)."""
    values: list[str] = []
    for rows in (await all_rows(name)).values():
        for row in rows:
            for value in row.values():
                if value is None:
                    continue
                if isinstance(value, bytes | bytearray | memoryview):
                    values.append(bytes(value).decode("latin-1"))
                else:
                    values.append(str(value))
    return values


async def truncate_all(name: str) -> None:
    conn = get_connection(name)
    tables = [t for t in await list_tables(name) if t not in SKIP]
    if not tables:
        return
    if dialect(name) == "postgres":
        quoted = ", ".join(f'"{t}"' for t in tables)
        await conn.execute_script(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        return
    statements = ["PRAGMA foreign_keys = OFF", *[f'DELETE FROM "{t}"' for t in tables]]
    if "sqlite_sequence" in [
        r["name"] for r in await conn.execute_query_dict("SELECT name FROM sqlite_master")
    ]:
        statements.append("DELETE FROM sqlite_sequence")
    statements.append("PRAGMA foreign_keys = ON")
    await conn.execute_script(";".join(statements) + ";")


async def count(name: str, table: str) -> int:
    conn = get_connection(name)
    rows = await conn.execute_query_dict(f'SELECT COUNT(*) AS n FROM "{table}"')
    return int(rows[0]["n"])
