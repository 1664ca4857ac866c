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


CHUNK = 500


async def notify_many(member_ids: list[int], kind: str, params: dict[str, Any]) -> None:
    """The same notice for many members in a few statements per 500 (a launch, new rules).

    Counter rows are locked in member-id order (then bumped in one UPDATE), so two
    bulk notices never wait on each other in a cycle; as in :func:`notify`, the
    locks are held until the caller commits.
    """
    ids = sorted(set(member_ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found: list[Any] = await NotificationCounter.filter(member_id__in=chunk).values_list(
            "member_id", flat=True
        )
        missing = sorted(set(chunk) - {int(m) for m in found})
        if missing:
            try:
                async with in_transaction("community"):  # a savepoint
                    await NotificationCounter.bulk_create(
                        [NotificationCounter(member_id=m, last_position=0) for m in missing]
                    )
            except IntegrityError:
                # A first notice for one of them raced in: one at a time, each may be taken.
                for member_id in missing:
                    try:
                        async with in_transaction("community"):
                            await NotificationCounter.create(member_id=member_id, last_position=0)
                    except IntegrityError:
                        pass
        await (
            NotificationCounter.filter(member_id__in=chunk)
            .order_by("member_id")
            .select_for_update(no_key=True)
            .values_list("id", flat=True)
        )
        await NotificationCounter.filter(member_id__in=chunk).update(
            last_position=F("last_position") + 1
        )
        positions = dict(
            await NotificationCounter.filter(member_id__in=chunk).values_list(
                "member_id", "last_position"
            )
        )
        await Notification.bulk_create(
            [
                Notification(member_id=m, kind=kind, params=params, position=positions[m])
                for m in chunk
            ]
        )
