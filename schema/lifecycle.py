"""Membership lifecycle: my data (R12), account locks (R17), community health for admins."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from resolvers import health, privacy, sanctions
from resolvers.errors import UserError
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.members import Member
from schema.moderation import IsModerator
from schema.pagination import require_id
from schema.permissions import IsAdmin, IsAuthenticated


@strawberry.type
class HealthMonth:
    month: str = strawberry.field(description="YYYY-MM")
    joined: int
    left: int
    invitations: int
    completed: int
    response_rate: float | None


@strawberry.type(description="Community health (counts only), for admins.")
class CommunityHealth:
    members: int = strawberry.field(description="Active members now.")
    active_30_days: int
    active_90_days: int
    active_180_days: int
    months: list[HealthMonth] = strawberry.field(description="Newest month first.")


@strawberry.type
class LockSuccess:
    member: Member
    locked: bool
    applied: bool = strawberry.field(description="False when it already was so.")


Failure = InputError | NotAllowedError | RateLimitedError
LockResult = Annotated[LockSuccess | Failure, strawberry.union("LockResult")]


@strawberry.type
class LifecycleQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description=(
            "All data the community holds about me (contact data, profile, research "
            "attributes, posts, answers, invitations, rewards, consents, rules acceptances) "
            "as JSON. Produced through the operator path and audited."
        ),
    )
    async def my_data(self, info: Info) -> JSON:  # type: ignore[valid-type]
        member = info.context.member
        assert member is not None
        return await privacy.export_member_data(member)  # type: ignore[return-value]

    @strawberry.field(permission_classes=[IsAdmin], description="Community health (admins).")
    async def community_health(self, months: int = 12) -> CommunityHealth:
        if not 1 <= months <= 36:
            months = 12
        report = await health.community_health(months)
        return CommunityHealth(
            members=report.members,
            active_30_days=report.active_30,
            active_90_days=report.active_90,
            active_180_days=report.active_180,
            months=[
                HealthMonth(
                    month=m.month,
                    joined=m.joined,
                    left=m.left,
                    invitations=m.invitations,
                    completed=m.completed,
                    response_rate=m.response_rate,
                )
                for m in report.months
            ],
        )


@strawberry.type
class LifecycleMutation:
    @strawberry.mutation(
        permission_classes=[IsModerator],
        description=(
            "Lock an account on suspected misuse (admins; moderators if configured): its "
            "sessions and websockets end, sign-in answers ACCOUNT_LOCKED, and a password-reset "
            "link is emailed so the real member can regain access. Audited."
        ),
    )
    async def lock_account(self, info: Info, member_id: relay.GlobalID, reason: str) -> LockResult:
        actor = info.context.member
        assert actor is not None
        try:
            row, applied = await sanctions.do_lock_account(
                actor, require_id(member_id, "Member", "memberId"), reason
            )
        except UserError as exc:
            return failure(exc, info)
        return LockSuccess(
            member=Member.from_row(row, info.context.language), locked=True, applied=applied
        )

    @strawberry.mutation(
        permission_classes=[IsModerator], description="Unlock an account. Audited."
    )
    async def unlock_account(
        self, info: Info, member_id: relay.GlobalID, reason: str
    ) -> LockResult:
        actor = info.context.member
        assert actor is not None
        try:
            row, applied = await sanctions.do_unlock_account(
                actor, require_id(member_id, "Member", "memberId"), reason
            )
        except UserError as exc:
            return failure(exc, info)
        return LockSuccess(
            member=Member.from_row(row, info.context.language), locked=False, applied=applied
        )
