"""The operator path to contact data: admin only, one audited operation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.community import Member, Role
from models.contacts import Consent, Contact
from resolvers import audit, clock, crypto
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export_member_data(member: Member) -> dict[str, Any]:
    """Everything the community holds about the member, for the member (R12).

    Produced through the operator path (this module is one of the few that
    reads the contacts register) and audited. It holds only the member's own
    data: their posts' texts but not others' replies, their answers but not
    others', no other member's name.
    """
    from models.community import NameHistory, Notification, RulesAcceptance, Session
    from models.discussions import Post, Reaction
    from models.moderation import MemberSanction, Report
    from models.research import (
        Answer,
        AttributeValue,
        Invitation,
        Question,
        ResearchAttribute,
        Response,
        Reward,
        Study,
    )

    language = member.language.value
    contact = await Contact.get_or_none(member_index=crypto.member_index(member.id))
    contact_data: dict[str, Any] | None = None
    if contact is not None:
        consents = await Consent.filter(contact_id=contact.id).order_by("given_at")
        contact_data = {
            "email": crypto.decrypt(contact.email_ciphertext, "contact-email"),
            "birthYear": contact.birth_year,
            "language": contact.language,
            "verifiedOn": _iso(contact.verified_at),
            "registeredOn": _iso(contact.created_at),
            "consents": [
                {
                    "kind": c.kind,
                    "version": c.version,
                    "givenOn": _iso(c.given_at),
                    "withdrawnOn": _iso(c.withdrawn_at),
                }
                for c in consents
            ],
        }
    attributes = {a.id: a.key for a in await ResearchAttribute.all()}
    values: dict[str, list[str]] = {}
    for value in await AttributeValue.filter(member_id=member.id):
        key = attributes.get(value.attribute_id, "?")  # type: ignore[attr-defined]
        values.setdefault(key, []).append(
            value.text if value.text is not None else str(value.number)
        )
    invitations = await Invitation.filter(member_id=member.id).order_by("id")
    studies = {s.id: s for s in await Study.filter(id__in=[i.study_id for i in invitations])}  # type: ignore[attr-defined]
    answers: list[dict[str, Any]] = []
    for invitation in invitations:
        if invitation.response_id is None:  # type: ignore[attr-defined]
            continue
        response = await Response.get(id=invitation.response_id)  # type: ignore[attr-defined]
        questions = {q.id: q for q in await Question.filter(study_id=response.study_id)}  # type: ignore[attr-defined]
        for answer in await Answer.filter(response_id=response.id).order_by("id"):
            question = questions.get(answer.question_id)  # type: ignore[attr-defined]
            answers.append(
                {
                    "study": invitation.study_id,  # type: ignore[attr-defined]
                    "question": getattr(question, f"text_{language}") if question else None,
                    "answer": answer.value,
                    "savedAt": _iso(answer.saved_at),
                }
            )
    data: dict[str, Any] = {
        "exportedAt": clock.now().isoformat(),
        "contact": contact_data,
        "profile": {
            "memberId": member.id,
            "loginName": member.login_name,
            "displayName": member.display_name,
            "language": member.language.value,
            "status": member.status.value,
            "joinedAt": _iso(member.created_at),
            "lastActiveAt": _iso(member.last_active_at),
            "studyEmails": member.study_emails,
        },
        "earlierNames": [
            {"kind": n.kind, "name": n.old_value, "changedAt": _iso(n.changed_at)}
            for n in await NameHistory.filter(member_id=member.id).order_by("id")
        ],
        "sessions": [
            {"createdAt": _iso(x.created_at), "lastSeenAt": _iso(x.last_seen_at)}
            for x in await Session.filter(member_id=member.id).order_by("id")
        ],
        "researchAttributes": values,
        "rulesAcceptances": [
            {"rulesVersionId": a.rules_id, "acceptedAt": _iso(a.accepted_at)}  # type: ignore[attr-defined]
            for a in await RulesAcceptance.filter(member_id=member.id).order_by("id")
        ],
        "posts": [
            {
                "id": p.id,
                "threadId": p.thread_id,  # type: ignore[attr-defined]
                "text": p.body,
                "status": p.status.value,
                "createdAt": _iso(p.created_at),
                "editedAt": _iso(p.edited_at),
            }
            for p in await Post.filter(author_id=member.id).order_by("id")
        ],
        "reactions": [
            {"postId": r.post_id, "kind": r.kind.value, "at": _iso(r.created_at)}  # type: ignore[attr-defined]
            for r in await Reaction.filter(member_id=member.id).order_by("id")
        ],
        "reportsFiled": [
            {"postId": r.post_id, "category": r.category.value, "note": r.note}  # type: ignore[attr-defined]
            for r in await Report.filter(reporter_id=member.id).order_by("id")
        ],
        "invitations": [
            {
                "study": getattr(studies[i.study_id], f"title_{language}"),  # type: ignore[attr-defined]
                "status": i.status.value,
                "invitedAt": _iso(i.invited_at),
                "completedAt": _iso(i.completed_at),
            }
            for i in invitations
        ],
        "answers": answers,
        "rewards": [
            {"wonAt": _iso(r.won_at), "claimBy": _iso(r.claim_by), "claimedAt": _iso(r.claimed_at)}
            for r in await Reward.filter(member_id=member.id).order_by("id")
        ],
        "moderation": [
            {
                "kind": s.kind.value,
                "category": s.category,
                "note": s.note,
                "at": _iso(s.created_at),
                "until": _iso(s.until),
            }
            for s in await MemberSanction.filter(member_id=member.id).order_by("id")
        ],
        "notifications": [
            {"kind": n.kind, "at": _iso(n.created_at), "params": n.params}
            for n in await Notification.filter(member_id=member.id).order_by("position")
        ],
    }
    async with in_transaction("community"):
        await audit.record(member, "member.data_export", target_member_id=member.id)
    return data
