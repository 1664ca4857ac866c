"""Discussions: areas, threads, posts (flat, with parent and depth), reactions, live events."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.dataloader import DataLoader
from tortoise.expressions import Subquery

from models import community as cm
from models import discussions as dm
from resolvers import discussions, sessions
from resolvers.errors import UserError
from resolvers.formatting import render_html
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.members import Member
from schema.pagination import (
    Connection,
    Edge,
    PageInfo,
    check_first,
    db_id,
    encode_cursor,
    nodes_in_order,
    paginate,
    require_id,
)
from schema.permissions import IsAuthenticated, IsStaff
from subscriptions.bus import get_bus
from subscriptions.connections import CONNECTIONS
from subscriptions.feeds import EventSnapshot, thread_snapshots
from subscriptions.threads import typing_stream


@strawberry.enum(description="The fixed set of reactions.")
class ReactionKind(Enum):
    LIKE = "like"
    HEART = "heart"
    HELPFUL = "helpful"
    LAUGH = "laugh"
    SAD = "sad"


@strawberry.enum
class PostOrder(Enum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


@strawberry.enum
class ThreadEventKind(Enum):
    POST_ADDED = "post_added"
    POST_EDITED = "post_edited"
    POST_REMOVED = "post_removed"
    REACTIONS_CHANGED = "reactions_changed"
    POST_HIDDEN = "post_hidden"
    POST_RESTORED = "post_restored"


@strawberry.type
class ReactionCount:
    kind: ReactionKind
    count: int
    reacted_by_me: bool


def _viewer(info: Info) -> cm.Member:
    member = info.context.member
    if member is None:
        raise GraphQLError("Sign in first.", extensions={"code": "UNAUTHENTICATED"})
    return member


def _loader(info: Info, name: str, load: Any) -> DataLoader[Any, Any]:
    # One loader per context; cache off, since a websocket context lives long.
    loaders: dict[str, DataLoader[Any, Any]] = info.context.extra.setdefault("loaders", {})
    if name not in loaders:
        loaders[name] = DataLoader(load_fn=load, cache=False)
    return loaders[name]


@strawberry.type(
    description="A post or a reply. Replies carry their parent and depth; lists are flat."
)
class Post(relay.Node):
    id: relay.NodeID[int]
    thread_id: relay.GlobalID
    parent_id: relay.GlobalID | None
    depth: int
    author: Member
    body: str | None = strawberry.field(
        description="Plain text; null when the post was removed (members no longer see it)."
    )
    body_html: str | None = strawberry.field(
        description="The text as safe HTML (escaped, with **bold**, _italic_, links, line breaks)."
    )
    removed: bool = strawberry.field(description="Deleted by its author or removed by a moderator.")
    pending: bool = strawberry.field(
        description="Held for review: only its author and moderators see the text."
    )
    removed_by_moderator: bool
    created_at: datetime
    edited_at: datetime | None
    is_mine: bool
    reactions: list[ReactionCount]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Post | None]:
        member = info.context.member
        ids = [db_id(i) for i in node_ids]
        if member is None:
            return [None for _ in ids]
        rows = (
            await dm.Post.filter(
                discussions.visible_to(member, "thread__area__"), id__in=[i for i in ids if i]
            )
            .filter(discussions.readable_posts(member))
            .select_related("author")
        )
        built = {p.id: p for p in await build_posts(rows, member, info.context.language)}
        return [built.get(i) if i else None for i in ids]


async def build_posts(rows: list[dm.Post], viewer: cm.Member, language: str) -> list[Post]:
    """Post nodes for rows loaded with their author, reactions in two queries for all."""
    counts = await discussions.reaction_counts([r.id for r in rows], viewer.id)
    return [post_node(row, counts.get(row.id, []), viewer, language) for row in rows]


_views: OrderedDict[tuple[Any, ...], ThreadEvent] = OrderedDict()
MASKED_BACKLOG = 500  # others' events kept for a masked viewer until their first post


def _forget_views(member_id: int) -> None:
    """Drop cached views of the member's posts (they carry the old display name)."""
    for key in [k for k, v in _views.items() if v.post.author.id == member_id]:
        del _views[key]


