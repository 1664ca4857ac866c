"""Per-worker thread feeds: read each new thread event once, hand it to every local subscriber.

Without a feed, every subscriber of a thread would read the event log, the
post, its author and its reactions itself: four queries per subscriber per
event. A :class:`ThreadFeed` does those reads once per worker per event and
gives each subscriber an immutable :class:`EventSnapshot`; the subscriber
then builds its own view (its permissions, ``isMine``, ``reactedByMe``)
from the snapshot without touching the database.

Correctness does not depend on the feed: a subscriber remembers the last
position it delivered, ignores snapshots at or below it, and reads the
database itself for any gap (when it resumes with ``after``, when it joins
while the feed is busy, or after a resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from models.discussions import Post, Reaction, Thread, ThreadEvent
from subscriptions.bus import Bus
from subscriptions.guard import CURRENT_SOCKET
from subscriptions.notifications import member_channel
from subscriptions.threads import thread_channel

log = logging.getLogger("community.feeds")

_serials = itertools.count(1)
RESYNC_SECONDS = 15.0  # the feed re-reads the log this often, in case the bus lost an event
CHECK_SECONDS = 60.0  # each subscriber re-checks its session this often (expiry)
PAGE = 200


@dataclass(frozen=True)
class EventSnapshot:
    """One thread event with everything any subscriber needs to render it."""

    position: int
    kind: str
    serial: int  # unique per snapshot in this process: names this very state of the event
    event: ThreadEvent
    post: Post  # with ``author`` loaded
    reactions: tuple[tuple[int, str], ...]  # (member id, kind) of every reaction on the post


async def load_snapshots(
    thread_id: int, after: int, before: int | None = None
) -> list[EventSnapshot]:
    """Events of a thread after ``after`` (and before ``before``), in three queries."""
    query = ThreadEvent.filter(thread_id=thread_id, position__gt=after)
    if before is not None:
        query = query.filter(position__lt=before)
    events = await query.order_by("position").limit(PAGE)
    if not events:
        return []
    post_ids = {e.post_id for e in events}  # type: ignore[attr-defined]
    posts = {p.id: p for p in await Post.filter(id__in=post_ids).select_related("author")}
    reactions: dict[int, list[tuple[int, str]]] = {pid: [] for pid in post_ids}
    for post_id, member_id, kind in await Reaction.filter(post_id__in=post_ids).values_list(
        "post_id", "member_id", "kind"
    ):
        reactions[post_id].append((member_id, str(kind)))
    return [
        EventSnapshot(
            position=e.position,
            kind=e.kind.value,
            serial=next(_serials),
            event=e,
            post=posts[e.post_id],  # type: ignore[attr-defined]
            reactions=tuple(reactions[e.post_id]),  # type: ignore[attr-defined]
        )
        for e in events
    ]


class ThreadFeed:
    """Reads one thread's new events for every subscriber in this worker."""

    def __init__(self, bus: Bus, thread_id: int, last: int) -> None:
        self.bus = bus
        self.thread_id = thread_id
        self.last = last
        self.subscribers: set[asyncio.Queue[object]] = set()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def run(self, ready: asyncio.Event) -> None:
        # This task serves every subscriber of the thread: not the guard of
        # the socket whose subscription happened to start it.
        CURRENT_SOCKET.set(None)
        async with self.bus.subscribe(thread_channel(self.thread_id)) as wake:
            ready.set()
            # Whatever was committed while the subscription was being confirmed.
            await self._read_new()
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESYNC_SECONDS):
                        await wake.get()
                while not wake.empty():
                    wake.get_nowait()
                try:
                    await self._read_new()
                except Exception:  # a failed read is retried at the next wake-up
                    log.exception("thread feed %s could not read new events", self.thread_id)

    async def _read_new(self) -> None:
        while True:
            snapshots = await load_snapshots(self.thread_id, self.last)
            for snapshot in snapshots:
                self.last = snapshot.position
                for queue in list(self.subscribers):
                    queue.put_nowait(snapshot)
            if len(snapshots) < PAGE:
                return


class FeedRegistry:
    """The feeds of this worker, created on the first subscriber and closed after the last."""

    def __init__(self) -> None:
        self.feeds: dict[int, ThreadFeed] = {}
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def join(
        self, bus: Bus, thread_id: int, queue: asyncio.Queue[object]
    ) -> AsyncIterator[int]:
        """Deliver the thread's snapshots into ``queue``; yields the feed's position at joining."""
        async with self.lock:
            feed = self.feeds.get(thread_id)
            if feed is None:
                thread = await Thread.get(id=thread_id)
                feed = ThreadFeed(bus, thread_id, thread.last_position)
                feed.ready = asyncio.Event()
                feed.task = asyncio.create_task(
                    feed.run(feed.ready), name=f"thread-feed-{thread_id}"
                )
                self.feeds[thread_id] = feed
            feed.subscribers.add(queue)
        try:
            # Waited for outside the registry lock: one slow Redis confirmation
            # must not hold up subscriptions to other threads.
            await feed.ready.wait()
            yield feed.last
        finally:
            feed.subscribers.discard(queue)
            if not feed.subscribers and self.feeds.get(thread_id) is feed:
                del self.feeds[thread_id]
                if feed.task is not None:
                    feed.task.cancel()


FEEDS = FeedRegistry()


async def thread_snapshots(
    bus: Bus,
    thread_id: int,
    member_id: int,
    after: int | None,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[EventSnapshot]:
    """A subscriber's events: replay after ``after`` from the database, then the feed's.

    Positions are delivered in order, each once. The member's channel is
    watched, so a session that ends (on any worker) stops the stream at once.
    """
    async with bus.subscribe(member_channel(member_id)) as queue:
        inbox: asyncio.Queue[object] = queue  # type: ignore[assignment]
        async with FEEDS.join(bus, thread_id, inbox) as joined_at:
            if after is None:
                last = joined_at
            else:
                # A position beyond the thread's end means "from the end".
                newest = await Thread.get(id=thread_id).values_list("last_position", flat=True)
                last = min(max(after, 0), int(newest))  # type: ignore[call-overload]
            catch_up = after is not None
            while True:
                while catch_up:
                    # Read from the database what the feed has not handed us.
                    missed = await load_snapshots(thread_id, last)
                    for snapshot in missed:
                        last = snapshot.position
                        yield snapshot
                    catch_up = len(missed) == PAGE
                item = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CHECK_SECONDS):
                        item = await inbox.get()
                if isinstance(item, EventSnapshot):
                    if item.position == last + 1:
                        last = item.position
                        yield item
                    elif item.position > last + 1:
                        catch_up = True  # a gap: fill it from the database, in order
                    continue
                # A session ended somewhere, or the periodic check: is ours still live?
                if not await still_allowed():
                    return
                catch_up = item is None
