"""The moderators' event log: append an entry inside a write, publish it after commit.

Positions come from one counter row, updated as the *last* lock a writing
transaction takes (after member, thread and post rows), so every writer
takes locks in the same order and entries commit in position order: a
moderator's feed resumes after a position without gaps.
"""

from __future__ import annotations

from typing import Any

from tortoise.connection import get_connection
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
    # RETURNING: one round trip with the lock held (every write in the community
    # takes this lock last, so it is held as briefly as possible).
    rows = await get_connection("community").execute_query_dict(
        "UPDATE moderation_counter SET last_position = last_position + 1 WHERE id = 1"
        " RETURNING last_position"
    )
    if rows:
        position = int(rows[0]["last_position"])
    else:
        try:
            async with in_transaction("community"):  # a savepoint: a lost race is retried
                await ModerationCounter.create(id=1, last_position=1)
            position = 1
        except IntegrityError:
            await ModerationCounter.filter(id=1).update(last_position=F("last_position") + 1)
            position = (await ModerationCounter.get(id=1)).last_position
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