CONNECTIONS.forget_hooks.append(_forget_views)


def event_from_snapshot(
    snapshot: EventSnapshot, thread_gid: relay.GlobalID, viewer: cm.Member, language: str
) -> ThreadEvent:
    """A subscriber's own view of a shared event snapshot, without a query.

    Everything that can differ between viewers is in the view key; subscribers
    with the same key share one object (and so one execution, see share_key).
    """
    post = snapshot.post
    mine = tuple(sorted(kind for member_id, kind in snapshot.reactions if member_id == viewer.id))
    show = discussions.can_read_text(post, viewer)
    is_mine = post.author_id == viewer.id  # type: ignore[attr-defined]
    key = ("thread-event", snapshot.serial, language, show, is_mine, mine)
    view = _views.get(key)
    if view is not None:
        return view
    tally = Counter(kind for _, kind in snapshot.reactions)
    counts = [(kind, n, kind in mine) for kind, n in sorted(tally.items())]
    view = ThreadEvent(
        position=snapshot.position,
        kind=ThreadEventKind(snapshot.kind),
        thread_id=thread_gid,
        post=post_node(post, counts, viewer, language),
        share_key=key,
    )
    _views[key] = view
    if len(_views) > 1024:
        _views.popitem(last=False)
    return view


def post_node(
    row: dm.Post, counts: list[tuple[str, int, bool]], viewer: cm.Member, language: str
) -> Post:
    # Members never see a removed post's text; moderators and admins may.
    removed = row.status in (dm.PostStatus.REMOVED, dm.PostStatus.MODERATED)
    show = discussions.can_read_text(row, viewer)
    return Post(
        id=row.id,
        thread_id=relay.GlobalID("Thread", str(row.thread_id)),  # type: ignore[attr-defined]
        parent_id=(
            relay.GlobalID("Post", str(row.parent_id))  # type: ignore[attr-defined]
            if row.parent_id  # type: ignore[attr-defined]
            else None
        ),
        depth=row.depth,
        author=Member.from_row(row.author, language),
        body=row.body if show else None,
        body_html=render_html(row.body) if show else None,
        removed=removed,
        pending=row.status == dm.PostStatus.HELD,
        removed_by_moderator=row.status == dm.PostStatus.MODERATED,
        created_at=row.created_at,
        edited_at=row.edited_at,
        is_mine=row.author_id == viewer.id,  # type: ignore[attr-defined]
        reactions=[
            ReactionCount(kind=ReactionKind(kind), count=n, reacted_by_me=reacted)
            for kind, n, reacted in counts
        ],
    )


