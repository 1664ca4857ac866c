"""Discussions: areas, threads, posts and replies, reactions, read positions.

Every visible change appends a :class:`ThreadEvent` whose position is the
thread's ``last_position`` + 1, taken under the thread row's lock in the same
transaction (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite has one writer),
so positions in a thread are gap-free and committed in order. After the
commit the position is published on the thread's channel; subscribers read
the events from the database, so a lost publish only delays delivery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from config import get_settings
from models.community import GroupMembership, Member, MemberStatus, Role
from models.discussions import (
    Area,
    EventKind,
    Post,
    PostEdit,
    PostStatus,
    Reaction,
    ReactionKind,
    ReadPosition,
    Thread,
    ThreadEvent,
)
from models.moderation import ModerationEventKind
from models.research import Invitation, InvitationStatus
from resolvers import audit, clock, crypto, modfeed
from resolvers.errors import Code, UserError
from resolvers.formatting import clean_text
from resolvers.notices import notify
from resolvers.postchecks import CheckRefused, PostContext, Verdict, record, run_checks
from resolvers.rules import check_can_write
from resolvers.studies import check_area_writable
from resolvers.throttle import count_in_window
from subscriptions.bus import get_bus
from subscriptions.connections import CONNECTIONS
from subscriptions.notifications import member_channel
from subscriptions.threads import thread_channel, typing_channel

MAX_DEPTH = 3
TITLE_MAX = 200
DESCRIPTION_MAX = 5000
CLIENT_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STAFF = (Role.MODERATOR, Role.RESEARCHER, Role.ADMIN)


def is_staff(member: Member) -> bool:
    return member.role in STAFF


def can_read_text(post: Post, viewer: Member) -> bool:
    """Who may read a post's text: anyone for a visible post; its author while it
    is held for review; moderators and admins always (they review and restore)."""
    if post.status == PostStatus.VISIBLE or viewer.role in (Role.MODERATOR, Role.ADMIN):
        return True
    return post.status == PostStatus.HELD and post.author_id == viewer.id  # type: ignore[attr-defined]


def readable_posts(viewer: Member) -> Q:
    """A filter for posts the viewer may see at all: a held post only by its author
    and moderators (to others it does not exist until approved), and in a masked
    area others' posts only once the viewer has posted in the thread."""
    if viewer.role in (Role.MODERATOR, Role.ADMIN):
        return Q()
    mine = Q(author_id=viewer.id)
    not_held = ~Q(status=PostStatus.HELD)
    if is_staff(viewer):
        return not_held | mine
    # Masked study areas: others' posts only in threads where the viewer has posted.
    my_threads: Any = Subquery(Post.filter(author_id=viewer.id).values("thread_id"))
    unmasked = Q(thread__area__masked=False) | Q(thread_id__in=my_threads)
    return (not_held & unmasked) | mine


def readable_threads(viewer: Member) -> Q:
    """A filter for threads the viewer may see at all: a thread whose first post is
    held is seen only by whoever started it and by moderators."""
    if viewer.role in (Role.MODERATOR, Role.ADMIN):
        return Q()
    return Q(held=False) | Q(started_by_id=viewer.id)


async def masked_for(viewer: Member, thread: Thread) -> bool:
    """In a masked area a member sees others' posts in a thread only after posting there."""
    if is_staff(viewer):
        return False
    area = await Area.get(id=thread.area_id)  # type: ignore[attr-defined]
    if not area.masked:
        return False
    return not await Post.filter(thread_id=thread.id, author_id=viewer.id).exists()


# --- access ---------------------------------------------------------------


