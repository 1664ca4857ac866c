"""Migration operations of our own, shared by the migration files."""

from __future__ import annotations

from tortoise.migrations import operations as ops


class AlterFieldStateOnly(ops.AlterField):
    """Only an enum's choices (the column description) changed: no DDL.

    Tortoise 1.1.9 applies AlterField on SQLite by rebuilding the table, and
    the rebuilt table loses its unique constraints and indexes (post's
    (author, client_key) uniqueness among them), so these alters update the
    migration state only.
    """

    async def database_forward(self, *args: object, **kwargs: object) -> None:
        return None

    async def database_backward(self, *args: object, **kwargs: object) -> None:
        return None