@strawberry.type(description="A discussion thread.")
class Thread(relay.Node):
    id: relay.NodeID[int]
    title: str
    area_id: relay.GlobalID
    started_by: Member
    created_at: datetime
    last_activity_at: datetime
    post_count: int
    last_position: int = strawberry.field(description="Position of the newest event.")
    locked: bool = strawberry.field(description="Locked by a moderator: no new posts.")
    pinned: bool = strawberry.field(description="Pinned by a moderator: listed first.")

    @strawberry.field(description="Posts by others after my read position.")
    async def unread_count(self, info: Info) -> int:
        viewer = _viewer(info)

        async def load(keys: list[int]) -> list[int]:
            counts = await discussions.unread_counts(viewer, keys)
            return [counts.get(k, 0) for k in keys]

        count: int = await _loader(info, "unread", load).load(self.id)
        return count

    @strawberry.field(description="The position I have read up to (0 if never opened).")
    async def read_position(self, info: Info) -> int:
        viewer = _viewer(info)

        async def load(keys: list[int]) -> list[int]:
            positions = await discussions.read_positions(viewer, keys)
            return [positions.get(k, 0) for k in keys]

        position: int = await _loader(info, "read", load).load(self.id)
        return position

    @strawberry.field(
        description=(
            "Posts and replies as one flat list. NEWEST_FIRST or OLDEST_FIRST with "
            "`first`/`after`; or `around` a post: up to `first` posts centred on it, oldest first."
        )
    )
    async def posts(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        order: PostOrder = PostOrder.NEWEST_FIRST,
        around: relay.GlobalID | None = None,
    ) -> Connection[Post]:
        viewer = _viewer(info)
        language = info.context.language
        query = (
            dm.Post.filter(thread_id=self.id)
            .filter(discussions.readable_posts(viewer))
            .select_related("author")
        )
        if around is not None:
            return await _posts_around(query, around, first, viewer, language)

        # Build the whole page's nodes at once: two queries for reactions, none per post.
        page = await paginate(query, first, after, lambda row: row, order == PostOrder.NEWEST_FIRST)
        nodes = await build_posts([edge.node for edge in page.edges], viewer, language)
        return Connection(
            edges=[Edge(cursor=e.cursor, node=n) for e, n in zip(page.edges, nodes, strict=True)],
            page_info=page.page_info,
        )

    @classmethod
    def from_row(cls, row: dm.Thread, language: str) -> Thread:
        return cls(
            id=row.id,
            title=row.title,
            area_id=relay.GlobalID("Area", str(row.area_id)),  # type: ignore[attr-defined]
            started_by=Member.from_row(row.started_by, language),
            created_at=row.created_at,
            last_activity_at=row.last_activity_at,
            post_count=row.post_count,
            last_position=row.last_position,
            locked=row.locked_at is not None,
            pinned=row.pinned_at is not None,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Thread | None]:
        member = info.context.member
        if member is None:
            return [None for _ in node_ids]
        language = info.context.language
        visible = dm.Thread.filter(discussions.visible_to(member, "area__")).filter(
            discussions.readable_threads(member)
        )
        return await nodes_in_order(
            visible.select_related("started_by"), node_ids, lambda r: cls.from_row(r, language)
        )


