"""The operator path to contact data: admin only, one audited operation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from models.community import Member, Role
from models.contacts import Consent, Contact
from resolvers import audit, crypto
from resolvers.errors import Code, UserError

MIN_REASON = 10


@dataclass
class ConsentRecord:
    kind: str
    version: str
    given_at: datetime
    withdrawn_at: datetime | None


@dataclass
class ContactRecord:
    member_id: int
    email: str
    birth_year: int
    language: str
    verified_at: datetime | None
    created_at: datetime
    consents: list[ConsentRecord]


async def do_read_contact(actor: Member, member_id: int, reason: str) -> ContactRecord:
    """Read one member's contact data, writing who, whom, when and why first."""
    # Authorization is decided here as well as in the schema: only admins.
    if actor.role != Role.ADMIN:
        raise UserError(Code.NOT_FOUND)
    if len(reason.strip()) < MIN_REASON:
        raise UserError(Code.REASON_REQUIRED, field="reason", min=MIN_REASON)
    contact = await Contact.get_or_none(member_index=crypto.member_index(member_id))
    if contact is None:
        raise UserError(Code.NOT_FOUND, field="memberId")
    consents = await Consent.filter(contact_id=contact.id).order_by("id")
    async with in_transaction("community"):
        # The audit entry is committed before any contact data is returned.
        await audit.record(actor, "contact.read", target_member_id=member_id, reason=reason.strip())
    return ContactRecord(
        member_id=member_id,
        email=crypto.decrypt(contact.email_ciphertext, "contact-email"),
        birth_year=contact.birth_year,
        language=contact.language,
        verified_at=contact.verified_at,
        created_at=contact.created_at,
        consents=[ConsentRecord(c.kind, c.version, c.given_at, c.withdrawn_at) for c in consents],
    )
