"""Moderation: members report posts; moderators work a queue and decide."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry import relay

from models import community as cm
from models import discussions as dm
from models.moderation import CheckDecision as CheckDecisionRow
from models.moderation import Report
from models.moderation import ReportCategory as ReportCategoryModel
from resolvers import moderation
from resolvers.errors import UserError
from schema.context import Info
from schema.discussions import Post, build_posts
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.members import Member
from schema.pagination import Connection, Edge, db_id, paginate, require_id
from schema.permissions import IsAuthenticated, _HasRole


class IsModerator(_HasRole):
    """Moderators and admins: they see pseudonyms only, never contact data."""

    roles = frozenset({cm.Role.MODERATOR, cm.Role.ADMIN})


@strawberry.enum(description="What a post breaks, by the community rules (section 9).")
class ReportCategory(Enum):
    MISINFORMATION = "misinformation"
    SPAM_OR_TROLLING = "spam_or_trolling"
    SELLING = "selling"
    PERSONAL_ATTACK = "personal_attack"
    ILLEGAL_ACTIVITY = "illegal_activity"
    OFFENSIVE = "offensive"
    PERSONAL_DATA = "personal_data"
    OTHER = "other"


@strawberry.enum
class ModerationDecision(Enum):
    APPROVE = "approve"
    REMOVE = "remove"
    RESTORE = "restore"


@strawberry.enum(description="REPORTED: unsettled reports; HELD: hidden pending review; DECIDED.")
class ModerationQueue(Enum):
    REPORTED = "reported"
    HELD = "held"
    DECIDED = "decided"


@strawberry.type
class CategoryCount:
    category: ReportCategory
    count: int


@strawberry.type(description="An automatic check's decision on a post (see the check pipeline).")
class CheckDecision:
    check: str = strawberry.field(description="The check that decided, e.g. premoderation.")
    action: str = strawberry.field(description="refuse or hold.")
    detail: str = strawberry.field(description="The kind of finding, never the text itself.")
    on_edit: bool
    at: datetime


@strawberry.type(description="A post in a moderation queue, with why it is there.")
class ModerationItem:
    post: Post
    thread_id: relay.GlobalID
    open_reports: int = strawberry.field(description="Reports not yet settled by a decision.")
    reports_by_category: list[CategoryCount]
    report_notes: list[str] = strawberry.field(
        description="Reporters' notes, without who wrote them."
    )
    held_reason: str | None = strawberry.field(
        description="Why the post is held: reports, or the name of the check that held it."
    )
    check_decisions: list[CheckDecision] = strawberry.field(
        description="The automatic checks' decisions on this post, oldest first."
    )
    decision: ModerationDecision | None
    decision_category: ReportCategory | None
    decided_at: datetime | None
    decided_by: Member | None


@strawberry.input
class ReportPostInput:
    post_id: relay.GlobalID
    category: ReportCategory
    note: str = ""


@strawberry.input
class ModeratePostInput:
    post_id: relay.GlobalID
    decision: ModerationDecision
    category: ReportCategory | None = strawberry.field(
        default=None, description="Required to REMOVE: the rule broken (the author is told)."
    )
    note: str = ""


@strawberry.type
class ReportPostSuccess:
    reported: bool = True


@strawberry.type
class ModeratePostSuccess:
    post: Post
    applied: bool = strawberry.field(description="False when the post was already so decided.")


Failure = InputError | NotAllowedError | RateLimitedError
ReportPostResult = Annotated[ReportPostSuccess | Failure, strawberry.union("ReportPostResult")]
ModeratePostResult = Annotated[
    ModeratePostSuccess | Failure, strawberry.union("ModeratePostResult")
]


async def _items(rows: list[dm.Post], viewer: cm.Member, language: str) -> list[ModerationItem]:
    """Queue items for a page of posts: four queries for the whole page."""
    posts = {p.id: p for p in await build_posts(rows, viewer, language)}
    ids = [r.id for r in rows]
    open_reports: dict[int, list[Report]] = {i: [] for i in ids}
    for report in await Report.filter(post_id__in=ids, settled_at__isnull=True).order_by("id"):
        open_reports[report.post_id].append(report)  # type: ignore[attr-defined]
    deciders = {
        m.id: m
        for m in await cm.Member.filter(id__in=[r.decided_by_id for r in rows if r.decided_by_id])
    }
    checks: dict[int, list[CheckDecision]] = {i: [] for i in ids}
    for d in await CheckDecisionRow.filter(post_id__in=ids).order_by("id"):
        checks[d.post_id].append(  # type: ignore[attr-defined]
            CheckDecision(
                check=d.check, action=d.action.value, detail=d.detail, on_edit=d.on_edit, at=d.at
            )
        )
    items = []
    for row in rows:
        reports = open_reports[row.id]
        counts: dict[str, int] = {}
        for report in reports:
            counts[report.category.value] = counts.get(report.category.value, 0) + 1
        decider = deciders.get(row.decided_by_id) if row.decided_by_id else None
        items.append(
            ModerationItem(
                post=posts[row.id],
                thread_id=relay.GlobalID("Thread", str(row.thread_id)),  # type: ignore[attr-defined]
                open_reports=len(reports),
                reports_by_category=[
                    CategoryCount(category=ReportCategory(c), count=n)
                    for c, n in sorted(counts.items())
                ],
                report_notes=[r.note for r in reports if r.note],
                held_reason=row.held_reason,
                check_decisions=checks[row.id],
                decision=ModerationDecision(row.decision) if row.decision else None,
                decision_category=(
                    ReportCategory(row.decision_category) if row.decision_category else None
                ),
                decided_at=row.decided_at,
                decided_by=Member.from_row(decider, language) if decider else None,
            )
        )
    return items


@strawberry.type
class ModerationQuery:
    @strawberry.field(
        permission_classes=[IsModerator],
        description="A moderation queue, newest post first, filtered by area, category and author.",
    )
    async def moderation_queue(
        self,
        info: Info,
        queue: ModerationQueue,
        first: int = 20,
        after: str | None = None,
        area_id: relay.GlobalID | None = None,
        category: ReportCategory | None = None,
        member_id: relay.GlobalID | None = None,
    ) -> Connection[ModerationItem]:
        query: Any
        if queue == ModerationQueue.REPORTED:
            open_posts = Report.filter(settled_at__isnull=True)
            if category is not None:
                open_posts = open_posts.filter(category=category.value)
            ids = await open_posts.distinct().values_list("post_id", flat=True)
            query = dm.Post.filter(id__in=list(ids), status=dm.PostStatus.VISIBLE)
        elif queue == ModerationQueue.HELD:
            query = dm.Post.filter(status=dm.PostStatus.HELD)
            if category is not None:
                held = Report.filter(settled_at__isnull=True, category=category.value)
                query = query.filter(id__in=list(await held.values_list("post_id", flat=True)))
        else:
            query = dm.Post.filter(decided_at__isnull=False)
            if category is not None:
                query = query.filter(decision_category=category.value)
        if area_id is not None:
            area = db_id(area_id.node_id) if area_id.type_name == "Area" else None
            if area is None:
                raise GraphQLError(
                    "`areaId` must be an Area id.", extensions={"code": "BAD_USER_INPUT"}
                )
            query = query.filter(thread__area_id=area)
        if member_id is not None:
            author = db_id(member_id.node_id) if member_id.type_name == "Member" else None
            if author is None:
                raise GraphQLError(
                    "`memberId` must be a Member id.", extensions={"code": "BAD_USER_INPUT"}
                )
            query = query.filter(author_id=author)
        viewer = info.context.member
        assert viewer is not None
        page = await paginate(query.select_related("author"), first, after, lambda row: row)
        items = await _items([e.node for e in page.edges], viewer, info.context.language)
        return Connection(
            edges=[Edge(cursor=e.cursor, node=n) for e, n in zip(page.edges, items, strict=True)],
            page_info=page.page_info,
        )


@strawberry.type
class ModerationMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description=(
            "Report a post for breaking a rule: once per post, a daily cap per member. "
            "Enough distinct reporters hide it pending review."
        ),
    )
    async def report_post(self, info: Info, input: ReportPostInput) -> ReportPostResult:
        member = info.context.member
        assert member is not None
        try:
            await moderation.do_report_post(
                member,
                require_id(input.post_id, "Post", "postId"),
                ReportCategoryModel(input.category.value),
                input.note,
            )
        except UserError as exc:
            return failure(exc, info)
        return ReportPostSuccess()

    @strawberry.mutation(
        permission_classes=[IsModerator],
        description=(
            "Approve, remove (with the rule broken) or restore a post. The same decision "
            "twice is answered, not applied twice; every decision is audited."
        ),
    )
    async def moderate_post(self, info: Info, input: ModeratePostInput) -> ModeratePostResult:
        moderator = info.context.member
        assert moderator is not None
        try:
            row, applied = await moderation.do_moderate_post(
                moderator,
                require_id(input.post_id, "Post", "postId"),
                moderation.Decision(input.decision.value),
                ReportCategoryModel(input.category.value) if input.category else None,
                input.note,
            )
        except UserError as exc:
            return failure(exc, info)
        row = await dm.Post.get(id=row.id).select_related("author")
        post = (await build_posts([row], moderator, info.context.language))[0]
        return ModeratePostSuccess(post=post, applied=applied)