async def _posts_around(
    query: Any, around: relay.GlobalID, first: int, viewer: cm.Member, language: str
) -> Connection[Post]:
    check_first(first)
    center = db_id(around.node_id) if around.type_name == "Post" else None
    if center is None:
        raise GraphQLError("`around` must be a Post id.", extensions={"code": "BAD_USER_INPUT"})
    before = await query.filter(id__lt=center).order_by("-id").limit(first // 2)
    rest = await query.filter(id__gte=center).order_by("id").limit(first - len(before) + 1)
    rows = [*reversed(before), *rest[: first - len(before)]]
    nodes = await build_posts(rows, viewer, language)
    edges = [Edge(cursor=encode_cursor(r.id), node=n) for r, n in zip(rows, nodes, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rest) > first - len(before),
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


@strawberry.type(description="A discussion area, open to all members or to one group.")
class Area(relay.Node):
    id: relay.NodeID[int]
    title_fi: str
    title_sv: str
    title_en: str
    description_fi: str
    description_sv: str
    description_en: str
    restricted: bool = strawberry.field(description="Visible only to one member group.")
    members_can_start_threads: bool
    premoderated: bool = strawberry.field(
        description="Every post in the area waits for a moderator's approval."
    )

    @strawberry.field(description="The title in the viewer's language.")
    def title(self, info: Info) -> str:
        return {"fi": self.title_fi, "sv": self.title_sv}.get(info.context.language, self.title_en)

    @strawberry.field(description="The description in the viewer's language.")
    def description(self, info: Info) -> str:
        texts = {"fi": self.description_fi, "sv": self.description_sv}
        return texts.get(info.context.language, self.description_en)

    @strawberry.field(description="Threads of the area, newest first.")
    async def threads(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[Thread]:
        language = info.context.language
        return await paginate(
            dm.Thread.filter(area_id=self.id)
            .filter(discussions.readable_threads(_viewer(info)))
            .select_related("started_by"),
            first,
            after,
            lambda row: Thread.from_row(row, language),
        )

    @strawberry.field(description="The area's pinned threads, most recently pinned first.")
    async def pinned_threads(self, info: Info) -> list[Thread]:
        language = info.context.language
        rows = (
            await dm.Thread.filter(area_id=self.id, pinned_at__isnull=False)
            .filter(discussions.readable_threads(_viewer(info)))
            .order_by("-pinned_at", "-id")
            .limit(20)
            .select_related("started_by")
        )
        return [Thread.from_row(row, language) for row in rows]

    @classmethod
    def from_row(cls, row: dm.Area) -> Area:
        return cls(
            id=row.id,
            title_fi=row.title_fi,
            title_sv=row.title_sv,
            title_en=row.title_en,
            description_fi=row.description_fi,
            description_sv=row.description_sv,
            description_en=row.description_en,
            restricted=row.group_id is not None,  # type: ignore[attr-defined]
            members_can_start_threads=row.members_can_start_threads,
            premoderated=row.premoderated,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Area | None]:
        member = info.context.member
        if member is None:
            return [None for _ in node_ids]
        # Restricted areas outside the viewer's groups look like missing ones.
        visible = dm.Area.filter(discussions.visible_to(member))
        return await nodes_in_order(visible, node_ids, cls.from_row)


@strawberry.type(description="One change in a thread; `position` increases by one per event.")
class ThreadEvent:
    position: int
    kind: ThreadEventKind
    thread_id: relay.GlobalID
    post: Post
    # Everything about this payload that differs between viewers: subscribers
    # with equal keys get one shared execution (schema/sharing.py).
    share_key: strawberry.Private[tuple[Any, ...] | None] = None


@strawberry.type(description="Someone is typing in a thread (ephemeral, never stored).")
class TypingSignal:
    thread_id: relay.GlobalID
    member: Member


@strawberry.type(description="A followed thread with posts I have not read.")
class UnreadThread:
    thread: Thread
    unread_count: int


CLIENT_KEY_HELP = "Client-generated key (8-64 of A-Z a-z 0-9 - _): a retry returns the first post."


@strawberry.input
class CreateAreaInput:
    title_fi: str
    title_sv: str
    title_en: str
    description_fi: str = ""
    description_sv: str = ""
    description_en: str = ""
    group_id: relay.GlobalID | None = None
    members_can_start_threads: bool = False
    premoderated: bool = strawberry.field(
        default=False, description="Hold every post in the area for a moderator's approval."
    )


@strawberry.input
class StartThreadInput:
    area_id: relay.GlobalID
    title: str
    body: str
    client_key: str = strawberry.field(description=CLIENT_KEY_HELP)


@strawberry.input
class AddPostInput:
    thread_id: relay.GlobalID
    body: str
    client_key: str = strawberry.field(description=CLIENT_KEY_HELP)
    parent_id: relay.GlobalID | None = strawberry.field(
        default=None, description="The post replied to; replies nest at most 3 deep."
    )


@strawberry.input
class EditPostInput:
    post_id: relay.GlobalID
    body: str


@strawberry.input
class ReactInput:
    post_id: relay.GlobalID
    kind: ReactionKind
    on: bool = strawberry.field(default=True, description="False takes the reaction back.")


@strawberry.type
class CreateAreaSuccess:
    area: Area


@strawberry.type
class StartThreadSuccess:
    thread: Thread
    post: Post


@strawberry.type
class PostSuccess:
    post: Post


@strawberry.type
class MarkThreadReadSuccess:
    read_position: int
    thread: Thread


Failure = InputError | NotAllowedError | RateLimitedError
CreateAreaResult = Annotated[CreateAreaSuccess | Failure, strawberry.union("CreateAreaResult")]
StartThreadResult = Annotated[StartThreadSuccess | Failure, strawberry.union("StartThreadResult")]
AddPostResult = Annotated[PostSuccess | Failure, strawberry.union("AddPostResult")]
EditPostResult = Annotated[PostSuccess | Failure, strawberry.union("EditPostResult")]
DeletePostResult = Annotated[PostSuccess | Failure, strawberry.union("DeletePostResult")]
ReactResult = Annotated[PostSuccess | Failure, strawberry.union("ReactResult")]
MarkThreadReadResult = Annotated[
    MarkThreadReadSuccess | Failure, strawberry.union("MarkThreadReadResult")
]


async def _post_node(post_id: int, info: Info) -> Post:
    row = await dm.Post.get(id=post_id).select_related("author")
    return (await build_posts([row], _viewer(info), info.context.language))[0]


async def _thread_node(thread_id: int, info: Info) -> Thread:
    row = await dm.Thread.get(id=thread_id).select_related("started_by")
    return Thread.from_row(row, info.context.language)


@strawberry.type
class DiscussionsQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated], description="The discussion areas I can see."
    )
    async def areas(self, info: Info) -> list[Area]:
        rows = await dm.Area.filter(discussions.visible_to(_viewer(info))).order_by("id")
        return [Area.from_row(row) for row in rows]

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description=(
            "Followed threads (ones I opened or wrote in) with unread posts, newest activity first."
        ),
    )
    async def unread_threads(self, info: Info, first: int = 50) -> list[UnreadThread]:
        viewer = _viewer(info)
        check_first(first)
        followed = Subquery(dm.ReadPosition.filter(member_id=viewer.id).values("thread_id"))
        rows = (
            await dm.Thread.filter(discussions.visible_to(viewer, "area__"), id__in=followed)
            .filter(discussions.readable_threads(viewer))
            .select_related("started_by")
            .order_by("-last_activity_at")
            .limit(500)
        )
        counts = await discussions.unread_counts(viewer, [r.id for r in rows])
        language = info.context.language
        return [
            UnreadThread(thread=Thread.from_row(r, language), unread_count=counts[r.id])
            for r in rows
            if counts.get(r.id)
        ][:first]


