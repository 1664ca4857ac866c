"""Benchmark of launching a study: invitations, notices and invitation mail for N members.

    .venv/bin/python -m bench.launch_bench [--members 2000] [--backend postgres|sqlite]

In-process, on a fresh database of its own (PostgreSQL on 127.0.0.1 by
default; dropped afterwards). N members with contacts are written straight
into the database, then a survey targeting everyone is launched with
``do_launch`` (selection, one invitation and one in-app notice per member in
one transaction, then the invitation mail queued through the operator path
in batches). The baseline, in the same run, is the floor of the same rows:
a bulk insert of N invitation rows and N notification rows for another
study. Prints seconds and members per second; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

PG = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432")


async def run(args: argparse.Namespace) -> None:
    from tortoise.context import TortoiseContext

    from bench.discussions_bench import make_members
    from cli import run_migrations
    from config import load_settings, override_settings
    from models.community import Notification
    from models.contacts import Contact, OutboxMessage
    from models.research import Invitation, Question, QuestionKind, Study, StudyKind
    from resolvers import accounts, clock, crypto, rules, studies
    from subscriptions.bus import Bus, set_bus

    run_id = f"bench_launch_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp())
    if args.backend == "postgres":
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
        mail_worker=False,
    )
    override_settings(settings)
    await run_migrations(settings)
    bus = Bus("memory://")
    await bus.connect()
    set_bus(bus)
    try:
        async with TortoiseContext() as ctx:
            await ctx.init(config=settings.tortoise_config())
            version = await rules.do_publish_rules(None, "fi", "sv", "en")
            researcher = await accounts.do_create_staff(
                "researcher", "benchres", "Bench Researcher", "correct horse battery"
            )
            people = await make_members(version, args.members)
            await Contact.bulk_create(
                [
                    Contact(
                        email_ciphertext=crypto.encrypt(
                            f"bench{p.id}@example.com", "contact-email"
                        ),
                        email_index=crypto.email_index(f"bench{p.id}@example.com"),
                        birth_year=1980,
                        language="fi",
                        member_index=crypto.member_index(p.id),
                        member_seal=crypto.seal_member(p.id),
                        created_at=clock.today(),
                    )
                    for p in people
                ],
                batch_size=500,
            )
            now = clock.now()
            fields: dict[str, Any] = {f"title_{lang}": "Bench" for lang in ("fi", "sv", "en")} | {
                "kind": StudyKind.SURVEY,
                "opens_at": now - timedelta(minutes=1),
                "closes_at": now + timedelta(days=7),
                "target": {"everyone": True},
            }
            baseline_study = await Study.create(**fields)
            study = await Study.create(**fields)
            await Question.create(
                study=study,
                position=1,
                kind=QuestionKind.TEXT,
                text_fi="?",
                text_sv="?",
                text_en="?",
            )

            start = time.perf_counter()
            await Invitation.bulk_create(
                [
                    Invitation(study_id=baseline_study.id, member_id=p.id, invited_at=now)
                    for p in people
                ],
                batch_size=500,
            )
            await Notification.bulk_create(
                [Notification(member_id=p.id, kind="BENCH", params={}, position=0) for p in people],
                batch_size=500,
            )
            baseline = time.perf_counter() - start

            start = time.perf_counter()
            _, invited = await studies.do_launch(researcher, study.id)
            launched = time.perf_counter() - start
            mails = await OutboxMessage.filter(template="study_invitation").count()
            await ctx.close_connections()
    finally:
        await bus.disconnect()
        set_bus(None)
        override_settings(None)
        if args.backend == "postgres":
            for name in ("community", "contacts"):
                await admin_conn.execute(f'DROP DATABASE IF EXISTS "{run_id}_{name}" WITH (FORCE)')
            await admin_conn.close()

    cpu = platform.processor() or platform.machine()
    print(f"# study launch, {args.backend}, {os.cpu_count()} cores ({cpu}), {args.members} members")
    print("| | seconds | members/s |")
    print("|---|---|---|")
    print(
        f"| baseline: bulk insert of the invitation and notice rows | {baseline:.2f} | {args.members / baseline:.0f} |"
    )
    print(
        f"| launchStudy: selection, invitations, notices, {mails} mails queued | {launched:.2f} | {invited / launched:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