def visible_to(member: Member, area_path: str = "") -> Q:
    """A filter for rows in areas the member may see: open ones and their groups'.

    ``area_path`` leads from the filtered model to its area: "" for Area,
    "area__" for Thread, "thread__area__" for Post. Staff see every area.
    One query: the member's groups are a subquery, not a separate read.
    """
    if is_staff(member):
        return Q()
    groups: Any = Subquery(GroupMembership.filter(member_id=member.id).values("group_id"))
    # A study's discussion area: only its invited members who have not declined.
    studies: Any = Subquery(
        Invitation.filter(member_id=member.id)
        .exclude(status=InvitationStatus.DECLINED)
        .values("study_id")
    )
    is_open: dict[str, Any] = {
        f"{area_path}group_id__isnull": True,
        f"{area_path}study_id__isnull": True,
    }
    in_my_groups: dict[str, Any] = {f"{area_path}group_id__in": groups}
    in_my_studies: dict[str, Any] = {f"{area_path}study_id__in": studies}
    return Q(**is_open) | Q(**in_my_groups) | Q(**in_my_studies)


async def access_area(member: Member, area_id: int) -> Area:
    # Missing and restricted areas get the same answer: restricted stays secret.
    area = await Area.filter(visible_to(member), id=area_id).first()
    if area is None:
        raise UserError(Code.NOT_FOUND)
    return area


async def access_thread(member: Member, thread_id: int) -> Thread:
    thread = await Thread.filter(readable_threads(member), id=thread_id).first()
    if thread is None:
        raise UserError(Code.NOT_FOUND)
    await access_area(member, thread.area_id)  # type: ignore[attr-defined]
    return thread


async def access_post(member: Member, post_id: int) -> Post:
    # Held posts and masked threads' posts are missing to those who may not see them.
    post = await Post.filter(readable_posts(member), id=post_id).first()
    if post is None:
        raise UserError(Code.NOT_FOUND)
    await access_thread(member, post.thread_id)  # type: ignore[attr-defined]
    return post


# --- checks ---------------------------------------------------------------


def check_client_key(client_key: str) -> str:
    if not CLIENT_KEY_RE.match(client_key):
        raise UserError(Code.CLIENT_KEY_INVALID, field="clientKey")
    return client_key


async def _checked(
    member: Member, area: Area, body: str, **more: Any
) -> tuple[Member, Verdict | None]:
    """Lock the member's row and run the post checks (inside the write's transaction).

    The lock makes the rate limit exact under a burst of parallel requests,
    and gives the checks the member's current flags (pre-moderation).
    """
    locked = await Member.filter(id=member.id).select_for_update(no_key=True).get()
    return locked, await run_checks(PostContext(locked, area, body, **more))


async def _refused(member: Member, refused: CheckRefused, on_edit: bool) -> None:
    """Record a refusal (after the write rolled back: nothing of the text is kept)."""
    await record(member.id, refused.verdict, None, on_edit)


# --- writes ---------------------------------------------------------------


@dataclass
class Published:
    """What a write must publish after its commit."""

    thread_id: int
    position: int
    notify_member_ids: tuple[int, ...] = ()
    moderation_position: int | None = None


_NEXT_POSITION_PG = (
    "UPDATE thread SET last_position = last_position + 1, last_activity_at = $1,"
    " post_count = post_count + $2 WHERE id = $3 RETURNING last_position"
)
_NEXT_POSITION_SQLITE = _NEXT_POSITION_PG.replace("$1", "?").replace("$2", "?").replace("$3", "?")


async def _append_event(thread_id: int, kind: EventKind, post_id: int, new_posts: int = 0) -> int:
    """Append one event (inside the caller's community transaction); returns its position.

    One ``UPDATE ... RETURNING`` takes the next position, counts ``new_posts``
    and locks the thread row until commit, so positions are committed in order
    and the row is held for as few round trips as possible (every other write
    to the thread waits for it). On PostgreSQL an UPDATE of non-key columns
    takes FOR NO KEY UPDATE, which does not conflict with the KEY SHARE locks
    that inserting posts (foreign keys to the thread) take: no deadlock.
    """
    conn = get_connection("community")
    sql = _NEXT_POSITION_PG if conn.capabilities.dialect == "postgres" else _NEXT_POSITION_SQLITE
    rows = await conn.execute_query_dict(sql, [clock.now(), new_posts, thread_id])
    position = int(rows[0]["last_position"])
    await ThreadEvent.create(thread_id=thread_id, position=position, kind=kind, post_id=post_id)
    return position