@strawberry.type
class DiscussionsMutation:
    @strawberry.mutation(
        permission_classes=[IsStaff], description="Create a discussion area (staff)."
    )
    async def create_area(self, info: Info, input: CreateAreaInput) -> CreateAreaResult:
        try:
            group_id = (
                require_id(input.group_id, "MemberGroup", "groupId") if input.group_id else None
            )
            area = await discussions.do_create_area(
                _viewer(info),
                {"fi": input.title_fi, "sv": input.title_sv, "en": input.title_en},
                {
                    "fi": input.description_fi,
                    "sv": input.description_sv,
                    "en": input.description_en,
                },
                group_id,
                input.members_can_start_threads,
                input.premoderated,
            )
        except UserError as exc:
            return failure(exc, info)
        return CreateAreaSuccess(area=Area.from_row(area))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Start a thread.")
    async def start_thread(self, info: Info, input: StartThreadInput) -> StartThreadResult:
        try:
            post = await discussions.do_start_thread(
                _viewer(info),
                require_id(input.area_id, "Area", "areaId"),
                input.title,
                input.body,
                input.client_key,
            )
        except UserError as exc:
            return failure(exc, info)
        return StartThreadSuccess(
            thread=await _thread_node(post.thread_id, info),  # type: ignore[attr-defined]
            post=await _post_node(post.id, info),
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Post in a thread, or reply to a post. Idempotent by `clientKey`.",
    )
    async def add_post(self, info: Info, input: AddPostInput) -> AddPostResult:
        try:
            post = await discussions.do_add_post(
                _viewer(info),
                require_id(input.thread_id, "Thread", "threadId"),
                input.body,
                input.client_key,
                require_id(input.parent_id, "Post", "parentId") if input.parent_id else None,
            )
        except UserError as exc:
            return failure(exc, info)
        return PostSuccess(post=await _post_node(post.id, info))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Edit my post within the edit window; earlier text is kept for moderators.",
    )
    async def edit_post(self, info: Info, input: EditPostInput) -> EditPostResult:
        try:
            post = await discussions.do_edit_post(
                _viewer(info), require_id(input.post_id, "Post", "postId"), input.body
            )
        except UserError as exc:
            return failure(exc, info)
        return PostSuccess(post=await _post_node(post.id, info))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Delete my post: it shows as removed and its text is gone for members.",
    )
    async def delete_post(self, info: Info, post_id: relay.GlobalID) -> DeletePostResult:
        try:
            post = await discussions.do_delete_post(
                _viewer(info), require_id(post_id, "Post", "postId")
            )
        except UserError as exc:
            return failure(exc, info)
        return PostSuccess(post=await _post_node(post.id, info))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="React to a post (one of each kind per member), or take it back.",
    )
    async def react(self, info: Info, input: ReactInput) -> ReactResult:
        try:
            post = await discussions.do_react(
                _viewer(info),
                require_id(input.post_id, "Post", "postId"),
                dm.ReactionKind(input.kind.value),
                input.on,
            )
        except UserError as exc:
            return failure(exc, info)
        return PostSuccess(post=await _post_node(post.id, info))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description=(
            "Move my read position in a thread forward (to its end if `position` is omitted)."
        ),
    )
    async def mark_thread_read(
        self, info: Info, thread_id: relay.GlobalID, position: int | None = None
    ) -> MarkThreadReadResult:
        try:
            thread = require_id(thread_id, "Thread", "threadId")
            read = await discussions.do_mark_thread_read(_viewer(info), thread, position)
        except UserError as exc:
            return failure(exc, info)
        return MarkThreadReadSuccess(read_position=read, thread=await _thread_node(thread, info))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Signal that I am typing in a thread (rate-limited; false when dropped).",
    )
    async def send_typing(self, info: Info, thread_id: relay.GlobalID) -> bool:
        try:
            return await discussions.do_send_typing(
                _viewer(info), require_id(thread_id, "Thread", "threadId")
            )
        except UserError:
            return False


