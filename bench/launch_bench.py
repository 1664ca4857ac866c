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
import time
from datetime import timedelta
from typing import Any


async def run(args: argparse.Namespace) -> None:
    from bench.discussions_bench import make_members
    from bench.scratch import scratch_community
    from models.community import Notification
    from models.contacts import Contact, OutboxMessage
    from models.research import Invitation, Question, QuestionKind, Study, StudyKind
    from resolvers import accounts, clock, crypto, rules, studies

    async with scratch_community(args.backend, mail_worker=False):
        version = await rules.do_publish_rules(None, "fi", "sv", "en")
        researcher = await accounts.do_create_staff(
            "researcher", "benchres", "Bench Researcher", "correct horse battery"
        )
        people = await make_members(version, args.members)
        await Contact.bulk_create(
            [
                Contact(
                    email_ciphertext=crypto.encrypt(f"bench{p.id}@example.com", "contact-email"),
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