async def _publish(published: Published) -> None:
    bus = get_bus()
    if published.position:
        await bus.publish(
            thread_channel(published.thread_id),
            {"type": "thread", "thread": published.thread_id, "position": published.position},
        )
    for member_id in published.notify_member_ids:
        await bus.publish(member_channel(member_id), {"type": "notification"})
    await modfeed.publish(published.moderation_position)


async def _touch_activity(member: Member) -> None:
    member.last_active_at = clock.now()
    await Member.filter(id=member.id).update(last_active_at=member.last_active_at)


async def do_create_area(
    actor: Member,
    titles: dict[str, str],
    descriptions: dict[str, str],
    group_id: int | None,
    members_can_start_threads: bool,
    premoderated: bool = False,
) -> Area:
    if not is_staff(actor):
        raise UserError(Code.NOT_FOUND)
    for lang in ("fi", "sv", "en"):
        titles[lang] = clean_text(titles[lang], TITLE_MAX, field=f"title{lang.title()}")
        text = descriptions.get(lang, "")
        descriptions[lang] = (
            clean_text(text, DESCRIPTION_MAX, field=f"description{lang.title()}")
            if text.strip()
            else ""
        )
    if group_id is not None:
        from models.community import MemberGroup

        if not await MemberGroup.exists(id=group_id):
            raise UserError(Code.NOT_FOUND, field="groupId")
    async with in_transaction("community"):
        area = await Area.create(
            title_fi=titles["fi"],
            title_sv=titles["sv"],
            title_en=titles["en"],
            description_fi=descriptions["fi"],
            description_sv=descriptions["sv"],
            description_en=descriptions["en"],
            group_id=group_id,
            members_can_start_threads=members_can_start_threads,
            premoderated=premoderated,
            created_by_id=actor.id,
        )
        await audit.record(actor, "area.create", area=area.id)
    return area


async def _existing_post(member: Member, client_key: str) -> Post | None:
    return await Post.get_or_none(author_id=member.id, client_key=client_key)


async def do_start_thread(
    member: Member, area_id: int, title: str, body: str, client_key: str
) -> Post:
    """Start a thread with its first post; a retried key returns the first post."""
    check_client_key(client_key)
    existing = await _existing_post(member, client_key)
    if existing is not None:
        return existing
    await check_can_write(member)
    area = await access_area(member, area_id)
    if not area.members_can_start_threads and not is_staff(member):
        raise UserError(Code.STAFF_STARTS_THREADS)
    await check_area_writable(area)
    title = clean_text(title, TITLE_MAX, field="title")
    body = clean_text(body, get_settings().post_max_length)
    try:
        async with in_transaction("community"):
            member, verdict = await _checked(member, area, body, title=title, client_key=client_key)
            thread = await Thread.create(
                area=area,
                title=title,
                started_by=member,
                last_activity_at=clock.now(),
                held=verdict is not None,
            )
            post = await Post.create(
                thread=thread,
                author=member,
                body=body,
                client_key=client_key,
                depth=0,
                created_at=clock.now(),
                status=PostStatus.HELD if verdict else PostStatus.VISIBLE,
                held_reason=verdict.check if verdict else None,
            )
            position = await _append_event(thread.id, EventKind.POST_ADDED, post.id, new_posts=1)
            moderation = await _post_written(member, post, thread.id, verdict)
    except CheckRefused as refused:
        await _refused(member, refused, on_edit=False)
        raise
    except IntegrityError:
        # The same key raced in from another connection: answer with the first.
        existing = await _existing_post(member, client_key)
        if existing is None:
            raise
        return existing
    await _mark_read(member.id, thread.id, position)
    await _touch_activity(member)
    await _publish(Published(thread.id, position, moderation_position=moderation))
    return post


