"""Benchmark of concurrent posting: what one busy thread's row lock costs.

    .venv/bin/python -m bench.write_contention [--writers 8] [--posts 60] [--rounds 3]
        [--backend postgres|sqlite]

In-process, on a fresh database of its own (PostgreSQL on 127.0.0.1 by
default, dropped afterwards): ``--writers`` members post concurrently with
``do_add_post`` (the whole write: transaction, member and thread row locks,
event log, read position, moderators' feed), ``--posts`` posts each, in
alternating rounds

- baseline: each writer posts into a thread of its own (no two writes wait
  for the same thread row; the moderators' feed counter is still shared), and
- one thread: every writer posts into the same thread (every write waits for
  the thread row, which positions its event),

and prints writes per second and p50/p99 per write for both. The difference
is the time a write holds the thread row. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from typing import Any

from bench.checks_bench import TEXTS, percentile


async def run(args: argparse.Namespace) -> None:
    from bench.discussions_bench import make_members
    from bench.scratch import scratch_community
    from resolvers import accounts, discussions, rules

    async with scratch_community(
        args.backend,
        posts_per_minute=1_000_000,
        posts_per_hour=1_000_000,
        repeat_post_minutes=0,
        new_member_link_posts=0,
    ):
        version = await rules.do_publish_rules(None, "fi", "sv", "en")
        admin = await accounts.do_create_staff(
            "admin", "benchops", "Bench Staff", "correct horse battery"
        )
        people = await make_members(version, args.writers)
        area = await discussions.do_create_area(
            admin, {"fi": "Alue", "sv": "Område", "en": "Area"}, {}, None, True
        )
        threads = []
        for i in range(args.writers):
            first = await discussions.do_start_thread(
                admin, area.id, f"Bench {i}", "Hei", f"bench-start-{i}"
            )
            threads.append(first.thread_id)  # type: ignore[attr-defined]
        timings: dict[str, list[float]] = {"baseline": [], "one thread": []}
        rates: dict[str, list[float]] = {"baseline": [], "one thread": []}
        serial = 0

        async def writer(index: int, thread_id: int, mode: str) -> None:
            nonlocal serial
            for _ in range(args.posts):
                serial += 1
                text = f"{TEXTS[serial % len(TEXTS)]} ({serial})"
                start = time.perf_counter()
                await discussions.do_add_post(people[index], thread_id, text, f"bench-{serial:08d}")
                timings[mode].append(time.perf_counter() - start)

        for r in range(args.rounds * 2):
            mode = "baseline" if r % 2 == 0 else "one thread"
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    writer(i, threads[i] if mode == "baseline" else threads[0], mode)
                    for i in range(args.writers)
                )
            )
            rates[mode].append(args.writers * args.posts / (time.perf_counter() - start))

    cpu = platform.processor() or platform.machine()
    print(
        f"# concurrent posting, {args.backend}, {os.cpu_count()} cores ({cpu}); "
        f"{args.writers} writers x {args.posts} posts, {args.rounds} rounds each"
    )
    print("| posting into | writes/s per round | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for mode, values in timings.items():
        print(
            f"| {mode} | {' / '.join(f'{x:.0f}' for x in rates[mode])} | "
            f"{statistics.median(values) * 1000:.1f} | {percentile(values, 99) * 1000:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--posts", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args: Any = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
