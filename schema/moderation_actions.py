"""Moderation actions beyond single posts: threads, members, word lists, and the live feed.

Moderators (and admins) act on pseudonyms only; no type here carries
contact data. Members see their own warnings and suspension on ``me``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry import relay

from models import community as cm
from models import moderation as mm
from resolvers import moderation, sanctions, sessions
from resolvers.errors import UserError
from schema.context import Info
from schema.discussions import Area, Post, Thread, build_posts
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.members import Member
from schema.moderation import IsModerator, ModerationDecision, ReportCategory
from schema.pagination import db_id, require_id
from schema.permissions import IsAuthenticated
from subscriptions.bus import get_bus
from subscriptions.moderation import moderation_stream


@strawberry.enum
class ThreadAction(Enum):
    LOCK = "lock"
    UNLOCK = "unlock"
    PIN = "pin"
    UNPIN = "unpin"


@strawberry.enum(
    description=(
        "WARN (the member must acknowledge before writing again), SUSPEND (read-only until "
        "`until`, or for the next escalation step), UNSUSPEND, PREMODERATE, END_PREMODERATION, "
        "BAN (ends the membership for a rules breach)."
    )
)
class MemberAction(Enum):
    WARN = "warn"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    PREMODERATE = "premoderate"
    END_PREMODERATION = "end_premoderation"
    BAN = "ban"


@strawberry.enum
class WordList(Enum):
    BANNED = "banned"
    SUSPECT = "suspect"


@strawberry.enum
class SanctionKind(Enum):
    WARN = "warn"
    SUSPEND = "suspend"
    PREMODERATE = "premoderate"
    BAN = "ban"


@strawberry.enum(description="What happened, on the moderators' live feed.")
class ModerationFeedKind(Enum):
    POST_ADDED = "post_added"
    POST_EDITED = "post_edited"
    POST_HELD = "post_held"
    REPORT = "report"
    POST_DECISION = "post_decision"
    THREAD_ACTION = "thread_action"
    MEMBER_ACTION = "member_action"


@strawberry.type(description="A moderator's action on a member.")
class Sanction(relay.Node):
    id: relay.NodeID[int]
    kind: SanctionKind
    category: ReportCategory | None
    note: str
    created_at: datetime
    until: datetime | None = strawberry.field(
        description="A suspension's end; a ban's legal-hold end."
    )
    acknowledged_at: datetime | None
    lifted_at: datetime | None

    @classmethod
    def from_row(cls, row: mm.MemberSanction) -> Sanction:
        return cls(
            id=row.id,
            kind=SanctionKind(row.kind.value),
            category=ReportCategory(row.category) if row.category else None,
            note=row.note,
            created_at=row.created_at,
            until=row.until,
            acknowledged_at=row.acknowledged_at,
            lifted_at=row.lifted_at,
        )


@strawberry.type(description="A member as moderators see them: a pseudonym and its record.")
class ModerationMemberRecord:
    member: Member
    status: str = strawberry.field(description="pending, active, resigned or banned.")
    suspended_until: datetime | None
    premoderated: bool
    published_posts: int
    held_posts: int
    removed_posts: int = strawberry.field(description="Removed by moderators.")
    sanctions: list[Sanction] = strawberry.field(description="Newest first.")


@strawberry.type(description="A word or phrase on a moderators' list (stored normalised).")
class ModerationWord(relay.Node):
    id: relay.NodeID[int]
    kind: WordList
    phrase: str = strawberry.field(description="Normalised; a final * matches any ending.")
    language: str


@strawberry.type(description="One entry of the moderators' live feed.")
class ModerationFeedEvent:
    position: int = strawberry.field(description="Resume with `after` set to the last one seen.")
    kind: ModerationFeedKind
    at: datetime
    post: Post | None
    thread_id: relay.GlobalID | None
    member: Member | None = strawberry.field(description="The member the entry is about.")
    actor: Member | None = strawberry.field(description="The moderator who acted; null: automatic.")
    category: ReportCategory | None
    decision: ModerationDecision | None
    action: str | None = strawberry.field(description="The thread or member action.")
    check: str | None = strawberry.field(description="The check (or `reports`) that held a post.")
    detail: str | None
    until: datetime | None
    reports: int | None = strawberry.field(description="Open reports after this one.")


@strawberry.input
class ModerateThreadInput:
    thread_id: relay.GlobalID
    action: ThreadAction
    note: str = ""


@strawberry.input
class ModerateMemberInput:
    member_id: relay.GlobalID
    action: MemberAction
    category: ReportCategory | None = strawberry.field(
        default=None, description="The rule broken: required to WARN, SUSPEND and BAN."
    )
    note: str = ""
    until: datetime | None = strawberry.field(
        default=None,
        description="SUSPEND only: the end. Omitted: the next escalation step (24 h, 72 h, ...).",
    )


@strawberry.input
class AddModerationWordInput:
    kind: WordList
    phrase: str
    language: str = strawberry.field(default="any", description="fi, sv, en or any.")


@strawberry.type
class ModerateThreadSuccess:
    thread: Thread
    applied: bool = strawberry.field(description="False when the thread was already so.")


@strawberry.type
class ModerateMemberSuccess:
    record: ModerationMemberRecord
    sanction: Sanction | None
    applied: bool = strawberry.field(description="False when the member was already so.")


@strawberry.type
class AreaPremoderationSuccess:
    area: Area
    applied: bool


@strawberry.type
class ModerationWordSuccess:
    word: ModerationWord
    added: bool = strawberry.field(description="False when the phrase was already listed.")


@strawberry.type
class AcknowledgeWarningSuccess:
    warning: Sanction


Failure = InputError | NotAllowedError | RateLimitedError
ModerateThreadResult = Annotated[
    ModerateThreadSuccess | Failure, strawberry.union("ModerateThreadResult")
]
ModerateMemberResult = Annotated[
    ModerateMemberSuccess | Failure, strawberry.union("ModerateMemberResult")
]
AreaPremoderationResult = Annotated[
    AreaPremoderationSuccess | Failure, strawberry.union("AreaPremoderationResult")
]
ModerationWordResult = Annotated[
    ModerationWordSuccess | Failure, strawberry.union("ModerationWordResult")
]
AcknowledgeWarningResult = Annotated[
    AcknowledgeWarningSuccess | Failure, strawberry.union("AcknowledgeWarningResult")
]


def _word(row: mm.ModerationWord) -> ModerationWord:
    return ModerationWord(
        id=row.id, kind=WordList(row.kind.value), phrase=row.phrase, language=row.language
    )


async def member_record(member: cm.Member, language: str) -> ModerationMemberRecord:
    from models.discussions import Post as PostRow
    from models.discussions import PostStatus

    counts = {
        status: await PostRow.filter(author_id=member.id, status=status).count()
        for status in (PostStatus.VISIBLE, PostStatus.HELD, PostStatus.MODERATED)
    }
    rows = await mm.MemberSanction.filter(member_id=member.id).order_by("-id").limit(100)
    return ModerationMemberRecord(
        member=Member.from_row(member, language),
        status=member.status.value,
        suspended_until=member.suspended_until,
        premoderated=member.premoderated,
        published_posts=counts[PostStatus.VISIBLE],
        held_posts=counts[PostStatus.HELD],
        removed_posts=counts[PostStatus.MODERATED],
        sanctions=[Sanction.from_row(r) for r in rows],
    )


async def feed_events(
    rows: list[mm.ModerationEvent], viewer: cm.Member, language: str
) -> list[ModerationFeedEvent]:
    """Feed entries for a batch of rows: posts and members in a few queries for all."""
    post_rows = [r.post for r in rows if r.post is not None]
    posts = {p.id: p for p in await build_posts(post_rows, viewer, language)}
    member_ids = {i for r in rows for i in (r.member_id, r.actor_id) if i is not None}
    members = {
        m.id: Member.from_row(m, language) for m in await cm.Member.filter(id__in=member_ids)
    }
    out = []
    for row in rows:
        d = row.details
        thread = row.thread_id  # type: ignore[attr-defined]
        out.append(
            ModerationFeedEvent(
                position=row.position,
                kind=ModerationFeedKind(row.kind.value),
                at=row.created_at,
                post=posts.get(row.post_id) if row.post_id else None,  # type: ignore[attr-defined]
                thread_id=relay.GlobalID("Thread", str(thread)) if thread else None,
                member=members.get(row.member_id) if row.member_id else None,
                actor=members.get(row.actor_id) if row.actor_id else None,
                category=ReportCategory(d["category"]) if d.get("category") else None,
                decision=ModerationDecision(d["decision"]) if d.get("decision") else None,
                action=d.get("action"),
                check=d.get("check"),
                detail=d.get("detail"),
                until=datetime.fromisoformat(d["until"]) if d.get("until") else None,
                reports=d.get("reports"),
            )
        )
    return out


@strawberry.type
class ModerationActionsQuery:
    @strawberry.field(
        permission_classes=[IsModerator],
        description="A member's moderation record, by pseudonym (never contact data).",
    )
    async def moderation_member(
        self, info: Info, member_id: relay.GlobalID
    ) -> ModerationMemberRecord | None:
        node_id = db_id(member_id.node_id) if member_id.type_name == "Member" else None
        row = await cm.Member.get_or_none(id=node_id) if node_id else None
        if row is None:
            return None
        return await member_record(row, info.context.language)

    @strawberry.field(permission_classes=[IsModerator], description="A moderators' word list.")
    async def moderation_words(self, info: Info, kind: WordList) -> list[ModerationWord]:
        rows = await mm.ModerationWord.filter(kind=kind.value).order_by("phrase")
        return [_word(r) for r in rows]


@strawberry.type
class ModerationActionsMutation:
    @strawberry.mutation(
        permission_classes=[IsModerator],
        description="Lock, unlock, pin or unpin a thread (audited; twice is answered once).",
    )
    async def moderate_thread(self, info: Info, input: ModerateThreadInput) -> ModerateThreadResult:
        moderator = info.context.member
        assert moderator is not None
        try:
            row, applied = await moderation.do_moderate_thread(
                moderator,
                require_id(input.thread_id, "Thread", "threadId"),
                moderation.ThreadAction(input.action.value),
                input.note,
            )
        except UserError as exc:
            return failure(exc, info)
        await row.fetch_related("started_by")
        return ModerateThreadSuccess(
            thread=Thread.from_row(row, info.context.language), applied=applied
        )

    @strawberry.mutation(
        permission_classes=[IsModerator],
        description=(
            "Warn, suspend, pre-moderate or ban a member (by pseudonym). Audited; the member "
            "is told in-app (a ban: by email). A ban ends their sessions and websockets at once."
        ),
    )
    async def moderate_member(self, info: Info, input: ModerateMemberInput) -> ModerateMemberResult:
        moderator = info.context.member
        assert moderator is not None
        try:
            row, sanction, applied = await sanctions.do_moderate_member(
                moderator,
                require_id(input.member_id, "Member", "memberId"),
                sanctions.MemberAction(input.action.value),
                mm.ReportCategory(input.category.value) if input.category else None,
                input.note,
                input.until,
            )
        except UserError as exc:
            return failure(exc, info)
        return ModerateMemberSuccess(
            record=await member_record(row, info.context.language),
            sanction=Sanction.from_row(sanction) if sanction else None,
            applied=applied,
        )

    @strawberry.mutation(
        permission_classes=[IsModerator],
        description="Hold every post in an area for approval, or stop doing so (audited).",
    )
    async def set_area_premoderation(
        self, info: Info, area_id: relay.GlobalID, on: bool
    ) -> AreaPremoderationResult:
        moderator = info.context.member
        assert moderator is not None
        try:
            row, applied = await moderation.do_set_area_premoderation(
                moderator, require_id(area_id, "Area", "areaId"), on
            )
        except UserError as exc:
            return failure(exc, info)
        return AreaPremoderationSuccess(area=Area.from_row(row), applied=applied)

    @strawberry.mutation(
        permission_classes=[IsModerator],
        description=(
            "Add a word or phrase to the banned list (posts refused) or the suspect list "
            "(posts held). Matched on normalised text; a final * matches any ending."
        ),
    )
    async def add_moderation_word(
        self, info: Info, input: AddModerationWordInput
    ) -> ModerationWordResult:
        moderator = info.context.member
        assert moderator is not None
        try:
            row, added = await moderation.do_add_word(
                moderator, mm.WordListKind(input.kind.value), input.phrase, input.language
            )
        except UserError as exc:
            return failure(exc, info)
        return ModerationWordSuccess(word=_word(row), added=added)

    @strawberry.mutation(
        permission_classes=[IsModerator],
        description="Remove a word from its list; false if it was not there.",
    )
    async def remove_moderation_word(self, info: Info, id: relay.GlobalID) -> bool:
        moderator = info.context.member
        assert moderator is not None
        node_id = db_id(id.node_id) if id.type_name == "ModerationWord" else None
        if node_id is None:
            return False
        return await moderation.do_remove_word(moderator, node_id)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="I have read a moderator's warning (needed before writing again).",
    )
    async def acknowledge_warning(self, info: Info, id: relay.GlobalID) -> AcknowledgeWarningResult:
        member = info.context.member
        assert member is not None
        try:
            row = await sanctions.do_acknowledge_warning(member, require_id(id, "Sanction", "id"))
        except UserError as exc:
            return failure(exc, info)
        return AcknowledgeWarningSuccess(warning=Sanction.from_row(row))


@strawberry.type
class ModerationActionsSubscription:
    @strawberry.subscription(
        permission_classes=[IsModerator],
        description=(
            "Moderators' live feed: new posts everywhere, reports, holds, and every moderator's "
            "decisions and actions. With `after`, replays every entry after that position, then "
            "goes live with no gap and no duplicate, on any worker."
        ),
    )
    async def moderation_feed(
        self, info: Info, after: int | None = None
    ) -> AsyncGenerator[ModerationFeedEvent, None]:
        session = info.context.session
        assert session is not None
        session_id = session.id
        viewer = session.member
        language = info.context.language

        async def still_allowed() -> bool:
            return await sessions.session_still_exists(session_id)

        async for rows in moderation_stream(get_bus(), viewer.id, after, still_allowed):
            for event in await feed_events(rows, viewer, language):
                yield event
        raise GraphQLError("The session has ended.", extensions={"code": "SESSION_ENDED"})
