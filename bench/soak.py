"""Soak: bounded mixed traffic on two community workers, with errors, delivery and memory.

    .venv/bin/python -m bench.soak --seconds 300 --members 40 --subscribers 100 [--rate 15]
        [--json soak.json]

Needs PostgreSQL and Redis on 127.0.0.1 (as the tests do). It creates its own
scratch databases (``bench.scratch``), seeds them in-process (an admin, a
moderator, members who accepted the rules, with sessions written straight
into the database; areas, threads and posts), then starts two ``community
serve`` processes on those databases and the shared Redis under a channel
prefix of its own, and:

1. baseline: 10 s of bare ``/healthz`` at the same concurrency as the soak
   (one closed-loop client per load client, no think time), then 10 s of
   ``/healthz`` paced at the soak's offered rate;
2. soak: ``--members`` member clients and one moderator client, spread over
   both workers, each a Poisson arrival process (think time) so that the
   offered rate is bounded (``--rate`` requests/s in all): reads (thread
   list, a thread page of 20 posts with names and reactions, unreadThreads,
   notifications) about 70 %, posts and replies 15 %, reactions 10 %,
   moderation 5 % (members reporting posts, the moderator reading the queues,
   approving or removing what was reported, locking and unlocking a thread).
   Meanwhile ``--subscribers`` websockets follow ``threadEvents`` of the
   threads, five follow members' ``notifications`` and three the moderator's
   ``moderationFeed``;
3. checks and report: throughput, p50/p99 latency and errors per kind of
   operation (an error is a non-200 answer, a GraphQL error, or a typed error
   that should not happen: every distinct message is printed once); every
   subscription is compared with the database (every event after its start
   position exactly once, in order; every acknowledged post exactly once);
   the workers' RSS and CPU every 10 s, and RSS growth from the end of the
   warm-up to the end and over the second half (the bounded caches fill in
   the first minutes; a leak keeps growing after). ``--json`` also writes the
   report as JSON.

Writes stay inside the per-member post limits of ``config.py``: posts are
spread over enough members (more than ``--members`` when the offered post
rate needs it), each posting at most ``POSTS_PER_MINUTE - 1`` a minute and
``POSTS_PER_HOUR - 2`` an hour; every text is new (the repeat check) and has
no digits (the personal-data check). A post to a thread while a moderator
holds it locked is refused with THREAD_LOCKED: that refusal is expected (and
counted apart) only when the request overlapped a lock.

Exits 1 when any request failed, any subscription lost, repeated or reordered
an event, the databases disagree with what the clients were told, or a
worker logged an error; 0 otherwise. The workers are always stopped and the
databases dropped (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.discussions_bench import REDIS, ROOT, free_port, make_members, percentile, wait_up
from bench.scratch import scratch_community

SAMPLE_SECONDS = 10.0
DRAIN_SECONDS = 30.0  # how long subscribers may take to catch up after the load
LOCK_EVERY = 40.0  # the moderator locks the first thread this often...
LOCK_FOR = 8.0  # ...for this long
MAX_OPEN_TARGETS = 8  # reported posts waiting for a decision, at most
NOTIFICATION_SUBSCRIBERS = 5
MODERATION_SUBSCRIBERS = 3
POSTS_PER_THREAD = 12  # seeded
MODERATOR_SHARE = 0.03
MEMBER_MIX = {  # share of the member clients' operations
    "read.threads": 12,
    "read.page": 35,
    "read.unread": 12,
    "read.notifications": 11,
    "write.post": 9,
    "write.reply": 6,
    "write.react": 10,
    "mod.report": 2,
}
KINDS = [*MEMBER_MIX, "mod.queue", "mod.decide", "mod.lock"]
CATEGORIES = ["SPAM_OR_TROLLING", "OFFENSIVE", "MISINFORMATION", "OTHER", "SELLING"]
REACTIONS = ["LIKE", "HEART", "HELPFUL", "LAUGH", "SAD"]
WORDS = (
    "palvelu asiakas kokemus jono ajanvaraus neuvonta lomake kysymys vastaus hyvä huono "
    "nopea hidas selkeä sekava tänään eilen toimisto verkossa sovellus päätös hakemus "
    "odotin kiitos mielestäni ehkä varmasti tjänst kö blankett svar snabb långsam "
    "service queue form answer helpful slow clear office online decision waited thanks"
).split()
EXTRAS = ["", "", "", " 🙂", " 👍🏽", "\n\nTerveisin", " **tärkeää**", " _ehkä_", " åäö"]

THREADS = """
query Threads($a: ID!) { node(id: $a) { ... on Area { id title threads(first: 20) { edges {
  node { id title postCount lastActivityAt locked pinned unreadCount startedBy { displayName } }
} } } } }
"""
PAGE = """
query Page($t: ID!) { node(id: $t) { ... on Thread { id title locked lastPosition readPosition
  posts(first: 20) { edges { node { id body bodyHtml depth parentId createdAt editedAt removed
    pending isMine author { displayName staffBadge } reactions { kind count reactedByMe } } }
    pageInfo { hasNextPage endCursor } } } } }
"""
UNREAD = (
    "query Unread { unreadThreads(first: 20) { unreadCount thread { id title lastActivityAt } } }"
)
NOTIFICATIONS = """
query Notices { notifications(first: 20) { edges { node { id position kind subjectId read createdAt } }
  pageInfo { hasNextPage } } }
"""
ADD_POST = """
mutation AddPost($i: AddPostInput!) { addPost(input: $i) { __typename
  ... on PostSuccess { post { id depth threadId } } ... on Error { code message } } }
"""
REACT = """
mutation React($i: ReactInput!) { react(input: $i) { __typename
  ... on PostSuccess { post { id reactions { kind count reactedByMe } } } ... on Error { code message } } }
"""
REPORT = """
mutation Report($i: ReportPostInput!) { reportPost(input: $i) { __typename
  ... on ReportPostSuccess { reported } ... on Error { code message } } }
"""
QUEUE_ITEM = "post { id pending removed } openReports heldReason decision reportsByCategory { category count }"
QUEUE = f"""
query Queue {{ reported: moderationQueue(queue: REPORTED, first: 50) {{ edges {{ node {{ {QUEUE_ITEM} }} }} }}
  held: moderationQueue(queue: HELD, first: 50) {{ edges {{ node {{ {QUEUE_ITEM} }} }} }} }}
"""
MODERATE_POST = """
mutation Decide($i: ModeratePostInput!) { moderatePost(input: $i) { __typename
  ... on ModeratePostSuccess { applied post { id removed pending } } ... on Error { code message } } }
"""
MODERATE_THREAD = """
mutation Lock($i: ModerateThreadInput!) { moderateThread(input: $i) { __typename
  ... on ModerateThreadSuccess { applied thread { id locked } } ... on Error { code message } } }
"""
THREAD_EVENTS = """
subscription Events($t: ID!, $after: Int) { threadEvents(threadId: $t, after: $after) {
  position kind post { id body depth parentId author { displayName } reactions { kind count reactedByMe } } } }
