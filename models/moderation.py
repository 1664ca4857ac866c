"""Moderation: reports, word lists, automatic check decisions, member sanctions,
and the moderators' event log.

Everything refers to members by pseudonymous member id; moderators see
pseudonyms only. Decisions are kept on the post (the latest) and in the
append-only audit log (all of them).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.community import Member
from models.discussions import Post, Thread


class ReportCategory(StrEnum):
    """The community rules' categories of forbidden content (section 9), and more."""

    MISINFORMATION = "misinformation"
    SPAM_OR_TROLLING = "spam_or_trolling"
    SELLING = "selling"
    PERSONAL_ATTACK = "personal_attack"
    ILLEGAL_ACTIVITY = "illegal_activity"
    OFFENSIVE = (
        "offensive"  # degrading, obscene, offensive, blasphemous, discriminatory, threatening
    )
    PERSONAL_DATA = "personal_data"
    OTHER = "other"


class Report(Model):
    """One member's report of one post."""

    id = fields.IntField(primary_key=True)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="reports", on_delete=fields.CASCADE
    )
    reporter: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="reports_filed", on_delete=fields.CASCADE
    )
    category = fields.CharEnumField(ReportCategory, max_length=32)
    note = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    # Set when a moderator decides on the post: settled reports no longer count.
    settled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "report"
        unique_together = (("post", "reporter"),)
        indexes = (("reporter_id", "created_at"),)


class WordListKind(StrEnum):
    BANNED = "banned"  # a post containing it is refused
    SUSPECT = "suspect"  # a post containing it is held for review


class ModerationWord(Model):
    """A word or phrase on a moderators' list, stored normalised (see resolvers.postchecks)."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharEnumField(WordListKind, max_length=16)
    phrase = fields.CharField(max_length=100)
    language = fields.CharField(max_length=3, default="any")  # fi, sv, en or any
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "moderation_word"
        unique_together = (("kind", "phrase"),)


class CheckAction(StrEnum):
    REFUSE = "refuse"
    HOLD = "hold"


class CheckDecision(Model):
    """An automatic check's decision on a new or edited post: which check, what it did, why.

    A refused post is not stored, so a refusal row has no post, and its detail
    names the kind of finding (for example "phone_number"), never the text.
    """

    id = fields.IntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="check_decisions", on_delete=fields.CASCADE
    )
    post: fields.ForeignKeyNullableRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="check_decisions", on_delete=fields.CASCADE, null=True
    )
    check = fields.CharField(max_length=32)
    action = fields.CharEnumField(CheckAction, max_length=16)
    detail = fields.CharField(max_length=64, default="")
    on_edit = fields.BooleanField(default=False)

    class Meta:
        table = "check_decision"
        indexes = (("member_id", "at"),)


class SanctionKind(StrEnum):
    WARN = "warn"
    SUSPEND = "suspend"
    PREMODERATE = "premoderate"
    BAN = "ban"


class MemberSanction(Model):
    """A moderator's action on a member. Warnings wait for the member's acknowledgement."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="sanctions", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(SanctionKind, max_length=16)
    category = fields.CharField(max_length=32, null=True)
    note = fields.TextField(default="")
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    until = fields.DatetimeField(null=True)  # suspensions
    acknowledged_at = fields.DatetimeField(null=True)  # warnings
    lifted_at = fields.DatetimeField(null=True)
    lifted_by_id = fields.IntField(null=True)

    class Meta:
        table = "member_sanction"
        indexes = (("member_id", "kind"),)


class ModerationEventKind(StrEnum):
    POST_ADDED = "post_added"
    POST_EDITED = "post_edited"
    POST_HELD = "post_held"
    REPORT = "report"
    POST_DECISION = "post_decision"
    THREAD_ACTION = "thread_action"
    MEMBER_ACTION = "member_action"


class ModerationEvent(Model):
    """One entry of the moderators' live feed, at a gap-free position.

    Positions come from the single :class:`ModerationCounter` row, taken
    under its row lock as the last lock of the writing transaction, so
    entries commit in position order and a feed resumes without gaps.
    """

    id = fields.IntField(primary_key=True)
    position = fields.IntField(unique=True)
    kind = fields.CharEnumField(ModerationEventKind, max_length=32)
    post: fields.ForeignKeyNullableRelation[Post] = fields.ForeignKeyField(
        "community.Post", related_name="moderation_events", on_delete=fields.CASCADE, null=True
    )
    thread: fields.ForeignKeyNullableRelation[Thread] = fields.ForeignKeyField(
        "community.Thread", related_name="moderation_events", on_delete=fields.CASCADE, null=True
    )
    member_id = fields.IntField(null=True)  # the member the event is about (author, target)
    actor_id = fields.IntField(null=True)  # the moderator who acted (None: automatic)
    details: dict[str, Any] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "moderation_event"


class ModerationCounter(Model):
    """The last moderation feed position handed out (one row, id 1)."""

    id = fields.IntField(primary_key=True)
    last_position = fields.IntField(default=0)

    class Meta:
        table = "moderation_counter"
