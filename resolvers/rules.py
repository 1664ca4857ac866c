"""Community rules: versions in fi/sv/en, acceptance, and the write gate."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config import get_settings
from models.community import Member, MemberStatus, Role, RulesAcceptance, RulesVersion
from models.moderation import MemberSanction, SanctionKind
from resolvers import audit, clock
from resolvers.errors import Code, UserError
from resolvers.notices import notify_many
from subscriptions.bus import get_bus
from subscriptions.notifications import EVERYONE_CHANNEL

MAX_RULES_LENGTH = 100_000


async def current_rules() -> RulesVersion | None:
    return await RulesVersion.all().order_by("-version").first()


async def has_accepted_current(member: Member) -> bool:
    current = await current_rules()
    if current is None:
        return True
    return await RulesAcceptance.exists(member_id=member.id, rules_id=current.id)


async def check_can_write(member: Member) -> None:
    """The write gate: suspended members, members with a warning they have not
    acknowledged, and members who have not accepted the current rules may read
    but not write.

    Staff are bound by their employment, not by the members' rules.
    """
    if member.role != Role.MEMBER:
        return
    if member.suspended_until is not None and member.suspended_until > clock.now():
        until = member.suspended_until.strftime("%Y-%m-%d %H:%M UTC")
        raise UserError(Code.SUSPENDED, until=until)
    if await MemberSanction.exists(
        member_id=member.id,
        kind=SanctionKind.WARN,
        acknowledged_at__isnull=True,
        lifted_at__isnull=True,
    ):
        raise UserError(Code.WARNING_NOT_ACKNOWLEDGED)
    if not await has_accepted_current(member):
        raise UserError(Code.RULES_NOT_ACCEPTED)


async def do_publish_rules(
    actor: Member | None, text_fi: str, text_sv: str, text_en: str
) -> RulesVersion:
    """Publish a new version; every active member gets an in-app notice."""
    texts = {"textFi": text_fi, "textSv": text_sv, "textEn": text_en}
    for field, text in texts.items():
        if not text.strip():
            raise UserError(Code.RULES_TEXT_MISSING, field=field)
        if len(text) > MAX_RULES_LENGTH:
            raise UserError(Code.TEXT_TOO_LONG, field=field, max=MAX_RULES_LENGTH)
    async with in_transaction("community"):
        latest = await RulesVersion.all().order_by("-version").select_for_update().first()
        version = await RulesVersion.create(
            version=(latest.version + 1) if latest else 1,
            text_fi=text_fi,
            text_sv=text_sv,
            text_en=text_en,
            published_by_id=actor.id if actor else None,
        )
        member_ids: list[Any] = await Member.filter(
            status=MemberStatus.ACTIVE, role=Role.MEMBER
        ).values_list("id", flat=True)
        # One notice per member, each at the next position of that member's stream.
        await notify_many(
            [int(m) for m in member_ids], "RULES_CHANGED", {"rulesVersionId": version.id}
        )
        await audit.record(actor, "rules.publish", version=version.version)
    await get_bus().publish(EVERYONE_CHANNEL, {"type": "notification"})
    if get_settings().rules_change_email and version.version > 1:
        from resolvers import mail, outreach

        link = mail.link("/rules")
        await outreach.email_members(
            [int(m) for m in member_ids],
            "rules_changed",
            lambda _lang: {"version": version.version, "link": link},
        )
    return version


async def do_accept_rules(member: Member, rules_id: int) -> RulesAcceptance:
    current = await current_rules()
    if current is None or current.id != rules_id:
        raise UserError(Code.RULES_NOT_CURRENT, field="versionId")
    existing = await RulesAcceptance.get_or_none(member_id=member.id, rules_id=rules_id)
    if existing is not None:
        return existing  # accepting twice is answered, not stored twice
    try:
        return await RulesAcceptance.create(member=member, rules=current)
    except IntegrityError:  # a double submit raced in: it is stored once
        return await RulesAcceptance.get(member_id=member.id, rules_id=rules_id)