"""
NOTIFICATION_FEED = (
    "subscription Notices($after: Int) { notifications(after: $after) { position kind subjectId } }"
)
MODERATION_FEED = """
subscription Feed($after: Int) { moderationFeed(after: $after) { position kind at post { id pending }
  member { displayName } actor { displayName } category decision action reports } }
"""
FIELDS = {
    "thread": "threadEvents",
    "notifications": "notifications",
    "moderation": "moderationFeed",
}


# ---------------------------------------------------------------- state


@dataclass
class Ident:
    """A signed-in account: one HTTP session token, its post times and reports filed."""

    index: int
    member_id: int
    token: str
    post_times: deque[float] = field(default_factory=deque)
    busy: bool = False
    reports: int = 0


@dataclass
class PostRec:
    gid: str
    db_id: int
    thread: int  # index into Soak.threads
    author: int  # Ident.index
    depth: int
    reportable: bool  # reportable posts are never replied to or reacted to (they may vanish)
    started: float  # perf_counter when the write was sent
    acked: float
    targeted: bool = False


@dataclass
class Target:
    """A reportable post that `wanted` distinct members report; then the moderator decides."""

    post: PostRec
    wanted: int
    category: str
    issued: set[int] = field(default_factory=set)
    done: int = 0
    ready_at: float | None = None
    decided: bool = False
    failed: bool = False


@dataclass
class LockWindow:
    lock_sent: float
    lock_acked: float | None = None
    unlock_sent: float | None = None
    unlock_acked: float | None = None


@dataclass
class Stream:
    """One websocket with one subscription, and everything it received."""

    name: str
    kind: str  # thread | notifications | moderation
    worker: int
    token: str
    after: int
    thread: int | None = None  # index into Soak.threads
    member_id: int | None = None
    events: list[tuple[int, str, str | None, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    http: httpx.AsyncClient
    ps: psutil.Process


class Recorder:
    """Latency samples, errors and expected refusals per kind of operation."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (start, seconds)
        self.errors: Counter[str] = Counter()
        self.messages: Counter[tuple[str, str]] = Counter()
        self.refusals: Counter[tuple[str, str]] = Counter()
        self.substituted: Counter[str] = Counter()

    def error(self, kind: str, message: str) -> None:
        """Count an error; messages differing only in numbers are one distinct message."""
        self.errors[kind] += 1
        self.messages[(kind, re.sub(r"(?<!HTTP )\b\d+\b", "N", message[:300]))] += 1


