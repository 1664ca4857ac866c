"""The exported SDL (schema.graphql) must match the schema the server builds."""

from __future__ import annotations

from pathlib import Path

from schema import sdl

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_is_up_to_date() -> None:
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == sdl(), "schema.graphql drifted: run `make schema` and commit it"