async def _post_written(member: Member, post: Post, thread_id: int, verdict: Verdict | None) -> int:
    """Record the checks' hold (if any) and tell the moderators' feed; returns its position."""
    if verdict is not None:
        await record(member.id, verdict, post.id, on_edit=False)
    return await modfeed.append(
        ModerationEventKind.POST_HELD if verdict else ModerationEventKind.POST_ADDED,
        post_id=post.id,
        thread_id=thread_id,
        member_id=member.id,
        check=verdict.check if verdict else None,
        detail=verdict.detail if verdict else None,
    )


async def do_add_post(
    member: Member, thread_id: int, body: str, client_key: str, parent_id: int | None = None
) -> Post:
    """Post or reply; a retried client key returns the first post, never a second."""
    check_client_key(client_key)
    existing = await _existing_post(member, client_key)
    if existing is not None:
        return existing
    await check_can_write(member)
    thread = await access_thread(member, thread_id)
    if thread.locked_at is not None and not is_staff(member):
        raise UserError(Code.THREAD_LOCKED)
    area = await Area.get(id=thread.area_id)  # type: ignore[attr-defined]
    await check_area_writable(area)
    depth = 0
    parent: Post | None = None
    if parent_id is not None:
        parent = await Post.filter(
            readable_posts(member), id=parent_id, thread_id=thread.id
        ).first()
        if parent is None:
            raise UserError(Code.NOT_FOUND, field="parentId")
        if parent.status != PostStatus.VISIBLE:
            raise UserError(Code.POST_REMOVED, field="parentId")
        depth = parent.depth + 1
        if depth > MAX_DEPTH:
            raise UserError(Code.REPLY_TOO_DEEP, field="parentId", max=MAX_DEPTH)
    body = clean_text(body, get_settings().post_max_length)
    notified: tuple[int, ...] = ()
    try:
        async with in_transaction("community"):
            member, verdict = await _checked(member, area, body, client_key=client_key)
            post = await Post.create(
                thread=thread,
                author=member,
                parent=parent,
                depth=depth,
                body=body,
                client_key=client_key,
                created_at=clock.now(),
                status=PostStatus.HELD if verdict else PostStatus.VISIBLE,
                held_reason=verdict.check if verdict else None,
            )
            position = await _append_event(thread.id, EventKind.POST_ADDED, post.id, new_posts=1)
            parent_author = parent.author_id if parent is not None else None  # type: ignore[attr-defined]
            if verdict is None and parent_author is not None and parent_author != member.id:
                author = await Member.get(id=parent_author)
                if author.status == MemberStatus.ACTIVE:
                    await notify(author.id, "REPLY", {"postId": post.id, "threadId": thread.id})
                    notified = (author.id,)
            moderation = await _post_written(member, post, thread.id, verdict)
    except CheckRefused as refused:
        await _refused(member, refused, on_edit=False)
        raise
    except IntegrityError:
        existing = await _existing_post(member, client_key)
        if existing is None:
            raise
        return existing
    # After the commit: the thread row is not held for it (the author's own post
    # is read; a crash here leaves it unread, nothing else).
    await _mark_read(member.id, thread.id, position)
    await _touch_activity(member)
    await _publish(Published(thread.id, position, notified, moderation))
    return post