def _die_with_parent() -> None:
    """Run in the worker's child process: SIGTERM it if the bench dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def letters(n: int) -> str:
    """A digit-free unique word for `n` (texts must not look like phone numbers)."""
    out = ""
    n += 26 * 26
    while n:
        n, r = divmod(n, 26)
        out = chr(ord("a") + r) + out
    return out


def gid(type_name: str, row_id: int) -> str:
    from strawberry.relay import GlobalID

    return str(GlobalID(type_name, str(row_id)))


def db_id(global_id: str) -> int:
    from strawberry.relay import GlobalID

    return int(GlobalID.from_id(global_id).node_id)


def posting_members(
    members: int, seconds: float, post_rate: float, per_min: int, per_hour: int
) -> int:
    """Members needed to carry `post_rate` for `seconds` within the per-member limits."""
    per_member = min(per_min * seconds / 60, per_hour * math.ceil(seconds / 3600))
    needed = math.ceil(post_rate * seconds / max(per_member, 1) * 1.3)
    # And at any moment: a minute's posts over members who may post `per_min` a minute.
    needed = max(needed, math.ceil(post_rate * 60 / per_min * 1.3))
    return max(members, needed)


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000 if values else 0.0


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args: argparse.Namespace, settings: Any) -> None:
        self.args = args
        self.settings = settings
        self.rng = random.Random(args.seed)
        self.rec = Recorder()
        self.workers: list[Worker] = []
        self.idents: list[Ident] = []
        self.moderator: Ident | None = None
        self.areas: list[str] = []
        self.threads: list[tuple[int, str]] = []  # (db id, global id)
        self.posts: list[PostRec] = []
        self.posts_by_gid: dict[str, PostRec] = {}
        self.acked: dict[int, set[int]] = defaultdict(set)  # thread index -> post db ids
        self.targets: list[Target] = []
        self.decidable: list[Target] = []
        self.locks: list[LockWindow] = []
        self.reacted: set[tuple[int, str, str]] = set()
        self.streams: list[Stream] = []
        self.closing = False
        self.t0 = 0.0
        self.deadline = 0.0
        self.offered = 0
        self.late = 0
        self.post_cursor = 0
        self.counter = itertools.count(1)
        self.per_min = max(1, settings.posts_per_minute - 1)
        self.per_hour = max(1, settings.posts_per_hour - 2)
        self.samples: list[dict[str, Any]] = []

    # ------------------------------------------------------------ setup

    async def seed(self, total_members: int) -> None:
        """Staff, members with sessions, areas, threads and posts (in-process, before the workers)."""
        from models.community import Session
        from models.discussions import ReactionKind
        from resolvers import accounts, clock, crypto, discussions, rules

        version = await rules.do_publish_rules(None, "fi", "sv", "en")
        admin = await accounts.do_create_staff(
            "admin", "soakkeeper", "Soak Keeper", "correct horse battery"
        )
        moderator = await accounts.do_create_staff(
            "moderator", "soakwarden", "Soak Warden", "correct horse battery"
        )
        people = await make_members(version, total_members)
        now = clock.now()
        rows: list[Any] = []

        def session(member_id: int) -> str:
            token = secrets.token_urlsafe(32)
            rows.append(
                Session(
                    member_id=member_id,
                    token_hash=crypto.hash_token(token),
                    last_seen_at=now,
                    expires_at=now + timedelta(days=30),
                )
            )
            return token

        self.idents = [Ident(i, p.id, session(p.id)) for i, p in enumerate(people)]
        self.moderator = Ident(-1, moderator.id, session(moderator.id))
        n_threads = self.args.threads
        for a in range(math.ceil(n_threads / 2)):
            area = await discussions.do_create_area(
                admin,
                {
                    "fi": f"Alue {letters(a)}",
                    "sv": f"Område {letters(a)}",
                    "en": f"Area {letters(a)}",
                },
                {"fi": "Keskustelua palveluista", "sv": "Diskussion", "en": "Discussion"},
                None,
                True,
            )
            self.areas.append(gid("Area", area.id))
            for t in range(2):
                if len(self.threads) == n_threads:
                    break
                first = await discussions.do_start_thread(
                    admin,
                    area.id,
                    f"Ketju {letters(a * 2 + t)}",
                    "Tervetuloa keskustelemaan.",
                    f"soak-start-{a}-{t}",
                )
                thread_id = first.thread_id  # type: ignore[attr-defined]
                self.threads.append((thread_id, gid("Thread", thread_id)))
        kinds = list(ReactionKind)
        author = 0
        for t, (thread_id, _) in enumerate(self.threads):
            parents: list[Any] = []
            for i in range(POSTS_PER_THREAD):
                ident = self.idents[author % len(self.idents)]
                author += 1
                parent = parents[-1] if parents and i % 3 == 2 and parents[-1].depth < 2 else None
                post = await discussions.do_add_post(
                    people[ident.index],
                    thread_id,
                    self.text(),
                    f"soak-seed-{t}-{i}",
                    parent.id if parent else None,
                )
                parents.append(post)
                ident.post_times.append(time.perf_counter())
                rec = PostRec(
                    gid("Post", post.id), post.id, t, ident.index, post.depth, False, 0.0, 0.0
                )
                self.posts.append(rec)
                self.posts_by_gid[rec.gid] = rec
                for j in range(i % 3):
                    reactor = people[(ident.index + j + 1) % len(people)]
                    await discussions.do_react(reactor, post.id, kinds[j], True)
        # Sessions for the websockets: one each.
        for s in range(self.args.subscribers):
            t = s % len(self.threads)
            owner = self.idents[s % min(len(self.idents), self.args.members)]
            self.streams.append(
                Stream(
                    f"thread{s}",
                    "thread",
                    (s // len(self.threads)) % 2,
                    session(owner.member_id),
                    0,
                    t,
                )
            )
        for s in range(NOTIFICATION_SUBSCRIBERS):
            owner = self.idents[s]
            stream = Stream(f"notices{s}", "notifications", s % 2, session(owner.member_id), 0)
            stream.member_id = owner.member_id
            self.streams.append(stream)
        for s in range(MODERATION_SUBSCRIBERS):
            self.streams.append(
                Stream(f"modfeed{s}", "moderation", s % 2, session(moderator.id), 0)
            )
        await Session.bulk_create(rows, batch_size=500)
        await self.set_start_positions()

    async def set_start_positions(self) -> None:
        from models.community import Notification
        from models.discussions import Thread
        from models.moderation import ModerationCounter

        last = {t.id: t.last_position for t in await Thread.all()}
        counter = await ModerationCounter.get_or_none(id=1)
        for stream in self.streams:
            if stream.kind == "thread":
                assert stream.thread is not None
                stream.after = last[self.threads[stream.thread][0]]
            elif stream.kind == "notifications":
                newest = (
                    await Notification.filter(member_id=stream.member_id)
                    .order_by("-position")
                    .first()
                )
                stream.after = newest.position if newest else 0
            else:
                stream.after = counter.last_position if counter else 0

    def text(self) -> str:
        words = " ".join(self.rng.sample(WORDS, self.rng.randint(4, 14)))
        return f"{words.capitalize()} ({letters(next(self.counter))}){self.rng.choice(EXTRAS)}"

    async def start_workers(self, env: dict[str, str], log_dir: Path) -> None:
        command = str(Path(sys.executable).parent / "community")
        for name in ("A", "B"):
            port = free_port()
            log = log_dir / f"worker-{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [command, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            limits = httpx.Limits(max_connections=self.args.members + 20)
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits)
            self.workers.append(Worker(name, port, process, log, http, psutil.Process(process.pid)))
        for worker in self.workers:
            await wait_up(worker.port)
            for _ in range(300):
                if (await worker.http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(
                    f"worker {worker.name} not ready: {worker.log.read_text()[-2000:]}"
                )

    async def stop_workers(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.http.aclose()
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.process.wait, 20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait)

    # ------------------------------------------------------------ HTTP

    async def gql(
        self, kind: str, worker: int, token: str, query: str, variables: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, float, float]:
        """One GraphQL request, timed and checked; data (None on error), start and end."""
        client = self.workers[worker].http
        start = time.perf_counter()
        try:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            end = time.perf_counter()
            self.rec.samples[kind].append((start - self.t0, end - start))
            self.rec.error(kind, f"{type(exc).__name__}: {exc}")
            return None, start, end
        end = time.perf_counter()
        self.rec.samples[kind].append((start - self.t0, end - start))
        if response.status_code != 200:
            self.rec.error(kind, f"HTTP {response.status_code}: {response.text[:200]}")
            return None, start, end
        body = response.json()
        if body.get("errors"):
            first = body["errors"][0]
            code = (first.get("extensions") or {}).get("code", "")
            self.rec.error(kind, f"GraphQL error {code}: {first.get('message')}")
            return None, start, end
        data: dict[str, Any] = body["data"]
        return data, start, end

    def typed_error(self, kind: str, result: dict[str, Any]) -> None:
        self.rec.error(
            kind, f"{result['__typename']} {result.get('code')}: {result.get('message')}"
        )

    # ------------------------------------------------------------ member operations

    async def read(self, kind: str, ident: Ident, worker: int) -> None:
        if kind == "read.threads":
            data, _, _ = await self.gql(
                kind, worker, ident.token, THREADS, {"a": self.rng.choice(self.areas)}
            )
            if data is not None and not (data["node"] and data["node"]["threads"]["edges"]):
                self.rec.error(kind, "area or its threads missing")
        elif kind == "read.page":
            _, thread = self.rng.choice(self.threads)
            data, _, _ = await self.gql(kind, worker, ident.token, PAGE, {"t": thread})
            if data is not None and not (data["node"] and data["node"]["posts"]["edges"]):
                self.rec.error(kind, "thread or its posts missing")
        elif kind == "read.unread":
            await self.gql(kind, worker, ident.token, UNREAD, {})
        else:
            await self.gql(kind, worker, ident.token, NOTIFICATIONS, {})

    def acquire_poster(self) -> Ident | None:
        """A member with room under both post limits, taken round-robin; None if none has."""
        now = time.perf_counter()
        n = len(self.idents)
        for step in range(n):
            ident = self.idents[(self.post_cursor + step) % n]
            if ident.busy:
                continue
            while ident.post_times and ident.post_times[0] < now - 3605:
                ident.post_times.popleft()
            minute = sum(1 for t in ident.post_times if t > now - 62)
            if minute < self.per_min and len(ident.post_times) < self.per_hour:
                self.post_cursor = (self.post_cursor + step + 1) % n
                ident.busy = True
                return ident
        return None

    def pick_post(self, thread: int, parent: bool) -> PostRec | None:
        """A recent post others may reply or react to (never a reportable one)."""
        choices = [
            p
            for p in self.posts[-400:]
            if p.thread == thread and not p.reportable and (not parent or p.depth < 3)
        ]
        return self.rng.choice(choices[-40:]) if choices else None

    def locked_during(self, thread: int, start: float, end: float) -> bool:
        """Did a lock of `thread` overlap [start, end]?"""
        if thread != 0:
            return False
        return any(
            w.lock_sent <= end and (w.unlock_acked is None or w.unlock_acked >= start)
            for w in self.locks
        )

    def surely_locked(self, thread: int, start: float, end: float) -> bool:
        """Was `thread` locked for the whole of [start, end]?"""
        return thread == 0 and any(
            w.lock_acked is not None
            and w.lock_acked <= start
            and (w.unlock_sent is None or w.unlock_sent >= end)
            for w in self.locks
        )

    async def write_post(self, kind: str, ident: Ident, worker: int) -> None:
        thread = self.rng.randrange(len(self.threads))
        parent = self.pick_post(thread, parent=True) if kind == "write.reply" else None
        if kind == "write.reply" and parent is None:
            kind = "write.post"
        poster = self.acquire_poster()
        if poster is None:
            self.rec.substituted[kind] += 1
            await self.read("read.page", ident, worker)
            return
        try:
            variables: dict[str, Any] = {
                "threadId": self.threads[thread][1],
                "body": self.text(),
                "clientKey": f"soak-{uuid.uuid4().hex[:24]}",
            }
            if parent is not None:
                variables["parentId"] = parent.gid
            data, start, end = await self.gql(
                kind, worker, poster.token, ADD_POST, {"i": variables}
            )
            if data is None:
                return
            result = data["addPost"]
            if result["__typename"] == "PostSuccess":
                poster.post_times.append(time.perf_counter())
                post = result["post"]
                if self.surely_locked(thread, start, end):
                    self.rec.error(kind, "a member's post was accepted in a locked thread")
                if post["threadId"] != self.threads[thread][1]:
                    self.rec.error(kind, "post answered with another thread")
                rec = PostRec(
                    post["id"],
                    db_id(post["id"]),
                    thread,
                    poster.index,
                    post["depth"],
                    self.rng.random() < 0.3,
                    start,
                    end,
                )
                self.posts.append(rec)
                self.posts_by_gid[rec.gid] = rec
                self.acked[thread].add(rec.db_id)
            elif result.get("code") == "THREAD_LOCKED" and self.locked_during(thread, start, end):
                self.rec.refusals[(kind, "THREAD_LOCKED")] += 1
            else:
                self.typed_error(kind, result)
        finally:
            poster.busy = False

    async def react(self, ident: Ident, worker: int) -> None:
        kind = "write.react"
        target = self.pick_post(self.rng.randrange(len(self.threads)), parent=False)
        if target is None:
            self.rec.substituted[kind] += 1
            await self.read("read.page", ident, worker)
            return
        reaction = self.rng.choice(REACTIONS)
        key = (ident.index, target.gid, reaction)
        on = key not in self.reacted
        data, _, _ = await self.gql(
            kind,
            worker,
            ident.token,
            REACT,
            {"i": {"postId": target.gid, "kind": reaction, "on": on}},
        )
        if data is None:
            return
        result = data["react"]
        if result["__typename"] != "PostSuccess":
            self.typed_error(kind, result)
            return
        mine = {r["kind"] for r in result["post"]["reactions"] if r["reactedByMe"]}
        if (reaction in mine) != on:
            self.rec.error(kind, f"reactedByMe is {not on} after react(on: {on})")
        if on:
            self.reacted.add(key)
        else:
            self.reacted.discard(key)

    def report_task(self) -> tuple[Target, Ident] | None:
        """The next report to file: a reporter for an open target, or a new target."""
        now = time.perf_counter()
        budget = self.settings.reports_per_day - 1
        target = next((t for t in self.targets if len(t.issued) < t.wanted and not t.failed), None)
        if target is None:
            if sum(1 for t in self.targets if not t.decided and not t.failed) >= MAX_OPEN_TARGETS:
                return None
            candidates = [
                p
                for p in self.posts[-400:]
                if p.reportable and not p.targeted and now - p.acked > 2
            ]
            if not candidates:
                return None
            post = self.rng.choice(candidates[-50:])
            post.targeted = True
            threshold = self.settings.report_hide_threshold
            wanted = self.rng.choice([1, max(1, threshold - 1), threshold, threshold])
            target = Target(post, wanted, self.rng.choice(CATEGORIES))
            self.targets.append(target)
        reporters = [
            i
            for i in self.idents
            if i.index != target.post.author and i.index not in target.issued and i.reports < budget
        ]
        if not reporters:
            return None
        reporter = self.rng.choice(reporters)
        reporter.reports += 1
        target.issued.add(reporter.index)
        return target, reporter

    async def report(self, ident: Ident, worker: int) -> None:
        kind = "mod.report"
        task = self.report_task()
        if task is None:
            self.rec.substituted[kind] += 1
            await self.read("read.page", ident, worker)
            return
        target, reporter = task
        variables = {"postId": target.post.gid, "category": target.category, "note": "Katso tämä."}
        data, _, _ = await self.gql(kind, worker, reporter.token, REPORT, {"i": variables})
        result = data["reportPost"] if data is not None else None
        if result is None or result["__typename"] != "ReportPostSuccess" or not result["reported"]:
            if result is not None:
                self.typed_error(kind, result)
            target.failed = True
            return
        target.done += 1
        if target.done == target.wanted:
            target.ready_at = time.perf_counter()

    # ------------------------------------------------------------ moderator operations

    async def read_queue(self) -> None:
        kind = "mod.queue"
        assert self.moderator is not None
        started = time.perf_counter()
        data, _, _ = await self.gql(kind, 0, self.moderator.token, QUEUE, {})
        if data is None:
            return
        reported = {e["node"]["post"]["id"] for e in data["reported"]["edges"]}
        held = {e["node"]["post"]["id"]: e["node"] for e in data["held"]["edges"]}
        threshold = self.settings.report_hide_threshold
        self.decidable = []
        for target in self.targets:
            if target.decided or target.failed or target.ready_at is None:
                continue
            if target.ready_at > started:
                continue  # the last report was answered after this read began
            post = target.post.gid
            if target.wanted >= threshold:
                if post not in held or not held[post]["post"]["pending"]:
                    self.rec.error(
                        kind, "a post reported by enough members is not in the HELD queue"
                    )
                    continue
            elif post not in reported or post in held:
                self.rec.error(kind, "a reported post is not (only) in the REPORTED queue")
                continue
            self.decidable.append(target)

    async def decide(self) -> None:
        kind = "mod.decide"
        assert self.moderator is not None
        target = self.decidable.pop(0)
        remove = self.rng.random() < 0.5
        variables: dict[str, Any] = {
            "postId": target.post.gid,
            "decision": "REMOVE" if remove else "APPROVE",
            "note": "Käsitelty.",
        }
        if remove:
            variables["category"] = target.category
        data, _, _ = await self.gql(kind, 0, self.moderator.token, MODERATE_POST, {"i": variables})
        target.decided = True
        if data is None:
            return
        result = data["moderatePost"]
        if result["__typename"] != "ModeratePostSuccess":
            self.typed_error(kind, result)
        elif (
            not result["applied"]
            or result["post"]["removed"] != remove
            or result["post"]["pending"]
        ):
            self.rec.error(kind, f"decision {variables['decision']} answered {result}")

    async def lock(self, action: str) -> None:
        kind = "mod.lock"
        assert self.moderator is not None
        if action == "LOCK":
            window = LockWindow(time.perf_counter())
            self.locks.append(window)
        else:
            window = self.locks[-1]
            window.unlock_sent = time.perf_counter()
        variables = {"threadId": self.threads[0][1], "action": action, "note": "Tauko."}
        data, _, end = await self.gql(
            kind, 0, self.moderator.token, MODERATE_THREAD, {"i": variables}
        )
        if action == "LOCK":
            window.lock_acked = end
        else:
            window.unlock_acked = end
        if data is None:
            return
        result = data["moderateThread"]
        if result["__typename"] != "ModerateThreadSuccess":
            self.typed_error(kind, result)
        elif not result["applied"] or result["thread"]["locked"] != (action == "LOCK"):
            self.rec.error(kind, f"{action} answered {result}")

    def lock_due(self) -> str | None:
        now = time.perf_counter() - self.t0
        if self.locks and self.locks[-1].unlock_sent is None:
            return "UNLOCK" if now - (self.locks[-1].lock_sent - self.t0) >= LOCK_FOR else None
        next_lock = 15.0 + LOCK_EVERY * len(self.locks)
        return "LOCK" if now >= next_lock and now < self.deadline - self.t0 - LOCK_FOR else None

    # ------------------------------------------------------------ clients

    async def paced(
        self, rate: float, seed: int, act: Callable[[random.Random], Awaitable[None]]
    ) -> None:
        """Poisson arrivals at `rate` until the deadline; a late arrival starts at once."""
        rng = random.Random(seed)
        next_at = time.perf_counter() + rng.expovariate(rate)
        while next_at < self.deadline:
            now = time.perf_counter()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            else:
                self.late += 1
                next_at = now
            self.offered += 1
            await act(rng)
            next_at += rng.expovariate(rate)

    async def member_client(self, i: int, rate: float) -> None:
        ident = self.idents[i]
        worker = i % 2
        kinds = list(MEMBER_MIX)
        weights = list(MEMBER_MIX.values())

        async def act(rng: random.Random) -> None:
            kind = rng.choices(kinds, weights)[0]
            if kind.startswith("read."):
                await self.read(kind, ident, worker)
            elif kind in ("write.post", "write.reply"):
                await self.write_post(kind, ident, worker)
            elif kind == "write.react":
                await self.react(ident, worker)
            else:
                await self.report(ident, worker)

        await self.paced(rate, self.args.seed * 1000 + i, act)

    async def moderator_client(self, rate: float) -> None:
        async def act(rng: random.Random) -> None:
            action = self.lock_due()
            if action is not None:
                await self.lock(action)
            elif self.decidable:
                await self.decide()
            else:
                await self.read_queue()

        await self.paced(rate, self.args.seed * 1000 + 999, act)
        if self.locks and self.locks[-1].unlock_sent is None:
            await self.lock("UNLOCK")

    # ------------------------------------------------------------ websockets

    async def open_stream(self, stream: Stream) -> None:
        url = f"ws://127.0.0.1:{self.workers[stream.worker].port}/graphql"
        ws = await connect(
            url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None, open_timeout=60
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": stream.token}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"{stream.name}: {ack}")
        if stream.kind == "thread":
            assert stream.thread is not None
            query = THREAD_EVENTS
            variables: dict[str, Any] = {"t": self.threads[stream.thread][1], "after": stream.after}
        elif stream.kind == "notifications":
            query, variables = NOTIFICATION_FEED, {"after": stream.after}
        else:
            query, variables = MODERATION_FEED, {"after": stream.after}
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }
            )
        )
        stream.ws = ws
        stream.task = asyncio.create_task(self.listen(stream, ws))

    async def listen(self, stream: Stream, ws: ClientConnection) -> None:
        name = FIELDS[stream.kind]
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        stream.problems.append(f"errors: {payload['errors'][0].get('message')}")
                        continue
                    event = payload["data"][name]
                    post = event.get("post") or {}
                    subject = (
                        post.get("id") if stream.kind != "notifications" else event.get("subjectId")
                    )
                    stream.events.append(
                        (event["position"], event["kind"], subject, time.perf_counter())
                    )
                elif kind in ("error", "complete"):
                    stream.problems.append(f"subscription ended: {message}")
                    return
        except ConnectionClosed as exc:
            if not self.closing:
                stream.problems.append(f"socket closed: {exc}")

    async def close_streams(self) -> None:
        self.closing = True
        for stream in self.streams:
            if stream.task is not None:
                stream.task.cancel()
        await asyncio.gather(
            *(s.ws.close() for s in self.streams if s.ws is not None), return_exceptions=True
        )

    # ------------------------------------------------------------ measurements

    async def baseline(self, concurrency: int, seconds: float) -> dict[str, Any]:
        """Bare /healthz at the soak's concurrency (no think time), then paced at its rate.

        Its errors are recorded (and fail the run) under the kinds ``healthz.*``.
        """
        out: dict[str, Any] = {}
        for label in ("closed", "paced"):
            latencies: list[float] = []
            errors = 0
            end_at = time.perf_counter() + seconds
            rate = self.args.rate / concurrency

            async def one(i: int) -> None:
                nonlocal errors
                client = self.workers[i % 2].http
                rng = random.Random(i)
                next_at = time.perf_counter()
                while True:
                    if label == "paced":
                        next_at += rng.expovariate(rate)
                        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    if time.perf_counter() >= end_at:
                        return
                    start = time.perf_counter()
                    try:
                        response = await client.get("/healthz")
                        if response.status_code != 200:
                            errors += 1
                            self.rec.error(f"healthz.{label}", f"HTTP {response.status_code}")
                    except httpx.HTTPError as exc:
                        errors += 1
                        self.rec.error(f"healthz.{label}", f"{type(exc).__name__}: {exc!r}")
                    latencies.append(time.perf_counter() - start)

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(concurrency)))
            elapsed = time.perf_counter() - started
            out[label] = {
                "requests": len(latencies),
                "rate": len(latencies) / elapsed,
                "p50_ms": ms(latencies, 0.5),
                "p99_ms": ms(latencies, 0.99),
                "errors": errors,
            }
        return out

    async def sample_workers(self) -> None:
        """RSS and CPU of each worker every SAMPLE_SECONDS from the start of the load."""
        me = psutil.Process()
        last_cpu = [sum(p.cpu_times()[:2]) for p in [*(w.ps for w in self.workers), me]]
        last_t = time.perf_counter()
        tick = 0
        while True:
            now = time.perf_counter()
            cpu = [sum(p.cpu_times()[:2]) for p in [*(w.ps for w in self.workers), me]]
            self.samples.append(
                {
                    "t": round(now - self.t0, 1),
                    "rss_mib": [w.ps.memory_info().rss / 2**20 for w in self.workers],
                    "load1": os.getloadavg()[0],
                    # CPU of worker A, worker B and this client; none on the first row.
                    "cpu_pct": [
                        100 * (c - lc) / (now - last_t) if tick else None
                        for c, lc in zip(cpu, last_cpu, strict=True)
                    ],
                }
            )
            last_cpu, last_t = cpu, now
            tick += 1
            await asyncio.sleep(max(0.0, self.t0 + tick * SAMPLE_SECONDS - time.perf_counter()))

    async def run_load(self) -> float:
        """The soak itself; returns its duration in seconds."""
        n = self.args.members
        member_rate = self.args.rate * (1 - MODERATOR_SHARE) / n
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.args.seconds
        sampler = asyncio.create_task(self.sample_workers())
        await asyncio.gather(
            *(self.member_client(i, member_rate) for i in range(n)),
            self.moderator_client(self.args.rate * MODERATOR_SHARE),
        )
        duration = time.perf_counter() - self.t0
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        t = round(time.perf_counter() - self.t0, 1)
        if t - self.samples[-1]["t"] >= 1:  # one last sample after the load
            self.samples.append(
                {
                    "t": t,
                    "rss_mib": [w.ps.memory_info().rss / 2**20 for w in self.workers],
                    "load1": os.getloadavg()[0],
                    "cpu_pct": None,
                }
            )
        return duration

    # ------------------------------------------------------------ delivery checks

    async def expected_events(self) -> dict[str, tuple[set[int], set[int]]]:
        """Per stream: positions it must deliver, and positions it may deliver."""
        from models.community import Notification
        from models.discussions import ThreadEvent
        from models.moderation import ModerationEvent

        out: dict[str, tuple[set[int], set[int]]] = {}
        thread_rows: dict[int, list[tuple[int, str, int]]] = {}
        for stream in self.streams:
            if stream.kind == "thread":
                assert stream.thread is not None
                thread_id = self.threads[stream.thread][0]
                if thread_id not in thread_rows:
                    thread_rows[thread_id] = [
                        (p, str(k.value if hasattr(k, "value") else k), pid)
                        for p, k, pid in await ThreadEvent.filter(thread_id=thread_id)
                        .order_by("position")
                        .values_list("position", "kind", "post_id")
                    ]
                rows = [r for r in thread_rows[thread_id] if r[0] > stream.after]
                hidden = {pid for _, k, pid in rows if k == "post_hidden"}
                # A post held before this worker's feed read its POST_ADDED is not shown
                # to others until approved: that event may be skipped.
                maybe = {p for p, k, pid in rows if k == "post_added" and pid in hidden}
                out[stream.name] = ({p for p, _, _ in rows} - maybe, maybe)
            elif stream.kind == "notifications":
                positions = await Notification.filter(
                    member_id=stream.member_id, position__gt=stream.after
                ).values_list("position", flat=True)
                out[stream.name] = ({int(p) for p in positions}, set())  # type: ignore[call-overload]
            else:
                positions = await ModerationEvent.filter(position__gt=stream.after).values_list(
                    "position", flat=True
                )
                out[stream.name] = ({int(p) for p in positions}, set())  # type: ignore[call-overload]
        return out

    async def check_database(self) -> list[str]:
        """Posts in the database after the start are exactly those the clients were told of."""
        from models.discussions import EventKind, ThreadEvent

        problems = []
        starts = {s.thread: s.after for s in self.streams if s.kind == "thread"}
        for t, (thread_id, _) in enumerate(self.threads):
            after = starts.get(t)
            if after is None:
                continue
            added = await ThreadEvent.filter(
                thread_id=thread_id, position__gt=after, kind=EventKind.POST_ADDED
            ).values_list("post_id", flat=True)
            stored = [int(p) for p in added]  # type: ignore[call-overload]
            if sorted(stored) != sorted(self.acked[t]):
                problems.append(
                    f"thread {t}: {len(stored)} posts stored after the start, "
                    f"{len(self.acked[t])} acknowledged to clients"
                )
        return problems

    async def drain_and_check(self) -> dict[str, Any]:
        expected = await self.expected_events()
        deadline = time.perf_counter() + DRAIN_SECONDS
        while time.perf_counter() < deadline:
            if all(
                expected[s.name][0] <= {e[0] for e in s.events} or s.problems for s in self.streams
            ):
                break
            await asyncio.sleep(0.2)
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        examples: list[str] = []
        post_latencies: list[float] = []
        for stream in self.streams:
            must, may = expected[stream.name]
            positions = [e[0] for e in stream.events]
            counts = Counter(positions)
            lost = must - set(positions)
            duplicates = sum(c - 1 for c in counts.values() if c > 1)
            out_of_order = sum(1 for a, b in itertools.pairwise(positions) if b <= a)
            unexpected = set(positions) - must - may
            tally = by_kind[stream.kind]
            tally["sockets"] += 1
            tally["expected"] += len(must)
            tally["optional"] += len(may)
            tally["delivered"] += len(positions)
            tally["lost"] += len(lost)
            tally["duplicates"] += duplicates
            tally["out_of_order"] += out_of_order
            tally["unexpected"] += len(unexpected)
            tally["ended"] += bool(stream.problems)
            if lost or duplicates or out_of_order or unexpected or stream.problems:
                examples.append(
                    f"{stream.name}: lost {sorted(lost)[:5]}, duplicates {duplicates}, out of order "
                    f"{out_of_order}, unexpected {sorted(unexpected)[:5]}, problems {stream.problems[:2]}"
                )
            if stream.kind == "thread":
                assert stream.thread is not None
                added = Counter(e[2] for e in stream.events if e[1] == "POST_ADDED")
                for db_post in self.acked[stream.thread]:
                    post_gid = gid("Post", db_post)
                    seen = added.get(post_gid, 0)
                    rec = self.posts_by_gid[post_gid]
                    if seen == 1:
                        tally["posts_once"] += 1
                    elif seen == 0 and rec.targeted:
                        tally["posts_held_first"] += 1
                    else:
                        tally["posts_wrong"] += 1
                        if len(examples) < 20:
                            examples.append(f"{stream.name}: post {db_post} delivered {seen} times")
                for _position, kind, subject, arrival in stream.events:
                    if kind == "POST_ADDED" and subject in self.posts_by_gid:
                        sent = self.posts_by_gid[subject].started
                        if sent:
                            post_latencies.append(arrival - sent)
        return {
            "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "examples": examples,
            "post_latency_ms": {
                "events": len(post_latencies),
                "p50": ms(post_latencies, 0.5),
                "p99": ms(post_latencies, 0.99),
                "max": max(post_latencies) * 1000 if post_latencies else 0.0,
            },
        }

    async def scrape_metrics(self) -> dict[str, list[str]]:
        """Each worker's non-zero counters of interest from /metrics (if it has that route)."""
        wanted = re.compile(
            r"^community_(graphql_errors|websocket_closes|slow_consumers|bus_publish_failures|"
            r"bus_events_published|events_delivered|websockets_open|subscriptions_active|"
            r"graphql_operations|http_requests)(_total)?[{ ]"
        )
        out: dict[str, list[str]] = {}
        for worker in self.workers:
            try:
                response = await worker.http.get("/metrics")
            except httpx.HTTPError:
                continue
            if response.status_code != 200:
                continue
            out[worker.name] = [
                line
                for line in response.text.splitlines()
                if wanted.match(line) and float(line.rsplit(" ", 1)[1]) != 0
            ]
        return out

    def server_log_errors(self) -> list[str]:
        pattern = re.compile(r"ERROR|CRITICAL|Traceback|Exception")
        lines: list[str] = []
        for worker in self.workers:
            for line in worker.log.read_text(errors="replace").splitlines():
                if pattern.search(line):
                    lines.append(f"{worker.name}: {line.strip()[:300]}")
        return lines


