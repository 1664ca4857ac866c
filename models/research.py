"""Research: attributes, segments, studies, questions, invitations, answers and prize draws.

All of it lives in the community register and refers to members by
pseudonymous id only. Answers hang on a :class:`Response` that carries a
random per-study respondent code, never a member id. The one link from a
member to a response is their :class:`Invitation`, which is cut (member set
to null) when the membership ends, so answers survive and stay unlinkable.
Researchers are only ever shown respondent codes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.community import Member
from models.discussions import Area


class AttributeKind(StrEnum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    NUMBER = "number"
    YEAR = "year"


class ResearchAttribute(Model):
    """A coarse, non-identifying attribute that members may fill in voluntarily."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=40, unique=True)
    kind = fields.CharEnumField(AttributeKind, max_length=16)
    label_fi = fields.CharField(max_length=200)
    label_sv = fields.CharField(max_length=200)
    label_en = fields.CharField(max_length=200)
    # Choices: [{"value": ..., "fi": ..., "sv": ..., "en": ...}], in display order.
    options: list[dict[str, str]] = fields.JSONField(default=list)
    min_value = fields.IntField(null=True)
    max_value = fields.IntField(null=True)
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "research_attribute"


class AttributeValue(Model):
    """A member's value of an attribute: one row per chosen option, or one number."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="attribute_values", on_delete=fields.CASCADE
    )
    attribute: fields.ForeignKeyRelation[ResearchAttribute] = fields.ForeignKeyField(
        "community.ResearchAttribute", related_name="values", on_delete=fields.CASCADE
    )
    text = fields.CharField(max_length=40, null=True)
    number = fields.IntField(null=True)

    class Meta:
        table = "attribute_value"
        indexes = (("attribute_id", "text"), ("attribute_id", "number"), ("member_id",))


class Segment(Model):
    """A saved rule: a tree of AND/OR conditions over attributes and participation."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    rule: dict[str, Any] = fields.JSONField()
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "segment"


class StudyKind(StrEnum):
    SURVEY = "survey"
    DISCUSSION = "discussion"
    BOTH = "both"


class Study(Model):
    """A research study: texts in three languages, a schedule, a target and a reward."""

    id = fields.IntField(primary_key=True)
    title_fi = fields.CharField(max_length=200)
    title_sv = fields.CharField(max_length=200)
    title_en = fields.CharField(max_length=200)
    description_fi = fields.TextField(default="")
    description_sv = fields.TextField(default="")
    description_en = fields.TextField(default="")
    reward_fi = fields.TextField(default="")
    reward_sv = fields.TextField(default="")
    reward_en = fields.TextField(default="")
    kind = fields.CharEnumField(StudyKind, max_length=16)
    opens_at = fields.DatetimeField()
    closes_at = fields.DatetimeField()
    # Target: {"everyone": bool, "groups": [ids], "segments": [ids], "sample": n or null,
    # "fatigue_days": d or null, "max_per_month": m or null}
    target: dict[str, Any] = fields.JSONField(default=dict)
    sample_seed = fields.CharField(max_length=64, null=True)
    reminder_days = fields.IntField(default=0)  # 0: no reminders
    max_reminders = fields.IntField(default=0)
    area: fields.ForeignKeyNullableRelation[Area] = fields.ForeignKeyField(
        "community.Area", related_name="studies", on_delete=fields.RESTRICT, null=True
    )
    masked = fields.BooleanField(default=False)
    launched_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)  # closed early by a researcher
    archived_at = fields.DatetimeField(null=True)
    created_by_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "study"