async def do_edit_post(member: Member, post_id: int, body: str) -> Post:
    post = await access_post(member, post_id)
    if post.author_id != member.id:  # type: ignore[attr-defined]
        raise UserError(Code.NOT_AUTHOR)
    if post.status != PostStatus.VISIBLE:
        raise UserError(Code.POST_REMOVED)
    minutes = get_settings().edit_window_minutes
    if clock.now() - post.created_at > timedelta(minutes=minutes):
        raise UserError(Code.EDIT_WINDOW_CLOSED, minutes=minutes)
    await check_can_write(member)
    body = clean_text(body, get_settings().post_max_length)
    if body == post.body:
        return post
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    if thread.locked_at is not None and not is_staff(member):
        raise UserError(Code.THREAD_LOCKED)
    area = await Area.get(id=thread.area_id)  # type: ignore[attr-defined]
    await check_area_writable(area)
    try:
        async with in_transaction("community"):
            member, verdict = await _checked(member, area, body, is_edit=True, post_id=post.id)
            # Moderators keep every earlier version.
            await PostEdit.create(post=post, old_body=post.body)
            post.body = body
            post.edited_at = clock.now()
            fields = ["body", "edited_at"]
            if verdict is not None:
                # Held on edit: members' views drop the post until a moderator decides.
                post.status = PostStatus.HELD
                post.held_reason = verdict.check
                fields += ["status", "held_reason"]
                await record(member.id, verdict, post.id, on_edit=True)
            await post.save(update_fields=fields)
            position = await _append_event(
                thread.id, EventKind.POST_HIDDEN if verdict else EventKind.POST_EDITED, post.id
            )
            moderation = await modfeed.append(
                ModerationEventKind.POST_HELD if verdict else ModerationEventKind.POST_EDITED,
                post_id=post.id,
                thread_id=thread.id,
                member_id=member.id,
                check=verdict.check if verdict else None,
                detail=verdict.detail if verdict else None,
                edit=True,
            )
    except CheckRefused as refused:
        await _refused(member, refused, on_edit=True)
        raise
    await _publish(Published(thread.id, position, moderation_position=moderation))
    return post


async def do_delete_post(member: Member, post_id: int) -> Post:
    """Soft delete by the author: shown as removed, the text no longer served to members."""
    post = await access_post(member, post_id)
    if post.author_id != member.id:  # type: ignore[attr-defined]
        raise UserError(Code.NOT_AUTHOR)
    if post.status in (PostStatus.REMOVED, PostStatus.MODERATED):
        return post  # deleting twice is answered, not applied twice
    async with in_transaction("community"):
        post.status = PostStatus.REMOVED
        post.removed_at = clock.now()
        await post.save(update_fields=["status", "removed_at"])
        position = await _append_event(post.thread_id, EventKind.POST_REMOVED, post.id)  # type: ignore[attr-defined]
    await _publish(Published(post.thread_id, position))  # type: ignore[attr-defined]
    return post


async def do_react(member: Member, post_id: int, kind: ReactionKind, on: bool) -> Post:
    """Add (``on``) or take back one reaction; one of each kind per member per post."""
    post = await access_post(member, post_id)
    if post.status != PostStatus.VISIBLE:
        raise UserError(Code.POST_REMOVED)
    await check_can_write(member)
    if not is_staff(member):
        # Each change is an event every subscriber of the thread receives.
        key = crypto.throttle_key("reactions", f"member:{member.id}")
        count, wait = await count_in_window(key, 60)
        if count > get_settings().reactions_per_minute:
            raise UserError(Code.TOO_MANY_REACTIONS, retry_after=wait)
    changed = False
    try:
        async with in_transaction("community"):
            if on:
                if not await Reaction.exists(post_id=post.id, member_id=member.id, kind=kind):
                    await Reaction.create(post=post, member=member, kind=kind)
                    changed = True
            else:
                changed = bool(
                    await Reaction.filter(post_id=post.id, member_id=member.id, kind=kind).delete()
                )
            if changed:
                position = await _append_event(
                    post.thread_id,  # type: ignore[attr-defined]
                    EventKind.REACTIONS_CHANGED,
                    post.id,
                )
    except IntegrityError:
        return post  # the same reaction raced in: it exists once, as asked
    if changed:
        await _touch_activity(member)
        await _publish(Published(post.thread_id, position))  # type: ignore[attr-defined]
    return post


async def _mark_read(member_id: int, thread_id: int, position: int) -> None:
    updated = await ReadPosition.filter(
        member_id=member_id, thread_id=thread_id, position__lt=position
    ).update(position=position, updated_at=clock.now())
    if not updated and not await ReadPosition.exists(member_id=member_id, thread_id=thread_id):
        try:
            async with in_transaction("community"):
                await ReadPosition.create(
                    member_id=member_id, thread_id=thread_id, position=position
                )
        except IntegrityError:
            await ReadPosition.filter(
                member_id=member_id, thread_id=thread_id, position__lt=position
            ).update(position=position)