# ---------------------------------------------------------------- report


def summarize(
    soak: Soak,
    metrics: dict[str, list[str]],
    duration: float,
    baseline: dict[str, Any],
    delivery: dict[str, Any],
    db_problems: list[str],
    log_errors: list[str],
    setup: dict[str, Any],
) -> dict[str, Any]:
    rec = soak.rec
    ops: dict[str, Any] = {}
    everything: list[float] = []
    for kind in KINDS:
        values = [lat for _, lat in rec.samples.get(kind, [])]
        everything += values
        ops[kind] = {
            "requests": len(values),
            "rate": len(values) / duration,
            "p50_ms": ms(values, 0.5),
            "p99_ms": ms(values, 0.99),
            "max_ms": max(values) * 1000 if values else 0.0,
            "errors": rec.errors.get(kind, 0),
        }
    total_errors = sum(rec.errors.values())  # with the baseline's
    overall = {
        "requests": len(everything),
        "rate": len(everything) / duration,
        "p50_ms": ms(everything, 0.5),
        "p99_ms": ms(everything, 0.99),
        "max_ms": max(everything) * 1000 if everything else 0.0,
        "errors": sum(rec.errors.get(kind, 0) for kind in KINDS),
    }
    # Time series: requests started in each window, with the workers' RSS and CPU.
    series = []
    for row in soak.samples:
        t = row["t"]
        lats = [
            lat
            for samples in rec.samples.values()
            for start, lat in samples
            if t - SAMPLE_SECONDS <= start < t
        ]
        series.append(
            {**row, "requests": len(lats), "p50_ms": ms(lats, 0.5), "p99_ms": ms(lats, 0.99)}
        )
    warmup = min(soak.args.warmup, soak.args.seconds / 3)
    warm = next((r for r in soak.samples if r["t"] >= warmup), soak.samples[0])
    last = soak.samples[-1]
    # The bounded caches (parsed documents, shared event results, statements) fill
    # during the first minutes; growth over the second half is what a leak shows.
    half = next((r for r in soak.samples if r["t"] >= last["t"] / 2), warm)
    growth = {
        "from_t": warm["t"],
        "to_t": last["t"],
        "mib": [b - a for a, b in zip(warm["rss_mib"], last["rss_mib"], strict=True)],
        "start_mib": warm["rss_mib"],
        "end_mib": last["rss_mib"],
        "half_t": half["t"],
        "second_half_mib": [b - a for a, b in zip(half["rss_mib"], last["rss_mib"], strict=True)],
    }
    subs = delivery["by_kind"]
    lost = sum(
        v.get(k, 0)
        for v in subs.values()
        for k in ("lost", "duplicates", "out_of_order", "unexpected", "ended", "posts_wrong")
    )
    failed = bool(total_errors or lost or db_problems or log_errors)
    setup["host_load_max"] = max(row["load1"] for row in soak.samples)
    setup["cores"] = os.cpu_count() or 1
    return {
        "setup": setup,
        "duration_s": duration,
        "offered_rate": soak.offered / duration,
        "configured_rate": soak.args.rate,
        "late_starts": soak.late,
        "baseline_healthz": baseline,
        "operations": ops,
        "overall": overall,
        "error_messages": [
            {"kind": k, "message": m, "count": c} for (k, m), c in rec.messages.most_common()
        ],
        "expected_refusals": {f"{k} {c}": n for (k, c), n in rec.refusals.items()},
        "substituted": dict(rec.substituted),
        "moderation": {
            "targets": len(soak.targets),
            "decided": sum(t.decided for t in soak.targets),
            "locks": len(soak.locks),
        },
        "subscriptions": delivery,
        "database_problems": db_problems,
        "server_log_errors": log_errors,
        "memory_series": series,
        "memory_growth": growth,
        "worker_metrics": metrics,
        "passed": not failed,
    }


