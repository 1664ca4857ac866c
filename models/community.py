"""The community register: pseudonymous identities and everything they do.

No email address, birth date, name or contact id is ever stored here; the
link to the contacts register is sealed with an application key and lives
only in ``models.contacts`` (see ``resolvers.crypto``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    MEMBER = "member"
    MODERATOR = "moderator"
    RESEARCHER = "researcher"
    ADMIN = "admin"


class MemberStatus(StrEnum):
    PENDING = "pending"  # registered, email not yet verified
    ACTIVE = "active"
    RESIGNED = "resigned"  # tombstone: shown as "former member"
    BANNED = "banned"  # membership ended by a moderator for a rules breach


class Language(StrEnum):
    FI = "fi"
    SV = "sv"
    EN = "en"


class Member(Model):
    """A pseudonymous identity: a member, or a staff account."""

    id = fields.IntField(primary_key=True)
    login_name = fields.CharField(max_length=32, null=True)
    # Case-insensitive uniqueness: the normalised (casefolded) form is unique.
    login_key = fields.CharField(max_length=32, null=True, unique=True)
    display_name = fields.CharField(max_length=32, null=True)
    display_key = fields.CharField(max_length=32, null=True, unique=True)
    password_hash = fields.CharField(max_length=255, null=True)
    role = fields.CharEnumField(Role, max_length=16, default=Role.MEMBER)
    status = fields.CharEnumField(MemberStatus, max_length=16, default=MemberStatus.PENDING)
    language = fields.CharEnumField(Language, max_length=2, default=Language.FI)
    created_at = fields.DatetimeField(auto_now_add=True)
    activated_at = fields.DatetimeField(null=True)
    last_active_at = fields.DatetimeField(null=True)
    password_changed_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    # Moderation: may read but not write until this time; every post held for review.
    suspended_until = fields.DatetimeField(null=True)
    premoderated = fields.BooleanField(default=False, db_default=False)
    # Lifecycle: when the inactivity warning went out; an account locked on suspected misuse.
    inactivity_warned_at = fields.DatetimeField(null=True)
    locked_at = fields.DatetimeField(null=True)
    # Study invitations by email (in-app invitations always come).
    study_emails = fields.BooleanField(default=True, db_default=True)

    sessions: fields.ReverseRelation[Session]
    acceptances: fields.ReverseRelation[RulesAcceptance]

    class Meta:
        table = "member"


class Session(Model):
    """A signed-in device. Only the SHA-256 of the opaque token is stored."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "session"


class NameHistory(Model):
    """Earlier login and display names, kept for moderators, erased on resignation."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="name_history", on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=16)  # "login" or "display"
    old_value = fields.CharField(max_length=32)
    changed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "name_history"


class RulesVersion(Model):
    """One published version of the community rules, in three languages."""

    id = fields.IntField(primary_key=True)
    version = fields.IntField(unique=True)
    text_fi = fields.TextField()
    text_sv = fields.TextField()
    text_en = fields.TextField()
    published_at = fields.DatetimeField(auto_now_add=True)
    published_by_id = fields.IntField(null=True)

    class Meta:
        table = "rules_version"
        ordering = ("-version",)


class RulesAcceptance(Model):
    """A member's acceptance of one rules version (the history is kept)."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="acceptances", on_delete=fields.CASCADE
    )
    rules: fields.ForeignKeyRelation[RulesVersion] = fields.ForeignKeyField(
        "community.RulesVersion", related_name="acceptances", on_delete=fields.RESTRICT
    )
    accepted_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "rules_acceptance"
        unique_together = (("member", "rules"),)


class AuditEntry(Model):
    """Append-only record of staff actions: who, what, whom, why, when.

    Actors and targets are referred to by pseudonymous member id only, never
    by contact data. Rows are never updated or deleted by the application.
    """

    id = fields.IntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True)
    actor_id = fields.IntField(null=True)
    actor_role = fields.CharField(max_length=16)
    action = fields.CharField(max_length=64)
    target_member_id = fields.IntField(null=True)
    reason = fields.TextField(default="")
    details: dict[str, Any] = fields.JSONField(default=dict)

    class Meta:
        table = "audit_entry"
        ordering = ("-id",)

    async def save(self, *args: Any, **kwargs: Any) -> None:
        # Append-only: an existing entry can never be rewritten.
        if not self._saved_in_db:
            await super().save(*args, **kwargs)
            return
        raise PermissionError("audit entries are append-only")

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("audit entries are append-only")


class Notification(Model):
    """A personal notice for one member, at the next position of their own stream.

    Positions come from the member's :class:`NotificationCounter`, taken under
    its row lock in the creating transaction, so a member's notices commit in
    position order (ids do not: two transactions may commit out of id order).
    """

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="notifications", on_delete=fields.CASCADE
    )
    position = fields.IntField(default=0, db_default=0)
    kind = fields.CharField(max_length=32)
    params: dict[str, Any] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notification"
        indexes = (("member_id", "id"), ("member_id", "position"))


class NotificationCounter(Model):
    """The last notification position handed out to one member."""

    id = fields.IntField(primary_key=True)
    member: fields.OneToOneRelation[Member] = fields.OneToOneField(
        "community.Member", related_name="notification_counter", on_delete=fields.CASCADE
    )
    last_position = fields.IntField(default=0)

    class Meta:
        table = "notification_counter"


class LoginThrottle(Model):
    """Failed sign-in counter for one keyed hash of an account or an address."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=64, unique=True)
    failures = fields.IntField(default=0)
    window_started_at = fields.DatetimeField()

    class Meta:
        table = "login_throttle"


class MemberGroup(Model):
    """A named set of members: restricts discussion areas, and targets studies."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    created_by_id = fields.IntField(null=True)

    class Meta:
        table = "member_group"


class GroupMembership(Model):
    """One member in one group."""

    id = fields.IntField(primary_key=True)
    group: fields.ForeignKeyRelation[MemberGroup] = fields.ForeignKeyField(
        "community.MemberGroup", related_name="memberships", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "community.Member", related_name="group_memberships", on_delete=fields.CASCADE
    )
    added_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "group_membership"
        unique_together = (("group", "member"),)