async def do_mark_thread_read(member: Member, thread_id: int, position: int | None) -> int:
    """Move the read position forward (never back); returns the position in force."""
    thread = await access_thread(member, thread_id)
    target = (
        thread.last_position if position is None else min(max(position, 0), thread.last_position)
    )
    await _mark_read(member.id, thread.id, target)
    row = await ReadPosition.get_or_none(member_id=member.id, thread_id=thread.id)
    return row.position if row else 0


_last_typing: dict[tuple[int, int], float] = {}


def _forget_typing(member_id: int) -> None:
    for key in [k for k in _last_typing if k[0] == member_id]:
        del _last_typing[key]


CONNECTIONS.forget_hooks.append(_forget_typing)


async def do_send_typing(member: Member, thread_id: int) -> bool:
    """Tell the thread's viewers the member is typing. Never stored; rate-limited.

    Returns False when the signal was dropped by the rate limit.
    """
    await access_thread(member, thread_id)
    now = clock.now().timestamp()
    key = (member.id, thread_id)
    if now - _last_typing.get(key, 0.0) < get_settings().typing_interval_seconds:
        return False
    _last_typing[key] = now
    if len(_last_typing) > 10_000:  # bounded: forget the oldest signals
        for old in sorted(_last_typing, key=_last_typing.__getitem__)[:5_000]:
            del _last_typing[old]
    await get_bus().publish(typing_channel(thread_id), {"type": "typing", "member": member.id})
    return True


# --- reads ----------------------------------------------------------------


async def reaction_counts(
    post_ids: list[int], viewer_id: int | None
) -> dict[int, list[tuple[str, int, bool]]]:
    """Per post: (kind, count, reacted by the viewer), in two queries for a whole page."""
    if not post_ids:
        return {}
    counts = (
        await Reaction.filter(post_id__in=post_ids)
        .annotate(n=Count("id"))
        .group_by("post_id", "kind")
        .values_list("post_id", "kind", "n")
    )
    mine: set[tuple[int, str]] = set()
    if viewer_id is not None:
        mine = {
            (post_id, str(kind))
            for post_id, kind in await Reaction.filter(
                post_id__in=post_ids, member_id=viewer_id
            ).values_list("post_id", "kind")
        }
    out: dict[int, list[tuple[str, int, bool]]] = {pid: [] for pid in post_ids}
    for post_id, kind, n in counts:
        out[post_id].append((str(kind), int(n), (post_id, str(kind)) in mine))
    for items in out.values():
        items.sort()
    return out


async def unread_counts(member: Member, thread_ids: list[int]) -> dict[int, int]:
    """New posts by others after the member's read position, per thread, in two queries."""
    if not thread_ids:
        return {}
    read = dict(
        await ReadPosition.filter(member_id=member.id, thread_id__in=thread_ids).values_list(
            "thread_id", "position"
        )
    )
    # One grouped count: events after each thread's own read position.
    after = [Q(thread_id=t, position__gt=read.get(t, 0)) for t in thread_ids]
    rows = (
        await ThreadEvent.filter(Q(*after, join_type="OR"), kind=EventKind.POST_ADDED)
        .exclude(post__author_id=member.id)
        .exclude(post__status=PostStatus.HELD)
        .annotate(n=Count("id"))
        .group_by("thread_id")
        .values_list("thread_id", "n")
    )
    counts = dict.fromkeys(thread_ids, 0)
    counts.update({thread_id: int(n) for thread_id, n in rows})
    return counts


async def read_positions(member: Member, thread_ids: list[int]) -> dict[int, int]:
    rows = await ReadPosition.filter(member_id=member.id, thread_id__in=thread_ids).values_list(
        "thread_id", "position"
    )
    return {thread_id: position for thread_id, position in rows}
