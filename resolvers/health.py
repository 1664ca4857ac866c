"""Community health for admins: activity, joins and leaves, invitations and responses.

Counts only; computed from pseudonymous rows of the community register.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from models.community import Member, MemberStatus, Role
from models.research import Invitation, InvitationStatus
from resolvers import clock


@dataclass
class Month:
    month: str  # YYYY-MM
    joined: int
    left: int
    invitations: int
    completed: int

    @property
    def response_rate(self) -> float | None:
        return round(self.completed / self.invitations, 4) if self.invitations else None


@dataclass
class Health:
    members: int
    active_30: int
    active_90: int
    active_180: int
    months: list[Month]


def _month(value: datetime) -> str:
    return value.strftime("%Y-%m")


async def community_health(months: int = 12) -> Health:
    now = clock.now()
    members = Member.filter(role=Role.MEMBER)
    active = members.filter(status=MemberStatus.ACTIVE)
    counts = [
        await active.filter(last_active_at__gte=now - timedelta(days=days)).count()
        for days in (30, 90, 180)
    ]
    keys = []
    cursor = now.replace(day=1)
    for _ in range(months):
        keys.append(_month(cursor))
        cursor = (cursor - timedelta(days=1)).replace(day=1)
    table = {k: Month(k, 0, 0, 0, 0) for k in keys}
    since = cursor  # the first day of the month before the oldest listed
    for activated in await members.filter(activated_at__gte=since).values_list(
        "activated_at", flat=True
    ):
        if activated is not None and _month(activated) in table:  # type: ignore[arg-type]
            table[_month(activated)].joined += 1  # type: ignore[arg-type]
    for ended in await members.filter(ended_at__gte=since).values_list("ended_at", flat=True):
        if ended is not None and _month(ended) in table:  # type: ignore[arg-type]
            table[_month(ended)].left += 1  # type: ignore[arg-type]
    for invited, status in await Invitation.filter(invited_at__gte=since).values_list(
        "invited_at", "status"
    ):
        month = table.get(_month(invited))
        if month is not None:
            month.invitations += 1
            month.completed += status == InvitationStatus.COMPLETED
    return Health(
        members=await active.count(),
        active_30=counts[0],
        active_90=counts[1],
        active_180=counts[2],
        months=[table[k] for k in keys],
    )
