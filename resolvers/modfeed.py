"""The moderators' event log: append an entry inside a write, publish it after commit.

Positions come from one counter row, updated as the *last* lock a writing
transaction takes (after member, thread and post rows), so every writer
takes locks in the same order and entries commit in position order: a
moderator's feed resumes after a position without gaps.
"""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models.moderation import ModerationCounter, ModerationEvent, ModerationEventKind
from subscriptions.bus import get_bus
from subscriptions.moderation import MODERATION_CHANNEL


async def append(
    kind: ModerationEventKind,
    *,
    post_id: int | None = None,
    thread_id: int | None = None,
    member_id: int | None = None,
    actor_id: int | None = None,
    **details: Any,
) -> int:
    """Append one entry (inside the caller's community transaction); returns its position."""
    # UPDATE takes the row lock until commit: positions are handed out in commit order.
    if not await ModerationCounter.filter(id=1).update(last_position=F("last_position") + 1):
        try:
            async with in_transaction("community"):  # a savepoint: a lost race is retried
                await ModerationCounter.create(id=1, last_position=1)
        except IntegrityError:
            await ModerationCounter.filter(id=1).update(last_position=F("last_position") + 1)
    counter = await ModerationCounter.get(id=1)
    position = counter.last_position
    await ModerationEvent.create(
        position=position,
        kind=kind,
        post_id=post_id,
        thread_id=thread_id,
        member_id=member_id,
        actor_id=actor_id,
        details={k: v for k, v in details.items() if v is not None},
    )
    return position


async def publish(position: int | None) -> None:
    """Wake the moderators' feeds on every worker (after the commit)."""
    if position is not None:
        await get_bus().publish(MODERATION_CHANNEL, {"type": "moderation", "position": position})
