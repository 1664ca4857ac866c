"""Moderators' actions on members: warn, suspend (with escalation), pre-moderate, ban.

- A warning blocks writing until the member acknowledges it.
- A suspension lets the member read but not write until a time; without an
  explicit end, repeat suspensions lengthen along ``SUSPENSION_STEPS_HOURS``.
- Pre-moderation holds every post of the member for review.
- A ban ends the membership for a rules breach: sessions end and open
  websockets are closed at once on every worker; the contact data and the
  email's keyed blind index are kept for the legal-hold period
  (``BAN_HOLD_DAYS``), during which the address cannot register again, and
  :func:`purge_ended_bans` erases them afterwards.

Every action is audited (who, what, whom, why, when) and appears on the
moderators' live feed. Moderators act on pseudonyms only: nothing here
returns contact data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from tortoise.transactions import in_transaction

from config import get_settings
from models.community import Member, MemberStatus, Role, Session
from models.contacts import BannedAddress, Contact, EmailToken
from models.moderation import MemberSanction, ModerationEventKind, ReportCategory, SanctionKind
from resolvers import audit, clock, crypto, mail, modfeed
from resolvers.errors import Code, UserError
from resolvers.formatting import clean_text
from resolvers.notices import notify
from resolvers.sessions import publish_sessions_ended
from subscriptions.bus import get_bus
from subscriptions.connections import close_member_connections, forget_member_everywhere
from subscriptions.notifications import member_channel

NOTE_MAX = 1000
MODERATORS = (Role.MODERATOR, Role.ADMIN)

CATEGORY_NAMES: dict[str, dict[str, str]] = {
    "misinformation": {"fi": "väärä tieto", "sv": "felaktig information", "en": "misinformation"},
    "spam_or_trolling": {
        "fi": "roskaposti tai trollaus",
        "sv": "skräppost eller trollande",
        "en": "spam or trolling",
    },
    "selling": {"fi": "myynti", "sv": "försäljning", "en": "selling"},
    "personal_attack": {
        "fi": "henkilöön kohdistuva hyökkäys",
        "sv": "personangrepp",
        "en": "personal attack",
    },
    "illegal_activity": {
        "fi": "laiton toiminta",
        "sv": "olaglig verksamhet",
        "en": "illegal activity",
    },
    "offensive": {
        "fi": "loukkaava, halventava tai uhkaava sisältö",
        "sv": "kränkande, nedsättande eller hotfullt innehåll",
        "en": "degrading, offensive or threatening content",
    },
    "personal_data": {
        "fi": "henkilötietojen levittäminen",
        "sv": "spridning av personuppgifter",
        "en": "sharing personal data",
    },
    "other": {"fi": "muu sääntörikkomus", "sv": "annat regelbrott", "en": "other breach"},
}


class MemberAction(StrEnum):
    WARN = "warn"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    PREMODERATE = "premoderate"
    END_PREMODERATION = "end_premoderation"
    BAN = "ban"


NEEDS_CATEGORY = (MemberAction.WARN, MemberAction.SUSPEND, MemberAction.BAN)


def _is_moderator(member: Member) -> bool:
    return member.role in MODERATORS


def suspension_hours(previous_suspensions: int) -> int:
    """The escalation: the length of the next suspension after ``previous`` ones."""
    steps = get_settings().suspension_steps_hours
    return steps[min(previous_suspensions, len(steps) - 1)]


async def do_moderate_member(
    moderator: Member,
    member_id: int,
    action: MemberAction,
    category: ReportCategory | None,
    note: str,
    until: datetime | None = None,
) -> tuple[Member, MemberSanction | None, bool]:
    """Apply a member action; returns (member, sanction, applied)."""
    if not _is_moderator(moderator):
        raise UserError(Code.NOT_FOUND)
    target = await Member.get_or_none(id=member_id)
    if target is None:
        raise UserError(Code.NOT_FOUND, field="memberId")
    if target.role != Role.MEMBER or target.status != MemberStatus.ACTIVE:
        raise UserError(Code.NOT_A_MEMBER, field="memberId")
    if action in NEEDS_CATEGORY and category is None:
        raise UserError(Code.CATEGORY_REQUIRED, field="category")
    note = clean_text(note, NOTE_MAX, field="note") if note.strip() else ""
    now = clock.now()
    if until is not None and (action != MemberAction.SUSPEND or until <= now):
        raise UserError(Code.INVALID_TIME, field="until")
    sanction: MemberSanction | None = None
    notified = False
    banned = False
    async with in_transaction("community"):
        target = await Member.filter(id=member_id).select_for_update(no_key=True).get()
        if target.status != MemberStatus.ACTIVE:
            raise UserError(Code.NOT_A_MEMBER, field="memberId")
        cat = category.value if category else None
        if action == MemberAction.WARN:
            sanction = await _sanction(moderator, target, SanctionKind.WARN, cat, note, now)
            await notify(target.id, "WARNING", {"sanctionId": sanction.id, "category": cat})
            notified = True
        elif action == MemberAction.SUSPEND:
            if until is None:
                previous = await MemberSanction.filter(
                    member_id=target.id, kind=SanctionKind.SUSPEND
                ).count()
                until = now + timedelta(hours=suspension_hours(previous))
            sanction = await _sanction(
                moderator, target, SanctionKind.SUSPEND, cat, note, now, until=until
            )
            target.suspended_until = until
            await target.save(update_fields=["suspended_until"])
            await notify(
                target.id,
                "SUSPENDED",
                {"sanctionId": sanction.id, "category": cat, "until": until.isoformat()},
            )
            notified = True
        elif action == MemberAction.UNSUSPEND:
            if target.suspended_until is None or target.suspended_until <= now:
                return target, None, False
            target.suspended_until = None
            await target.save(update_fields=["suspended_until"])
            await MemberSanction.filter(
                member_id=target.id, kind=SanctionKind.SUSPEND, lifted_at__isnull=True
            ).update(lifted_at=now, lifted_by_id=moderator.id)
        elif action == MemberAction.PREMODERATE:
            if target.premoderated:
                return target, None, False
            target.premoderated = True
            await target.save(update_fields=["premoderated"])
            sanction = await _sanction(moderator, target, SanctionKind.PREMODERATE, cat, note, now)
        elif action == MemberAction.END_PREMODERATION:
            if not target.premoderated:
                return target, None, False
            target.premoderated = False
            await target.save(update_fields=["premoderated"])
            await MemberSanction.filter(
                member_id=target.id, kind=SanctionKind.PREMODERATE, lifted_at__isnull=True
            ).update(lifted_at=now, lifted_by_id=moderator.id)
        else:
            sanction = await _ban(moderator, target, cat, note, now)
            banned = True
        await audit.record(
            moderator,
            f"member.{action.value}",
            target_member_id=target.id,
            reason=note,
            category=cat,
            until=until.isoformat() if until else None,
        )
        moderation = await modfeed.append(
            ModerationEventKind.MEMBER_ACTION,
            member_id=target.id,
            actor_id=moderator.id,
            action=action.value,
            category=cat,
            until=until.isoformat() if until else None,
        )
    if banned:
        # Every worker: subscriptions stop and the member's websockets close now.
        await publish_sessions_ended(target.id)
        await close_member_connections(target.id)
        await forget_member_everywhere(target.id)
        mail.wake_worker()
    elif notified:
        await get_bus().publish(member_channel(target.id), {"type": "notification"})
    await modfeed.publish(moderation)
    return target, sanction, True


async def _sanction(
    moderator: Member,
    target: Member,
    kind: SanctionKind,
    category: str | None,
    note: str,
    now: datetime,
    until: datetime | None = None,
) -> MemberSanction:
    return await MemberSanction.create(
        member=target,
        kind=kind,
        category=category,
        note=note,
        created_by_id=moderator.id,
        created_at=now,
        until=until,
    )


async def _ban(
    moderator: Member, target: Member, category: str | None, note: str, now: datetime
) -> MemberSanction:
    """End the membership (inside the community transaction; contacts nested inside)."""
    hold_until = clock.today() + timedelta(days=get_settings().ban_hold_days)
    target.status = MemberStatus.BANNED
    target.ended_at = now
    target.suspended_until = None
    await target.save(update_fields=["status", "ended_at", "suspended_until"])
    await Session.filter(member_id=target.id).delete()
    sanction = await _sanction(
        moderator, target, SanctionKind.BAN, category, note, now, until=hold_until
    )
    async with in_transaction("contacts"):
        contact = await Contact.get_or_none(member_index=crypto.member_index(target.id))
        if contact is not None:
            await BannedAddress.create(
                email_index=contact.email_index,
                member_index=contact.member_index,
                banned_at=clock.today(),
                hold_until=hold_until,
            )
            # No link sent earlier (password reset, email change) can revive the account.
            await EmailToken.filter(contact_id=contact.id).delete()
            language = contact.language
            await mail.enqueue(
                contact,
                crypto.decrypt(contact.email_ciphertext, "contact-email"),
                "banned",
                language,
                category=CATEGORY_NAMES.get(category or "other", CATEGORY_NAMES["other"])[language],
                hold_until=hold_until.date().isoformat(),
            )
    return sanction


async def do_acknowledge_warning(member: Member, sanction_id: int) -> MemberSanction:
    """The member has read a warning; acknowledging twice is answered, not stored twice."""
    row = await MemberSanction.get_or_none(
        id=sanction_id, member_id=member.id, kind=SanctionKind.WARN
    )
    if row is None:
        raise UserError(Code.NOT_FOUND, field="id")
    if row.acknowledged_at is None:
        await MemberSanction.filter(id=row.id, acknowledged_at__isnull=True).update(
            acknowledged_at=clock.now()
        )
        await row.refresh_from_db()
    return row


async def purge_ended_bans() -> int:
    """Erase banned members whose legal-hold period has ended; returns how many.

    Their contact data, the email's blind index, names, password and
    notices go, exactly as on resignation; the pseudonymous tombstone stays
    (shown as "former member"), so what they posted stays de-linked.
    """
    from resolvers.accounts import erase_personal_data

    done = 0
    bans = await MemberSanction.filter(
        kind=SanctionKind.BAN, until__lte=clock.now(), lifted_at__isnull=True
    ).order_by("id")
    for ban in bans:
        async with in_transaction("community"):
            # Claimed first: of two rounds at once, one erases and audits, the other skips.
            claimed = await MemberSanction.filter(id=ban.id, lifted_at__isnull=True).update(
                lifted_at=clock.now()
            )
            if not claimed:
                continue
            member = await Member.get(id=ban.member_id)  # type: ignore[attr-defined]
            await erase_personal_data(member)
            await audit.record(None, "member.ban_purged", target_member_id=member.id)
        await forget_member_everywhere(member.id)
        done += 1
    return done


async def do_lock_account(actor: Member, member_id: int, reason: str) -> tuple[Member, bool]:
    """Lock an account on suspected misuse: sessions and websockets end, sign-in is refused,
    and a password-reset link goes to the member's address so the real member can
    regain access (the reset unlocks). Admins; moderators if MODERATORS_LOCK_ACCOUNTS."""
    from resolvers.accounts import send_reset_link

    _check_locker(actor)
    reason = clean_text(reason, NOTE_MAX, field="reason")
    async with in_transaction("community"):
        target = await Member.filter(id=member_id).select_for_update().first()
        if target is None:
            raise UserError(Code.NOT_FOUND, field="memberId")
        if target.status != MemberStatus.ACTIVE or target.role != Role.MEMBER:
            # Staff accounts have no address for the reset link: not locked this way.
            raise UserError(Code.NOT_A_MEMBER, field="memberId")
        if target.locked_at is not None:
            return target, False
        target.locked_at = clock.now()
        await target.save(update_fields=["locked_at"])
        await Session.filter(member_id=target.id).delete()
        await audit.record(actor, "member.lock", target_member_id=target.id, reason=reason)
        async with in_transaction("contacts"):
            contact = await Contact.get_or_none(member_index=crypto.member_index(target.id))
            if contact is not None:
                address = crypto.decrypt(contact.email_ciphertext, "contact-email")
                await send_reset_link(contact, address)
    await publish_sessions_ended(target.id)
    await close_member_connections(target.id)
    mail.wake_worker()
    return target, True


async def do_unlock_account(actor: Member, member_id: int, reason: str) -> tuple[Member, bool]:
    _check_locker(actor)
    reason = clean_text(reason, NOTE_MAX, field="reason")
    async with in_transaction("community"):
        target = await Member.filter(id=member_id).select_for_update().first()
        if target is None:
            raise UserError(Code.NOT_FOUND, field="memberId")
        if target.locked_at is None:
            return target, False
        target.locked_at = None
        await target.save(update_fields=["locked_at"])
        await audit.record(actor, "member.unlock", target_member_id=target.id, reason=reason)
    return target, True


def _check_locker(actor: Member) -> None:
    allowed = actor.role == Role.ADMIN or (
        actor.role == Role.MODERATOR and get_settings().moderators_lock_accounts
    )
    if not allowed:
        raise UserError(Code.LOCK_NOT_ALLOWED)
