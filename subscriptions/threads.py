"""Thread event streams: replay from the event log after a position, then live.

As with notifications, the stream subscribes to the thread's channel before
it reads the database, and every wake-up reads the events after the last
position it delivered: no gap, no duplicate, whatever the bus lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from models.discussions import Thread, ThreadEvent
from subscriptions.bus import Bus
from subscriptions.notifications import member_channel

RESYNC_SECONDS = 15.0
PAGE = 200


def thread_channel(thread_id: int) -> str:
    return f"thread:{thread_id}"


def typing_channel(thread_id: int) -> str:
    return f"typing:{thread_id}"


async def thread_event_stream(
    bus: Bus,
    thread_id: int,
    member_id: int,
    after: int | None,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[ThreadEvent]:
    """Yield the thread's events after ``after`` (or from now), forever.

    The member's own channel is watched too, so a session that ends (on any
    worker) stops the stream at once.
    """
    async with bus.subscribe(thread_channel(thread_id), member_channel(member_id)) as queue:
        if after is None:
            thread = await Thread.get(id=thread_id)
            last = thread.last_position
        else:
            last = max(after, 0)
        check_session = False
        while True:
            # The session is re-checked when the member's channel says so (a
            # session ended somewhere) and at every resync, not on every event.
            if check_session and not await still_allowed():
                return
            events = (
                await ThreadEvent.filter(thread_id=thread_id, position__gt=last)
                .order_by("position")
                .limit(PAGE)
            )
            for event in events:
                last = event.position
                yield event
            if len(events) == PAGE:
                continue
            try:
                wake = [await asyncio.wait_for(queue.get(), timeout=RESYNC_SECONDS)]
            except TimeoutError:
                wake = [{"type": "resync"}]
            while not queue.empty():
                wake.append(queue.get_nowait())
            check_session = any(item.get("type") != "thread" for item in wake)


async def typing_stream(
    bus: Bus, thread_id: int, member_id: int, still_allowed: Callable[[], Awaitable[bool]]
) -> AsyncIterator[dict[str, Any]]:
    """Ephemeral typing signals of a thread, live only (never stored, never replayed)."""
    async with bus.subscribe(typing_channel(thread_id), member_channel(member_id)) as queue:
        while True:
            event = await queue.get()
            if event.get("type") == "typing":
                yield event
            elif not await still_allowed():
                return
