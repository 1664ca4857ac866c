"""Creating personal notifications, each at the next position of its member's stream."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models.community import Notification, NotificationCounter


async def notify(member_id: int, kind: str, params: dict[str, Any]) -> Notification:
    """Add a notice (call inside the caller's community transaction).

    The counter row stays locked until the caller commits, so this member's
    notices commit in position order and a stream reading "after position p"
    never skips one that commits late.
    """
    bumped = await NotificationCounter.filter(member_id=member_id).update(
        last_position=F("last_position") + 1
    )
    if not bumped:
        try:
            async with in_transaction("community"):  # a savepoint: a lost race is retried
                await NotificationCounter.create(member_id=member_id, last_position=1)
        except IntegrityError:
            await NotificationCounter.filter(member_id=member_id).update(
                last_position=F("last_position") + 1
            )
    counter = await NotificationCounter.get(member_id=member_id)
    return await Notification.create(
        member_id=member_id, kind=kind, params=params, position=counter.last_position
    )
