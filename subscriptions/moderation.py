"""The moderators' live feed: replay after a position, then live, on any worker.

Entries are :class:`models.moderation.ModerationEvent` rows at gap-free
positions committed in order (see ``resolvers.modfeed``). The stream
subscribes to the bus *before* reading, and every wake-up reads the rows
after the last delivered position, so nothing is lost in the switch-over
and nothing is delivered twice; a periodic re-read covers a lost publish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from models.moderation import ModerationCounter, ModerationEvent
from subscriptions.bus import Bus
from subscriptions.notifications import PAGE, member_channel, positioned_stream

MODERATION_CHANNEL = "moderation"


async def moderation_stream(
    bus: Bus,
    member_id: int,
    after: int | None,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[list[ModerationEvent]]:
    """Batches of feed entries after ``after`` (or from now), in position order, forever."""

    async def read_after(last: int) -> list[ModerationEvent]:
        return (
            await ModerationEvent.filter(position__gt=last)
            .order_by("position")
            .limit(PAGE)
            .select_related("post__author")
        )

    async with bus.subscribe(MODERATION_CHANNEL, member_channel(member_id)) as queue:
        counter = await ModerationCounter.get_or_none(id=1)
        newest = counter.last_position if counter else 0
        # No `after`, or one beyond the end (a stale client): from the end.
        last = newest if after is None else min(max(after, 0), newest)
        async for rows in positioned_stream(queue, last, read_after, still_allowed, "moderation"):
            yield rows
