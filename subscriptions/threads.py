"""Thread channels and the ephemeral typing stream.

Thread events themselves are streamed by ``subscriptions.feeds``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from subscriptions.bus import Bus
from subscriptions.notifications import member_channel


def thread_channel(thread_id: int) -> str:
    return f"thread:{thread_id}"


def typing_channel(thread_id: int) -> str:
    return f"typing:{thread_id}"


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