def print_report(r: dict[str, Any]) -> None:
    setup = r["setup"]
    print(
        f"\n# soak: {r['duration_s']:.0f} s, {setup['members']} member clients + 1 moderator over 2 workers, "
        f"{setup['posting_members']} members posting, {setup['subscribers']} websockets"
    )
    print(
        f"offered: {r['configured_rate']:.1f} req/s scheduled (Poisson arrivals per client), "
        f"{r['offered_rate']:.1f} req/s started ({r['late_starts']} arrivals found their client "
        f"still busy); achieved: {r['overall']['rate']:.1f} req/s completed"
    )
    b = r["baseline_healthz"]
    print("\n| operation | requests | req/s | p50 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for label, key in (
        ("/healthz closed loop (baseline)", "closed"),
        ("/healthz paced (baseline)", "paced"),
    ):
        x = b[key]
        print(
            f"| {label} | {x['requests']} | {x['rate']:.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | | {x['errors']} |"
        )
    for kind, x in r["operations"].items():
        print(
            f"| {kind} | {x['requests']} | {x['rate']:.2f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
            f"{x['max_ms']:.0f} | {x['errors']} |"
        )
    o = r["overall"]
    print(
        f"| **all** | {o['requests']} | {o['rate']:.1f} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} | "
        f"{o['max_ms']:.0f} | {o['errors']} |"
    )
    if r["error_messages"]:
        print("\nerrors (each distinct message once):")
        for e in r["error_messages"]:
            print(f"  [{e['kind']}] x{e['count']}: {e['message']}")
    if r["expected_refusals"]:
        print(
            "expected refusals:", ", ".join(f"{k} x{n}" for k, n in r["expected_refusals"].items())
        )
    if r["substituted"]:
        print(
            "operations replaced by a page read (no budget or no target):",
            ", ".join(f"{k} x{n}" for k, n in r["substituted"].items()),
        )
    m = r["moderation"]
    print(
        f"moderation: {m['targets']} posts reported, {m['decided']} decided, {m['locks']} thread locks"
    )

    s = r["subscriptions"]
    print(
        "\n| subscriptions | sockets | expected | delivered | lost | duplicates | out of order | unexpected | ended |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, v in s["by_kind"].items():
        print(
            f"| {kind} | {v.get('sockets', 0)} | {v.get('expected', 0)} (+{v.get('optional', 0)} optional) | "
            f"{v.get('delivered', 0)} | {v.get('lost', 0)} | {v.get('duplicates', 0)} | "
            f"{v.get('out_of_order', 0)} | {v.get('unexpected', 0)} | {v.get('ended', 0)} |"
        )
    t = s["by_kind"].get("thread", {})
    print(
        f"every acknowledged post per thread subscriber: {t.get('posts_once', 0)} exactly once, "
        f"{t.get('posts_held_first', 0)} held before delivery (allowed), {t.get('posts_wrong', 0)} wrong"
    )
    lat = s["post_latency_ms"]
    print(
        f"post -> subscriber latency (from the write's start): p50 {lat['p50']:.0f} ms, "
        f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms over {lat['events']} deliveries"
    )
    for line in s["examples"][:20]:
        print("  ", line)
    for line in r["database_problems"]:
        print("database:", line)

    print(
        "\n| t (s) | RSS A MiB | RSS B MiB | CPU A % | CPU B % | CPU client % | host load | "
        "requests started in the last 10 s | p50 ms | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in r["memory_series"]:
        cpu = row["cpu_pct"] or [None, None, None]
        c = ["" if x is None else f"{x:.0f}" for x in cpu]
        print(
            f"| {row['t']:.0f} | {row['rss_mib'][0]:.1f} | {row['rss_mib'][1]:.1f} | {c[0]} | {c[1]} | "
            f"{c[2]} | {row['load1']:.1f} | {row['requests']} | {row['p50_ms']:.0f} | "
            f"{row['p99_ms']:.0f} |"
        )
    g = r["memory_growth"]
    print(
        f"RSS growth from t={g['from_t']:.0f} s to t={g['to_t']:.0f} s: "
        + ", ".join(
            f"worker {n} {a:.1f} -> {b:.1f} MiB ({d:+.1f} MiB)"
            for n, a, b, d in zip("AB", g["start_mib"], g["end_mib"], g["mib"], strict=True)
        )
        + (
            f"; second half (t={g['half_t']:.0f} s to the end): "
            + ", ".join(
                f"worker {n} {d:+.1f} MiB" for n, d in zip("AB", g["second_half_mib"], strict=True)
            )
        )
        + (
            f", about {max(g['second_half_mib']) * 3600 / (g['to_t'] - g['half_t']):+.0f} MiB/h "
            "at worst if it went on"
            if g["to_t"] > g["half_t"]
            else ""
        )
    )
    for name, lines in r["worker_metrics"].items():
        print(f"\nworker {name} /metrics (non-zero counters):")
        for line in lines:
            print("  ", line)
    if r["late_starts"] > 0.2 * max(1, r["overall"]["requests"]):
        print(
            f"\nNOTE: {r['late_starts']} of {r['overall']['requests']} arrivals found their client "
            "still busy: the servers did not keep up with the offered rate (saturated), so the "
            "latencies include queueing. Lower --rate to measure latency under load."
        )
    if r["setup"]["host_load_max"] > r["setup"]["cores"]:
        print(
            f"\nNOTE: the host's load average reached {r['setup']['host_load_max']:.1f} on "
            f"{r['setup']['cores']} cores: other work shared the CPUs, latencies are inflated."
        )
    if r["server_log_errors"]:
        print(f"\nworker log errors ({len(r['server_log_errors'])} lines, distinct shown):")
        for line in dict.fromkeys(r["server_log_errors"]):
            print("  ", line)
    print("\nPASSED" if r["passed"] else "\nFAILED")


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    from config import load_settings

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    run_prefix = f"soak_{uuid.uuid4().hex[:8]}:"
    async with scratch_community("postgres") as scratch:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONTACTS_ENCRYPTION_KEY", "CONTACTS_INDEX_KEY", "LINK_KEY", "TOKEN_KEY")
        }
        env.update(
            COMMUNITY_DB_URL=scratch.community_db_url,
            CONTACTS_DB_URL=scratch.contacts_db_url,
            BROADCAST_URL=REDIS,
            BROADCAST_CHANNEL_PREFIX=run_prefix,
            MAIL_DIR=scratch.mail_dir,
            LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "warning"),
        )
        settings = load_settings(env)
        soak = Soak(args, settings)
        post_rate = (
            args.rate
            * (1 - MODERATOR_SHARE)
            * (MEMBER_MIX["write.post"] + MEMBER_MIX["write.reply"])
            / sum(MEMBER_MIX.values())
        )
        total = posting_members(args.members, args.seconds, post_rate, soak.per_min, soak.per_hour)
        log_dir = Path(scratch.mail_dir).parent
        print(
            f"machine: {machine}; PostgreSQL and Redis on the same host, client on the same cores"
        )
        print(
            f"setup: {total} members ({args.members} clients), {args.threads} threads ...",
            flush=True,
        )
        started = time.perf_counter()
        try:
            await soak.seed(total)
            await soak.start_workers(env, log_dir)
            print(
                f"workers: A pid {soak.workers[0].process.pid} port {soak.workers[0].port}, "
                f"B pid {soak.workers[1].process.pid} port {soak.workers[1].port}; logs in {log_dir}"
            )
            for start in range(0, len(soak.streams), 50):
                await asyncio.gather(
                    *(soak.open_stream(s) for s in soak.streams[start : start + 50])
                )
            setup_seconds = time.perf_counter() - started
            print(
                f"setup done in {setup_seconds:.1f} s; "
                f"baseline /healthz 2 x {args.baseline_seconds:.0f} s ...",
                flush=True,
            )
            baseline = await soak.baseline(args.members + 1, args.baseline_seconds)
            print(f"soak {args.seconds:.0f} s at {args.rate:.1f} req/s offered ...", flush=True)
            duration = await soak.run_load()
            print("load done; waiting for subscribers to catch up ...", flush=True)
            delivery = await soak.drain_and_check()
            db_problems = await soak.check_database()
            log_errors = soak.server_log_errors()
            metrics = await soak.scrape_metrics()
            report = summarize(
                soak,
                metrics,
                duration,
                baseline,
                delivery,
                db_problems,
                log_errors,
                {
                    "machine": machine,
                    "members": args.members,
                    "posting_members": total,
                    "threads": args.threads,
                    "subscribers": len(soak.streams),
                    "thread_subscribers": args.subscribers,
                    "seconds": args.seconds,
                    "rate": args.rate,
                    "seed": args.seed,
                    "setup_s": setup_seconds,
                    "post_limits": [settings.posts_per_minute, settings.posts_per_hour],
                },
            )
        finally:
            await soak.close_streams()
            await soak.stop_workers()
            if not soak.server_log_errors():
                shutil.rmtree(log_dir, ignore_errors=True)  # scratch's folder: mail and logs
    print_report(report)
    if report["server_log_errors"]:
        print(f"worker logs kept in {log_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"JSON written to {args.json}")
    return 0 if report["passed"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--members", type=int, default=40, help="member clients (load concurrency)")
    parser.add_argument("--subscribers", type=int, default=100, help="threadEvents websockets")
    parser.add_argument(
        "--rate", type=float, default=15, help="offered requests per second, in all (Poisson)"
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=60, help="RSS growth is measured from here")
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the report as JSON to this path")
    args = parser.parse_args()
    if args.members < NOTIFICATION_SUBSCRIBERS or args.threads < 1 or args.rate <= 0:
        parser.error("needs --members >= 5, --threads >= 1 and --rate > 0")

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args)

    try:
        code = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: workers stopped, databases dropped", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