async def _subscription_thread(info: Info, thread_id: relay.GlobalID) -> tuple[cm.Session, int]:
    session = info.context.session
    assert session is not None
    try:
        thread = require_id(thread_id, "Thread", "threadId")
        await discussions.access_thread(session.member, thread)
    except UserError:
        raise GraphQLError("Not found.", extensions={"code": "NOT_FOUND"}) from None
    return session, thread


@strawberry.type
class DiscussionsSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description=(
            "A thread's events. With `after`, first replays every event after that position "
            "from the database, then goes live: no gap, no duplicate. Ends when the session ends."
        ),
    )
    async def thread_events(
        self, info: Info, thread_id: relay.GlobalID, after: int | None = None
    ) -> AsyncGenerator[ThreadEvent, None]:
        session, thread = await _subscription_thread(info, thread_id)
        session_id = session.id

        async def still_allowed() -> bool:
            return await sessions.session_still_exists(session_id)

        viewer = session.member
        language = info.context.language
        gid = relay.GlobalID("Thread", str(thread))
        # The worker's feed reads each event once; every subscriber renders its
        # own view of it (permissions, isMine, reactedByMe) without a query.
        snapshots = thread_snapshots(get_bus(), thread, viewer.id, after, still_allowed)
        # A masked study thread: others' events wait until the viewer's own first post.
        masked = await discussions.masked_for(viewer, await dm.Thread.get(id=thread))
        waiting: list[EventSnapshot] = []
        async for snapshot in snapshots:
            if (
                snapshot.kind == dm.EventKind.POST_ADDED.value
                and snapshot.post.status == dm.PostStatus.HELD
                and not discussions.can_read_text(snapshot.post, viewer)
            ):
                continue  # held on arrival: others see it only once approved (POST_RESTORED)
            mine = snapshot.post.author_id == viewer.id  # type: ignore[attr-defined]
            if masked and not mine:
                waiting = [*waiting[-(MASKED_BACKLOG - 1) :], snapshot]
                continue
            if masked:
                masked = False  # my first post: now the others' posts, then mine
                for earlier in waiting:
                    yield event_from_snapshot(earlier, gid, viewer, language)
                waiting = []
            yield event_from_snapshot(snapshot, gid, viewer, language)
        raise GraphQLError("The session has ended.", extensions={"code": "SESSION_ENDED"})

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Who is typing in a thread, live only.",
    )
    async def thread_typing(
        self, info: Info, thread_id: relay.GlobalID
    ) -> AsyncGenerator[TypingSignal, None]:
        session, thread = await _subscription_thread(info, thread_id)
        session_id = session.id

        async def still_allowed() -> bool:
            return await sessions.session_still_exists(session_id)

        gid = relay.GlobalID("Thread", str(thread))
        language = info.context.language
        async for signal in typing_stream(get_bus(), thread, session.member.id, still_allowed):
            if signal.get("member") == session.member.id:
                continue  # not my own typing
            member = await cm.Member.get_or_none(id=signal.get("member"))
            if member is not None:
                yield TypingSignal(thread_id=gid, member=Member.from_row(member, language))
        raise GraphQLError("The session has ended.", extensions={"code": "SESSION_ENDED"})
