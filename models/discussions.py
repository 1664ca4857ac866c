"""Discussions: areas, threads, posts, reactions, the per-thread event log, read positions.

Posts refer to their author by pseudonymous member id only. A resigned
author's posts stay, shown as "former member". Every change a subscriber
can see is an appended ``ThreadEvent`` with a position that increases by one
within its thread, so a client can resume after the last position it saw.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.community import Member, MemberGroup


class PostStatus(StrEnum):
    VISIBLE = "visible"
    REMOVED = "removed"  # deleted by its author: shown as removed, text gone
    HELD = "held"  # hidden pending review: only its author and moderators see it
    MODERATED = "moderated"  # removed by a moderator for a rules breach


class ReactionKind(StrEnum):
    LIKE = "like"
    HEART = "heart"
    HELPFUL = "helpful"
    LAUGH = "laugh"
    SAD = "sad"


class EventKind(StrEnum):
    POST_ADDED = "post_added"
    POST_EDITED = "post_edited"
    POST_REMOVED = "post_removed"
    REACTIONS_CHANGED = "reactions_changed"
    POST_HIDDEN = "post_hidden"  # held for review: members' views drop its text
    POST_RESTORED = "post_restored"  # approved or restored by a moderator


class Area(Model):
    """A discussion area, created by staff, open to all or to one member group."""

    id = fields.IntField(primary_key=True)
    title_fi = fields.CharField(max_length=200)
    title_sv = fields.CharField(max_length=200)
    title_en = fields.CharField(max_length=200)
    description_fi = fields.TextField(default="")
    description_sv = fields.TextField(default="")
    description_en = fields.TextField(default="")
    group: fields.ForeignKeyNullableRelation[MemberGroup] = fields.ForeignKeyField(
        "community.MemberGroup", related_name="areas", on_delete=fields.RESTRICT, null=True
    )
    members_can_start_threads = fields.BooleanField(default=False)
    # Every post in the area is held for a moderator's approval.
    premoderated = fields.BooleanField(default=False, db_default=False)
    # A study's discussion task: visible only to the study's invited members.
    study_id = fields.IntField(null=True, db_index=True)
    # Masked: a member sees others' posts in a thread only after posting there.
    masked = fields.BooleanField(default=False, db_default=False)
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "area"


class Thread(Model):
    """A thread in an area. ``last_position`` is its newest event's position."""

    id = fields.IntField(primary_key=True)
    area: fields.ForeignKeyRelation[Area] = fields.ForeignKeyField(
        "community.Area", related_name="threads", on_delete=fields.RESTRICT
    )
    title = fields.CharField(max_length=200)
    started_by: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="threads_started", on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_position = fields.IntField(default=0)
    last_activity_at = fields.DatetimeField()
    post_count = fields.IntField(default=0)
    # Moderation: a locked thread takes no new posts, a pinned one is listed first.
    locked_at = fields.DatetimeField(null=True)
    pinned_at = fields.DatetimeField(null=True)
    # The first post is held for review: only its author and moderators see the thread.
    held = fields.BooleanField(default=False, db_default=False)

    class Meta:
        table = "thread"


class Post(Model):
    """A post or a reply (``parent`` set, ``depth`` > 0)."""

    id = fields.IntField(primary_key=True)
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "community.Thread", related_name="posts", on_delete=fields.RESTRICT
    )
    author: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="posts", on_delete=fields.RESTRICT
    )
    parent: fields.ForeignKeyNullableRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="replies", on_delete=fields.RESTRICT, null=True
    )
    depth = fields.IntField(default=0)
    body = fields.TextField()
    status = fields.CharEnumField(PostStatus, max_length=16, default=PostStatus.VISIBLE)
    # The author's client-generated key: a retried write returns the first post.
    client_key = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)
    edited_at = fields.DatetimeField(null=True)
    removed_at = fields.DatetimeField(null=True)
    # Moderation: why it is held, and the latest decision (history: audit log).
    held_reason = fields.CharField(max_length=32, null=True)
    reviewed_at = fields.DatetimeField(null=True)
    decided_by_id = fields.IntField(null=True)
    decided_at = fields.DatetimeField(null=True)
    decision = fields.CharField(max_length=16, null=True)
    decision_category = fields.CharField(max_length=32, null=True)

    class Meta:
        table = "post"
        unique_together = (("author", "client_key"),)
        indexes = (("thread_id", "id"), ("author_id", "created_at"))


class PostEdit(Model):
    """The text a post had before an edit (kept for moderators)."""

    id = fields.IntField(primary_key=True)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="edits", on_delete=fields.CASCADE
    )
    old_body = fields.TextField()
    edited_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "post_edit"


class Reaction(Model):
    """One member's reaction of one kind to one post."""

    id = fields.IntField(primary_key=True)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="reactions", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="reactions", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ReactionKind, max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reaction"
        unique_together = (("post", "member", "kind"),)


class ThreadEvent(Model):
    """An appended change in a thread, replayed to clients resuming after a position."""

    id = fields.IntField(primary_key=True)
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "community.Thread", related_name="events", on_delete=fields.RESTRICT
    )
    position = fields.IntField()
    kind = fields.CharEnumField(EventKind, max_length=32)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="events", on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "thread_event"
        unique_together = (("thread", "position"),)


class ReadPosition(Model):
    """How far a member has read a thread (a thread event position)."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="read_positions", on_delete=fields.CASCADE
    )
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "community.Thread", related_name="read_positions", on_delete=fields.CASCADE
    )
    position = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "read_position"
        unique_together = (("member", "thread"),)
