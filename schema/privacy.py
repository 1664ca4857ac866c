"""The operator path to contact data (admins, audited) and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import community as m
from resolvers import audit, mail, privacy
from resolvers.errors import Code, UserError
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.pagination import Connection, db_id, nodes_in_order, paginate
from schema.permissions import IsAdmin


@strawberry.type(description="A consent or acknowledgement in the contacts register.")
class Consent:
    kind: str
    version: str
    given_at: datetime
    withdrawn_at: datetime | None


@strawberry.type(
    description="A member's contact data. Only admins can read it, and every read is audited."
)
class ContactDetails:
    member_id: relay.GlobalID
    email: str
    birth_year: int
    language: str
    verified_at: datetime | None
    created_at: datetime
    consents: list[Consent]


@strawberry.type(description="One append-only audit entry: who did what, to whom, why and when.")
class AuditEntry(relay.Node):
    id: relay.NodeID[int]
    at: datetime
    actor_id: relay.GlobalID | None = strawberry.field(
        description="The acting account's Member id."
    )
    actor_role: str
    action: str
    target_member_id: relay.GlobalID | None
    reason: str
    details: JSON

    @classmethod
    def from_row(cls, row: m.AuditEntry) -> AuditEntry:
        return cls(
            id=row.id,
            at=row.at,
            actor_id=relay.GlobalID("Member", str(row.actor_id)) if row.actor_id else None,
            actor_role=row.actor_role,
            action=row.action,
            target_member_id=(
                relay.GlobalID("Member", str(row.target_member_id))
                if row.target_member_id
                else None
            ),
            reason=row.reason,
            details=row.details,  # type: ignore[arg-type]
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[AuditEntry | None]:
        me = info.context.member
        # The audit log is for admins only.
        if me is None or me.role != m.Role.ADMIN:
            return [None for _ in node_ids]
        return await nodes_in_order(m.AuditEntry.all(), node_ids, cls.from_row)


@strawberry.type
class ReadMemberContactSuccess:
    contact: ContactDetails


ReadMemberContactResult = Annotated[
    ReadMemberContactSuccess | InputError | NotAllowedError | RateLimitedError,
    strawberry.union("ReadMemberContactResult"),
]


@strawberry.type(description="An email that could not be delivered (no address, no text).")
class FailedMail:
    id: str
    template: str
    language: str
    attempts: int
    last_error: str
    created_on: datetime = strawberry.field(description="The day it was queued.")


@strawberry.type(description="The email outbox: what waits, what went, what failed.")
class OutboxStatus:
    pending: int
    bulk_pending: int = strawberry.field(description="Study invitations and reminders waiting.")
    sending: int
    sent: int
    failed: int
    failed_messages: list[FailedMail]


@strawberry.type
class PrivacyQuery:
    @strawberry.field(
        permission_classes=[IsAdmin],
        description="The email outbox's state; failed deliveries are listed (admins).",
    )
    async def outbox_status(self) -> OutboxStatus:
        counts, failed = await mail.outbox_status()
        return OutboxStatus(
            pending=counts["pending"],
            bulk_pending=counts["bulk_pending"],
            sending=counts["sending"],
            sent=counts["sent"],
            failed=counts["failed"],
            failed_messages=[
                FailedMail(
                    id=str(m.id),
                    template=m.template,
                    language=m.language,
                    attempts=m.attempts,
                    last_error=m.last_error,
                    created_on=m.created_at,
                )
                for m in failed
            ],
        )

    @strawberry.field(
        permission_classes=[IsAdmin], description="The audit log, newest first (admins)."
    )
    async def audit_log(
        self,
        first: int = 50,
        after: str | None = None,
        action: str | None = None,
        target_member_id: relay.GlobalID | None = None,
    ) -> Connection[AuditEntry]:
        query = m.AuditEntry.all()
        if action:
            query = query.filter(action=action)
        if target_member_id is not None:
            node_id = target_member_id.node_id
            query = query.filter(target_member_id=db_id(node_id) or -1)
        return await paginate(query, first, after, AuditEntry.from_row)


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Queue a failed email again (after the cause is fixed); false if none.",
    )
    async def retry_failed_mail(self, info: Info, id: str) -> bool:
        actor = info.context.member
        try:
            message_id = str(uuid.UUID(id))
        except ValueError:
            return False
        retried = await mail.retry_failed(message_id)
        if retried:
            await audit.record(actor, "mail.retry", message=id)
        return retried

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description=(
            "Read one member's contact data (admins). "
            "Writes who, whom, when and why to the audit log first."
        ),
    )
    async def read_member_contact(
        self, info: Info, member_id: relay.GlobalID, reason: str
    ) -> ReadMemberContactResult:
        actor = info.context.member
        assert actor is not None
        try:
            target = db_id(member_id.node_id)
            if member_id.type_name != "Member" or target is None:
                raise UserError(Code.NOT_FOUND, field="memberId")
            record = await privacy.do_read_contact(actor, target, reason)
        except UserError as exc:
            return failure(exc, info)
        return ReadMemberContactSuccess(
            contact=ContactDetails(
                member_id=relay.GlobalID("Member", str(record.member_id)),
                email=record.email,
                birth_year=record.birth_year,
                language=record.language,
                verified_at=record.verified_at,
                created_at=record.created_at,
                consents=[
                    Consent(
                        kind=c.kind,
                        version=c.version,
                        given_at=c.given_at,
                        withdrawn_at=c.withdrawn_at,
                    )
                    for c in record.consents
                ],
            )
        )
