"""The members' notification stream: replay after a position, then live.

The stream subscribes to the bus *before* reading the database, and every
wake-up reads rows after the last delivered position, so a notice written
during the switch-over is delivered once: never lost, never twice. A
periodic re-read covers events the bus lost (Redis down).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from models.community import Notification
from subscriptions.bus import Bus

RESYNC_SECONDS = 15.0
PAGE = 100


def member_channel(member_id: int) -> str:
    return f"member:{member_id}"


EVERYONE_CHANNEL = "members"


async def notification_stream(
    bus: Bus,
    member_id: int,
    after: int | None,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[Notification]:
    """Yield the member's notifications after ``after`` (or from now), forever.

    ``still_allowed`` is asked on every wake-up; when the session has ended
    (logout, password change, resignation) the stream stops at once.
    """

    async def read_after(last: int) -> list[Notification]:
        return (
            await Notification.filter(member_id=member_id, position__gt=last)
            .order_by("position")
            .limit(PAGE)
        )

    async with bus.subscribe(member_channel(member_id), EVERYONE_CHANNEL) as queue:
        if after is None:
            newest = await Notification.filter(member_id=member_id).order_by("-position").first()
            last = newest.position if newest else 0
        else:
            last = after
        async for rows in positioned_stream(queue, last, read_after, still_allowed, "notification"):
            for row in rows:
                yield row


class Positioned(Protocol):
    position: int


T = TypeVar("T", bound=Positioned)


async def positioned_stream(
    queue: asyncio.Queue[dict[str, Any]],
    last: int,
    read_after: Callable[[int], Awaitable[list[T]]],
    still_allowed: Callable[[], Awaitable[bool]],
    wake_type: str,
) -> AsyncIterator[list[T]]:
    """Batches of rows after ``last``, in position order, woken by ``queue``, forever.

    The caller subscribed ``queue`` *before* reading where to start, and every
    wake-up reads the rows after the last delivered position: a row committed
    during the switch-over is delivered once, never lost, never twice. A
    message of another type than ``wake_type`` (a session ended) or a periodic
    resync re-checks ``still_allowed``, and the stream stops when it says no.
    """
    check_session = False
    while True:
        if check_session and not await still_allowed():
            return
        rows = await read_after(last)
        if rows:
            last = rows[-1].position
            yield rows
        if len(rows) == PAGE:
            continue
        try:
            async with asyncio.timeout(RESYNC_SECONDS):
                wake = [await queue.get()]
        except TimeoutError:
            wake = [{"type": "resync"}]
        # Drain whatever else arrived: one database read serves them all.
        while not queue.empty():
            wake.append(queue.get_nowait())
        check_session = any(item.get("type") != wake_type for item in wake)