class QuestionKind(StrEnum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    SCALE_5 = "scale_5"  # 1 to 5
    NPS = "nps"  # 0 to 10
    TEXT = "text"


class Question(Model):
    id = fields.IntField(primary_key=True)
    study: fields.ForeignKeyRelation[Study] = fields.ForeignKeyField(
        "community.Study", related_name="questions", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    kind = fields.CharEnumField(QuestionKind, max_length=16)
    text_fi = fields.TextField()
    text_sv = fields.TextField()
    text_en = fields.TextField()
    options: list[dict[str, str]] = fields.JSONField(default=list)
    required = fields.BooleanField(default=True)

    class Meta:
        table = "question"
        unique_together = (("study", "position"),)


class InvitationStatus(StrEnum):
    INVITED = "invited"
    OPENED = "opened"
    STARTED = "started"
    COMPLETED = "completed"
    DECLINED = "declined"


class Response(Model):
    """One respondent's answers to one study, under a random respondent code."""

    id = fields.IntField(primary_key=True)
    study: fields.ForeignKeyRelation[Study] = fields.ForeignKeyField(
        "community.Study", related_name="responses", on_delete=fields.CASCADE
    )
    respondent_code = fields.CharField(max_length=16)
    submitted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "response"
        unique_together = (("study", "respondent_code"),)


class Invitation(Model):
    """One member invited to one study (never two), and how far they got."""

    id = fields.IntField(primary_key=True)
    study: fields.ForeignKeyRelation[Study] = fields.ForeignKeyField(
        "community.Study", related_name="invitations", on_delete=fields.CASCADE
    )
    # Null once the membership ended: the answers stay, unlinkable.
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="invitations", on_delete=fields.SET_NULL, null=True
    )
    response: fields.OneToOneNullableRelation[Response] = fields.OneToOneField(
        "community.Response", related_name="invitation", on_delete=fields.SET_NULL, null=True
    )
    status = fields.CharEnumField(InvitationStatus, max_length=16, default=InvitationStatus.INVITED)
    invited_at = fields.DatetimeField()
    opened_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    declined_at = fields.DatetimeField(null=True)
    email_queued = fields.BooleanField(default=False)
    reminders_sent = fields.IntField(default=0)
    last_reminded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invitation"
        unique_together = (("study", "member"),)
        indexes = (("member_id", "invited_at"),)


class Answer(Model):
    """A saved answer to one question: {"choice": v}, {"choices": [...]}, {"scale": n}
    or {"text": s}."""

    id = fields.IntField(primary_key=True)
    response: fields.ForeignKeyRelation[Response] = fields.ForeignKeyField(
        "community.Response", related_name="answers", on_delete=fields.CASCADE
    )
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "community.Question", related_name="answers", on_delete=fields.CASCADE
    )
    value: dict[str, Any] = fields.JSONField()
    saved_at = fields.DatetimeField()

    class Meta:
        table = "answer"
        unique_together = (("response", "question"),)


class PrizeDraw(Model):
    """A draw among a study's completers, reproducible from its frozen list and seed.

    ``eligible`` holds the invitation ids in the order drawn from, and
    ``eligible_hash`` their SHA-256, so the draw can be re-run and checked.
    A redraw for unclaimed prizes is a draw of its own (``redraw_of`` set).
    """

    id = fields.IntField(primary_key=True)
    study: fields.ForeignKeyRelation[Study] = fields.ForeignKeyField(
        "community.Study", related_name="draws", on_delete=fields.CASCADE
    )
    redraw_of_id = fields.IntField(null=True)
    prizes = fields.IntField()
    eligible: list[int] = fields.JSONField()
    eligible_hash = fields.CharField(max_length=64)
    seed = fields.CharField(max_length=64)
    winners: list[int] = fields.JSONField()  # invitation ids, in drawing order
    claim_days = fields.IntField(default=30)
    drawn_at = fields.DatetimeField()
    drawn_by_id = fields.IntField(null=True)

    class Meta:
        table = "prize_draw"


class Reward(Model):
    """A prize won by a member: shown to them, never to researchers."""

    id = fields.IntField(primary_key=True)
    draw: fields.ForeignKeyRelation[PrizeDraw] = fields.ForeignKeyField(
        "community.PrizeDraw", related_name="rewards", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="rewards", on_delete=fields.SET_NULL, null=True
    )
    invitation_id = fields.IntField()
    won_at = fields.DatetimeField()
    claim_by = fields.DatetimeField()
    claimed_at = fields.DatetimeField(null=True)
    forfeited_at = fields.DatetimeField(null=True)

    class Meta:
        table = "reward"
