"""Benchmark of the post check pipeline: what the automatic checks add to every write.

    .venv/bin/python -m bench.checks_bench [--posts 400] [--words 200] [--backend postgres|sqlite]

In-process, on a fresh database of its own (PostgreSQL on 127.0.0.1 by
default, as the tests use; dropped afterwards): members write posts with
``do_add_post`` (the whole write: transaction, row locks, event log,
moderators' feed) in alternating rounds

- baseline: the pipeline emptied (no checks at all), and
- checks: the full pipeline, with ``--words`` banned and as many suspect
  phrases on the moderators' lists,

and prints p50/p99 per write and writes per second for both, plus the
personal-data detector alone per text. Texts are realistic Finnish posts with
dates, times, amounts and now and then a link. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from typing import Any

TEXTS = [
    "Kävin eilen toimistolla klo 12.30 ja jonotin 45 minuuttia. Onko muilla samaa kokemusta?",
    "Hakemus lähti 1.5.2024 ja päätös tuli vasta kolmen kuukauden päästä, 312 euroa takautuvasti.",
    "Verkkopalvelussa lomake kaatui kahdesti, lopulta soitin palvelunumeroon ja asia hoitui.",
    "Kiitos vinkistä! Ohjeet löytyivät lopulta sivulta www.example.fi/ohjeet, vaikka haku ei auttanut.",
    "Mielestäni chatbot vastasi ihan järkevästi, mutta ihmisen kanssa asiointi oli nopeampaa.",
    "Vuonna 2023 sain saman päätöksen 14 päivässä, nyt odotus on ollut jo 6 viikkoa.",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    from bench.discussions_bench import make_members
    from bench.scratch import scratch_community
    from models.moderation import ModerationWord, WordListKind
    from resolvers import accounts, discussions, postchecks, rules

    async with scratch_community(
        args.backend,
        posts_per_minute=1_000_000,
        posts_per_hour=1_000_000,
        repeat_post_minutes=24 * 60,
        new_member_link_posts=3,
    ):
        version = await rules.do_publish_rules(None, "fi", "sv", "en")
        admin = await accounts.do_create_staff(
            "admin", "benchops", "Bench Staff", "correct horse battery"
        )
        people = await make_members(version, 20)
        for i in range(args.words):
            await ModerationWord.create(kind=WordListKind.BANNED, phrase=f"kielletty{i}")
            await ModerationWord.create(kind=WordListKind.SUSPECT, phrase=f"epäilyttävä{i}*")
        area = await discussions.do_create_area(
            admin, {"fi": "Alue", "sv": "Område", "en": "Area"}, {}, None, True
        )
        first = await discussions.do_start_thread(admin, area.id, "Bench", "Hei", "bench-start-0")
        thread_id = first.thread_id  # type: ignore[attr-defined]
        full = list(postchecks.PIPELINE)
        timings: dict[str, list[float]] = {"baseline": [], "checks": []}
        serial = 0
        rounds = 8
        per_round = max(1, args.posts // rounds)
        for r in range(rounds * 2):
            mode = "baseline" if r % 2 == 0 else "checks"
            postchecks.PIPELINE[:] = [] if mode == "baseline" else full
            for _ in range(per_round):
                serial += 1
                author = people[serial % len(people)]
                text = f"{TEXTS[serial % len(TEXTS)]} ({serial})"
                start = time.perf_counter()
                await discussions.do_add_post(author, thread_id, text, f"bench-{serial:08d}")
                timings[mode].append(time.perf_counter() - start)
        postchecks.PIPELINE[:] = full
    detector = []
    for i in range(2000):
        text = TEXTS[i % len(TEXTS)]
        start = time.perf_counter()
        postchecks.find_personal_data(text)
        detector.append(time.perf_counter() - start)

    cpu = platform.processor() or platform.machine()
    print(f"# post check pipeline, {args.backend}, {os.cpu_count()} cores ({cpu})")
    print(f"# {len(timings['checks'])} writes each, {args.words} banned + {args.words} suspect")
    print("| writes | p50 ms | p99 ms | writes/s (sequential) |")
    print("|---|---|---|---|")
    for mode, values in timings.items():
        total = sum(values)
        print(
            f"| {mode} | {statistics.median(values) * 1000:.2f} | "
            f"{percentile(values, 99) * 1000:.2f} | {len(values) / total:.0f} |"
        )
    print(
        f"personal-data detector alone: {statistics.median(detector) * 1e6:.0f} µs per text "
        f"(p99 {percentile(detector, 99) * 1e6:.0f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args: Any = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
