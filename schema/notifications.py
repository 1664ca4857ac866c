"""Personal notifications: list, mark read, and the resumable live subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry import relay

from models import community as m
from resolvers import clock, sessions
from schema.context import Info
from schema.pagination import Connection, nodes_in_order, paginate
from schema.permissions import IsAuthenticated
from subscriptions.bus import get_bus
from subscriptions.notifications import notification_stream


@strawberry.type(
    description="A personal notice. `position` orders a member's notices and resumes streams."
)
class Notification(relay.Node):
    id: relay.NodeID[int]
    position: int
    kind: str = strawberry.field(
        description=(
            "RULES_CHANGED (subject: the rules version), REPLY (subject: the reply), "
            "POST_REMOVED_BY_MODERATOR (subject: my post; `category`: the rule broken), "
            "WARNING (subject: the warning, to acknowledge; `category`), SUSPENDED "
            "(subject: the suspension; `category`; `until`), STUDY_INVITATION and "
            "STUDY_REMINDER (subject: the study, for `myStudy`), REWARD_WON (subject: "
            "my reward), INACTIVITY_WARNING (`until`: when the membership ends unless I take "
            "part) or RULES_CHANGED."
        )
    )
    subject_id: relay.GlobalID | None = strawberry.field(
        description="The node the notice is about, if any."
    )
    category: str | None = strawberry.field(
        description="For POST_REMOVED_BY_MODERATOR: the rule the post broke."
    )
    until: datetime | None = strawberry.field(
        default=None,
        description=(
            "SUSPENDED: when writing is allowed again; INACTIVITY_WARNING: when the "
            "membership ends."
        ),
    )
    created_at: datetime
    read: bool

    @classmethod
    def from_row(cls, row: m.Notification) -> Notification:
        subject = None
        if "rulesVersionId" in row.params:
            subject = relay.GlobalID("RulesVersion", str(row.params["rulesVersionId"]))
        elif "postId" in row.params:
            subject = relay.GlobalID("Post", str(row.params["postId"]))
        elif "rewardId" in row.params:
            subject = relay.GlobalID("MyReward", str(row.params["rewardId"]))
        elif "studyId" in row.params:
            subject = relay.GlobalID("Study", str(row.params["studyId"]))
        elif "sanctionId" in row.params:
            subject = relay.GlobalID("Sanction", str(row.params["sanctionId"]))
        return cls(
            id=row.id,
            position=row.position,
            kind=row.kind,
            subject_id=subject,
            category=(row.params.get("category") or "").upper() or None,
            until=datetime.fromisoformat(row.params["until"]) if row.params.get("until") else None,
            created_at=row.created_at,
            read=row.read_at is not None,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Notification | None]:
        me = info.context.member
        if me is None:
            return [None for _ in node_ids]
        # Only one's own notices are visible.
        return await nodes_in_order(m.Notification.filter(member_id=me.id), node_ids, cls.from_row)


@strawberry.type
class NotificationsQuery:
    @strawberry.field(permission_classes=[IsAuthenticated], description="My notices, newest first.")
    async def notifications(
        self, info: Info, first: int = 20, after: str | None = None, unread_only: bool = False
    ) -> Connection[Notification]:
        member = info.context.member
        assert member is not None
        query = m.Notification.filter(member_id=member.id)
        if unread_only:
            query = query.filter(read_at__isnull=True)
        return await paginate(query, first, after, Notification.from_row)


@strawberry.type
class NotificationsMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Mark my notices up to a position (all if omitted) as read; returns how many.",
    )
    async def mark_notifications_read(self, info: Info, up_to: int | None = None) -> int:
        member = info.context.member
        assert member is not None
        query = m.Notification.filter(member_id=member.id, read_at__isnull=True)
        if up_to is not None:
            query = query.filter(position__lte=up_to)
        return await query.update(read_at=clock.now())


@strawberry.type
class NotificationsSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description=(
            "My notices as they arrive. With `after`, first replays every notice after that "
            "position, then goes live with no gap and no duplicate. Ends when the session ends."
        ),
    )
    async def notifications(
        self, info: Info, after: int | None = None
    ) -> AsyncGenerator[Notification, None]:
        session = info.context.session
        assert session is not None
        session_id = session.id

        async def still_allowed() -> bool:
            return await sessions.session_still_exists(session_id)

        stream = notification_stream(get_bus(), session.member.id, after, still_allowed)
        async for row in stream:
            yield Notification.from_row(row)
        raise GraphQLError("The session has ended.", extensions={"code": "SESSION_ENDED"})
