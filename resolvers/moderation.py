"""Moderation: reports, automatic holds, and moderators' decisions on posts.

A post reported by ``report_hide_threshold`` distinct members (since its last
review) is held: hidden from everyone but its author (who sees it marked
pending) and moderators, until a moderator decides. Decisions are
idempotent (the same decision twice is answered, not applied twice), are
written to the audit log with the moderator, reason and time, and publish
a thread event so that members' live views drop or regain the post.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config import get_settings
from models.community import Member, MemberStatus, Role
from models.discussions import Area, EventKind, Post, PostStatus, Thread
from models.moderation import (
    ModerationEventKind,
    ModerationWord,
    Report,
    ReportCategory,
    WordListKind,
)
from resolvers import audit, clock, modfeed
from resolvers.discussions import (
    Published,
    _append_event,
    _publish,
    access_area,
    access_post,
    access_thread,
)
from resolvers.errors import Code, UserError
from resolvers.formatting import clean_text
from resolvers.notices import notify
from resolvers.postchecks import forget_word_lists, normalise_phrase, refuse_personal_data

NOTE_MAX = 1000
MODERATORS = (Role.MODERATOR, Role.ADMIN)


class Decision(StrEnum):
    APPROVE = "approve"  # a held post is fine: visible again, reports so far are settled
    REMOVE = "remove"  # a rules breach: removed, the author is told which rule
    RESTORE = "restore"  # undo a removal


def is_moderator(member: Member) -> bool:
    return member.role in MODERATORS


async def do_report_post(
    reporter: Member, post_id: int, category: ReportCategory, note: str
) -> Post:
    """File a report; one per member per post, a daily cap per member."""
    post = await access_post(reporter, post_id)
    if post.author_id == reporter.id:  # type: ignore[attr-defined]
        raise UserError(Code.CANNOT_REPORT_OWN)
    if post.status in (PostStatus.REMOVED, PostStatus.MODERATED):
        raise UserError(Code.POST_REMOVED)
    note = clean_text(note, NOTE_MAX, field="note") if note.strip() else ""
    if note:
        refuse_personal_data(note, "note")  # moderators read notes: the rule of posts
    settings = get_settings()
    since = clock.now() - timedelta(days=1)
    recent = Report.filter(reporter_id=reporter.id, created_at__gt=since)
    if await recent.count() >= settings.reports_per_day:
        oldest = await recent.order_by("created_at").first()
        wait = 86400 - int((clock.now() - oldest.created_at).total_seconds()) if oldest else 86400
        raise UserError(Code.TOO_MANY_REPORTS, retry_after=max(1, wait))
    if await Report.exists(post_id=post.id, reporter_id=reporter.id):
        raise UserError(Code.ALREADY_REPORTED)
    held = False
    position = 0
    try:
        async with in_transaction("community"):
            # The post's row lock: reports of one post are counted one at a time,
            # against the post's current status.
            post = await Post.filter(id=post.id).select_for_update(no_key=True).get()
            await Report.create(
                post=post, reporter=reporter, category=category, note=note, created_at=clock.now()
            )
            # Reports a moderator already settled do not count again.
            reporters = await Report.filter(post_id=post.id, settled_at__isnull=True).count()
            if post.status == PostStatus.VISIBLE and reporters >= settings.report_hide_threshold:
                post.status = PostStatus.HELD
                post.held_reason = "reports"
                await post.save(update_fields=["status", "held_reason"])
                position = await _append_event(
                    post.thread_id,  # type: ignore[attr-defined]
                    EventKind.POST_HIDDEN,
                    post.id,
                )
                await audit.record(
                    None,
                    "post.hold",
                    target_member_id=post.author_id,  # type: ignore[attr-defined]
                    post=post.id,
                )
                held = True
            moderation = await modfeed.append(
                ModerationEventKind.POST_HELD if held else ModerationEventKind.REPORT,
                post_id=post.id,
                thread_id=post.thread_id,  # type: ignore[attr-defined]
                member_id=post.author_id,  # type: ignore[attr-defined]
                category=category.value,
                reports=reporters,
                check="reports" if held else None,
            )
    except IntegrityError:
        raise UserError(Code.ALREADY_REPORTED) from None
    await _publish(
        Published(post.thread_id, position, moderation_position=moderation)  # type: ignore[attr-defined]
    )
    return post


async def do_moderate_post(
    moderator: Member,
    post_id: int,
    decision: Decision,
    category: ReportCategory | None,
    note: str,
) -> tuple[Post, bool]:
    """Apply a decision; returns (post, applied). Applied is False when it was already so."""
    if not is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    post = await access_post(moderator, post_id)
    note = clean_text(note, NOTE_MAX, field="note") if note.strip() else ""
    if decision == Decision.REMOVE and category is None:
        raise UserError(Code.CATEGORY_REQUIRED, field="category")
    target = {
        Decision.APPROVE: PostStatus.VISIBLE,
        Decision.REMOVE: PostStatus.MODERATED,
        Decision.RESTORE: PostStatus.VISIBLE,
    }[decision]
    allowed_from = {
        Decision.APPROVE: (PostStatus.HELD, PostStatus.VISIBLE),
        Decision.REMOVE: (PostStatus.VISIBLE, PostStatus.HELD, PostStatus.MODERATED),
        Decision.RESTORE: (PostStatus.MODERATED, PostStatus.VISIBLE),
    }[decision]
    if post.status not in allowed_from:
        raise UserError(Code.DECISION_NOT_APPLICABLE)
    if post.status == target and (
        decision != Decision.APPROVE
        or (
            post.reviewed_at is not None
            and not await Report.exists(post_id=post.id, settled_at__isnull=True)
        )
    ):
        return post, False  # decided already: answered, not applied twice
    now = clock.now()
    notified: tuple[int, ...] = ()
    async with in_transaction("community"):
        # Re-read under the row lock: two moderators deciding at once apply it once.
        locked = await Post.filter(id=post.id).select_for_update(no_key=True).get()
        if locked.status not in allowed_from:
            raise UserError(Code.DECISION_NOT_APPLICABLE)
        open_reports = await Report.exists(post_id=locked.id, settled_at__isnull=True)
        if locked.status == target and (
            decision != Decision.APPROVE or (locked.reviewed_at is not None and not open_reports)
        ):
            return locked, False
        was_hidden = locked.status != PostStatus.VISIBLE
        locked.status = target
        locked.reviewed_at = now
        locked.decided_by_id = moderator.id
        locked.decided_at = now
        locked.decision = decision.value
        locked.decision_category = category.value if category else None
        locked.held_reason = None
        await Report.filter(post_id=locked.id, settled_at__isnull=True).update(settled_at=now)
        if target == PostStatus.VISIBLE and locked.depth == 0:
            # A thread held with its first post is shown once that post is approved.
            await Thread.filter(id=locked.thread_id, held=True).update(held=False)  # type: ignore[attr-defined]
        await locked.save(
            update_fields=[
                "status",
                "reviewed_at",
                "decided_by_id",
                "decided_at",
                "decision",
                "decision_category",
                "held_reason",
            ]
        )
        kind = None
        if target == PostStatus.MODERATED:
            kind = EventKind.POST_REMOVED
        elif was_hidden:
            kind = EventKind.POST_RESTORED
        position = (
            await _append_event(locked.thread_id, kind, locked.id)  # type: ignore[attr-defined]
            if kind
            else None
        )
        await audit.record(
            moderator,
            f"post.{decision.value}",
            target_member_id=locked.author_id,  # type: ignore[attr-defined]
            reason=note,
            post=locked.id,
            category=category.value if category else None,
        )
        if decision == Decision.REMOVE:
            author = await Member.get(id=locked.author_id)  # type: ignore[attr-defined]
            if author.status == MemberStatus.ACTIVE:
                # The author is told which rule; never who reported it.
                await notify(
                    author.id,
                    "POST_REMOVED_BY_MODERATOR",
                    {"postId": locked.id, "category": category.value if category else ""},
                )
                notified = (author.id,)
        moderation = await modfeed.append(
            ModerationEventKind.POST_DECISION,
            post_id=locked.id,
            thread_id=locked.thread_id,  # type: ignore[attr-defined]
            member_id=locked.author_id,  # type: ignore[attr-defined]
            actor_id=moderator.id,
            decision=decision.value,
            category=category.value if category else None,
        )
    await _publish(
        Published(locked.thread_id, position or 0, notified, moderation)  # type: ignore[attr-defined]
    )
    return locked, True


# --- threads ------------------------------------------------------------------------


class ThreadAction(StrEnum):
    LOCK = "lock"  # no new posts (staff may still post)
    UNLOCK = "unlock"
    PIN = "pin"  # listed first in its area
    UNPIN = "unpin"


async def do_moderate_thread(
    moderator: Member, thread_id: int, action: ThreadAction, note: str
) -> tuple[Thread, bool]:
    """Lock, unlock, pin or unpin a thread; returns (thread, applied)."""
    if not is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    await access_thread(moderator, thread_id)
    note = clean_text(note, NOTE_MAX, field="note") if note.strip() else ""
    field = "locked_at" if action in (ThreadAction.LOCK, ThreadAction.UNLOCK) else "pinned_at"
    turn_on = action in (ThreadAction.LOCK, ThreadAction.PIN)
    async with in_transaction("community"):
        thread = await Thread.filter(id=thread_id).select_for_update(no_key=True).get()
        if (getattr(thread, field) is not None) == turn_on:
            return thread, False  # already so: answered, not applied twice
        setattr(thread, field, clock.now() if turn_on else None)
        await thread.save(update_fields=[field])
        await audit.record(moderator, f"thread.{action.value}", reason=note, thread=thread.id)
        moderation = await modfeed.append(
            ModerationEventKind.THREAD_ACTION,
            thread_id=thread.id,
            member_id=thread.started_by_id,  # type: ignore[attr-defined]
            actor_id=moderator.id,
            action=action.value,
        )
    await modfeed.publish(moderation)
    return thread, True


# --- word lists ---------------------------------------------------------------------


async def do_add_word(
    moderator: Member, kind: WordListKind, phrase: str, language: str
) -> tuple[ModerationWord, bool]:
    """Add a banned or suspect word or phrase (stored normalised); returns (word, added)."""
    if not is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    if language not in ("fi", "sv", "en", "any"):
        raise UserError(Code.INVALID_LANGUAGE, field="language")
    normalised = normalise_phrase(phrase)
    if len(normalised.rstrip("*")) < 2 or len(normalised) > 100:
        raise UserError(Code.WORD_INVALID, field="phrase")
    existing = await ModerationWord.get_or_none(kind=kind, phrase=normalised)
    if existing is not None:
        return existing, False
    try:
        async with in_transaction("community"):
            word = await ModerationWord.create(
                kind=kind, phrase=normalised, language=language, created_by_id=moderator.id
            )
            await audit.record(
                moderator, "words.add", list=kind.value, phrase=normalised, language=language
            )
    except IntegrityError:
        return await ModerationWord.get(kind=kind, phrase=normalised), False
    forget_word_lists()
    return word, True


async def do_remove_word(moderator: Member, word_id: int) -> bool:
    if not is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    async with in_transaction("community"):
        word = await ModerationWord.get_or_none(id=word_id)
        if word is None:
            return False
        await word.delete()
        await audit.record(moderator, "words.remove", list=word.kind.value, phrase=word.phrase)
    forget_word_lists()
    return True


async def do_set_area_premoderation(moderator: Member, area_id: int, on: bool) -> tuple[Area, bool]:
    """Hold (or stop holding) every post in an area for review; returns (area, applied)."""
    if not is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    area = await access_area(moderator, area_id)
    if area.premoderated == on:
        return area, False
    async with in_transaction("community"):
        await Area.filter(id=area.id).update(premoderated=on)
        await audit.record(
            moderator, "area.premoderate" if on else "area.end_premoderation", area=area.id
        )
    area.premoderated = on
    return area, True
