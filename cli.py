"""The ``community`` command line: serve, migrate, staff accounts, rules, mail.

Every command reads the same environment variables as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import tomllib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tortoise.context import TortoiseContext

from config import ConfigError, Settings, get_settings

DEFAULT_RULES = Path(__file__).parent / "resolvers" / "data" / "rules-default.toml"


@asynccontextmanager
async def database_and_bus(settings: Settings) -> AsyncIterator[None]:
    """Open both registers and the bus for one command, and close them after."""
    from subscriptions.bus import Bus, set_bus

    async with TortoiseContext() as ctx:
        await ctx.init(config=settings.tortoise_config())
        bus = Bus(settings.broadcast_url, settings.channel_prefix)
        await bus.connect()
        set_bus(bus)
        try:
            yield
        finally:
            set_bus(None)
            await bus.disconnect()
            await ctx.close_connections()


async def run_migrations(settings: Settings) -> None:
    """Apply every pending migration of both registers (idempotent)."""
    from tortoise.migrations.api import migrate

    async with TortoiseContext():
        await migrate(config=settings.tortoise_config())


async def make_migrations(settings: Settings) -> list[str]:
    from tortoise.migrations.autodetector import MigrationAutodetector

    config = settings.tortoise_config()
    async with TortoiseContext() as ctx:
        await ctx.init(config=config, init_connections=False)
        assert ctx.apps is not None
        written: list[str] = await MigrationAutodetector(ctx.apps, config["apps"]).write()
        return written


def read_rules_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read rules: {exc}") from None
    missing = [lang for lang in ("fi", "sv", "en") if not str(data.get(lang, "")).strip()]
    if missing:
        raise SystemExit(
            f"{path}: needs non-empty fi, sv and en texts (missing: {', '.join(missing)})"
        )
    return {lang: str(data[lang]).strip() for lang in ("fi", "sv", "en")}


async def publish_rules(settings: Settings, path: Path, only_if_none: bool) -> str:
    from resolvers.rules import current_rules, do_publish_rules

    texts = read_rules_file(path)
    async with database_and_bus(settings):
        if only_if_none and await current_rules() is not None:
            return "rules already published; nothing to do"
        version = await do_publish_rules(None, texts["fi"], texts["sv"], texts["en"])
        return f"published rules version {version.version} (id {version.id})"


async def create_staff(
    settings: Settings, role: str, login: str, display: str, password: str
) -> str:
    from resolvers.accounts import do_create_staff
    from resolvers.errors import UserError

    async with database_and_bus(settings):
        try:
            member = await do_create_staff(role, login, display, password)
        except UserError as exc:
            raise SystemExit(f"{exc.code.value}: {exc.message('en')}") from None
        return f"created {member.role.value} {member.login_name!r} (member id {member.id})"


async def mail_worker(settings: Settings, once: bool) -> str:
    from resolvers.mail import MailWorker

    async with database_and_bus(settings):
        worker = MailWorker(settings)
        if once:
            return f"delivered {await worker.deliver_due()} messages"
        await worker.run(asyncio.Event())
    return "stopped"


async def purge_bans(settings: Settings) -> str:
    from resolvers.sanctions import purge_ended_bans

    async with database_and_bus(settings):
        return f"erased {await purge_ended_bans()} banned members after their legal hold"


async def research_job(settings: Settings) -> str:
    from resolvers.studies import run_research_job

    async with database_and_bus(settings):
        done = await run_research_job()
        emails, reminders = done["invitation_emails"], done["reminders"]
        return f"queued {emails} invitation emails, sent {reminders} reminders"


async def lifecycle(settings: Settings, dry_run: bool) -> str:
    from resolvers.lifecycle import run_lifecycle

    async with database_and_bus(settings):
        report = await run_lifecycle(dry_run=dry_run)
    prefix = "would do (dry run)" if dry_run else "done"
    return (
        prefix + ": " + ", ".join(f"{k} {v}" for k, v in report.as_dict().items() if k != "dry_run")
    )


def serve(settings: Settings, host: str, port: int, workers: int, migrate: bool) -> None:
    import uvicorn

    from ops.logs import configure

    configure(settings.log_format, settings.log_level)
    if migrate:
        asyncio.run(run_migrations(settings))
    uvicorn.run(
        "app:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=settings.trust_proxy_headers,
        ws="websockets-sansio",
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
        log_config=None,  # ours (ops.logs): request ids, JSON lines, no personal data
        log_level=settings.log_level.lower(),
        # Access lines name client addresses: off unless debugging.
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )


def list_documents(settings: Settings) -> str:
    from schema.documents import DocumentStore

    store = DocumentStore(settings.documents_dir or None)
    return "\n".join(
        f"{key}  {store.names[key]}"
        for key in sorted(store.documents, key=lambda k: store.names[k])
    )


def export_schema(path: Path) -> str:
    from schema import sdl

    path.write_text(sdl())
    return f"wrote {path}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="community", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="apply migrations and serve the community")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    p.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")

    commands.add_parser("migrate", help="apply pending schema migrations to both registers")
    commands.add_parser("makemigrations", help="write migrations for model changes (developers)")

    p = commands.add_parser("create-staff", help="create a moderator, researcher or admin account")
    p.add_argument("--role", required=True, choices=["moderator", "researcher", "admin"])
    p.add_argument("--login", required=True, help="login name")
    p.add_argument("--display-name", required=True, help="public display name")
    p.add_argument(
        "--password-env",
        default="STAFF_PASSWORD",
        help="environment variable holding the password (else it is asked for)",
    )

    p = commands.add_parser("publish-rules", help="publish a rules version from a TOML file")
    p.add_argument("file", type=Path, nargs="?", default=DEFAULT_RULES)
    p.add_argument("--if-none", action="store_true", help="only if no version exists yet")

    p = commands.add_parser("mail-worker", help="deliver the email outbox (for scale-out)")
    p.add_argument("--once", action="store_true", help="deliver what is due and exit")

    commands.add_parser("purge-bans", help="erase banned members whose legal-hold period has ended")
    p = commands.add_parser(
        "lifecycle",
        help="warn and end inactive memberships, purge bans, old mail, sessions, tokens",
    )
    p.add_argument("--dry-run", action="store_true", help="report what it would do, change nothing")
    commands.add_parser(
        "research-job", help="queue pending study invitation emails and send due reminders"
    )
    p = commands.add_parser("export-schema", help="write the GraphQL SDL")
    p.add_argument("file", type=Path, nargs="?", default=Path("schema.graphql"))
    commands.add_parser("documents", help="list the persisted documents and their ids")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    jobs: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
        "migrate": lambda: run_migrations(settings),
        "makemigrations": lambda: make_migrations(settings),
        "publish-rules": lambda: publish_rules(settings, args.file, args.if_none),
        "mail-worker": lambda: mail_worker(settings, getattr(args, "once", False)),
        "purge-bans": lambda: purge_bans(settings),
        "research-job": lambda: research_job(settings),
        "lifecycle": lambda: lifecycle(settings, getattr(args, "dry_run", False)),
    }
    if args.command == "serve":
        serve(settings, args.host, args.port, args.workers, not args.no_migrate)
        return 0
    if args.command == "export-schema":
        print(export_schema(args.file))
        return 0
    if args.command == "documents":
        print(list_documents(settings))
        return 0
    if args.command == "create-staff":
        password = os.environ.get(args.password_env) or getpass.getpass("Password: ")
        result: Any = asyncio.run(
            create_staff(settings, args.role, args.login, args.display_name, password)
        )
    else:
        result = asyncio.run(jobs[args.command]())
    if result is not None:
        print(result if isinstance(result, str) else "\n".join(map(str, result)) or "no changes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
