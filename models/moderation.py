"""Moderation: members' reports of posts.

A report refers to its reporter by pseudonymous member id; moderators see
pseudonyms only. Decisions are kept on the post (the latest) and in the
append-only audit log (all of them).
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.community import Member
from models.discussions import Post


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
