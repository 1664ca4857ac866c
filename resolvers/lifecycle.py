"""The membership lifecycle job: inactivity warnings and ends, and retention purges.

One round (``run_lifecycle``) does, in order:

1. warn members with no participation for ``INACTIVITY_WARN_DAYS`` (in-app
   and by email, in their language), once: a warning is not repeated until
   the member has taken part again;
2. end the membership of members warned and still without participation at
   ``INACTIVITY_END_DAYS``, erasing personal data as on resignation;
3. erase banned members whose legal hold has ended;
4. purge delivered mail after ``OUTBOX_RETENTION_DAYS``, expired sessions,
   used or expired email tokens, and registrations never verified.

Every step is a conditional update or a delete of what is due, so a round
is safe to run twice and on several workers at once. ``dry_run`` counts
what a round would do and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from config import get_settings
from models.community import Member, MemberStatus, Role, Session
from models.contacts import Consent, Contact, EmailToken, OutboxMessage
from models.moderation import MemberSanction, SanctionKind
from resolvers import audit, clock, crypto, outreach
from resolvers.notices import notify
from resolvers.sessions import publish_sessions_ended
from subscriptions.bus import get_bus
from subscriptions.connections import forget_member_everywhere
from subscriptions.notifications import member_channel


@dataclass
class LifecycleReport:
    warned: int = 0
    ended: int = 0
    bans_purged: int = 0
    mail_purged: int = 0
    sessions_purged: int = 0
    tokens_purged: int = 0
    unverified_purged: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inactive_since(cutoff: datetime) -> Q:
    """Members whose last participation (or, if none, activation) is before ``cutoff``."""
    return Q(last_active_at__lt=cutoff) | Q(last_active_at__isnull=True, activated_at__lt=cutoff)


def _members() -> Any:
    return Member.filter(role=Role.MEMBER, status=MemberStatus.ACTIVE)


async def _to_warn(now: datetime) -> list[Member]:
    cutoff = now - timedelta(days=get_settings().inactivity_warn_days)
    rows = await _members().filter(_inactive_since(cutoff))
    # Not yet warned since the last participation: activity after a warning cancels it.
    return [m for m in rows if not _warned_since_activity(m)]


def _warned_since_activity(member: Member) -> bool:
    warned = member.inactivity_warned_at
    if warned is None:
        return False
    last = member.last_active_at or member.activated_at
    return last is None or warned >= last


WARNING_NOTICE = timedelta(days=7)  # the least time a warned member has to react


def ends_on(member: Member, warned_at: datetime) -> datetime:
    """When a warned member's membership ends: INACTIVITY_END_DAYS after the last
    participation, and never sooner than a week after the warning."""
    last = member.last_active_at or member.activated_at or warned_at
    return max(
        last + timedelta(days=get_settings().inactivity_end_days), warned_at + WARNING_NOTICE
    )


async def _to_end(now: datetime) -> list[Member]:
    cutoff = now - timedelta(days=get_settings().inactivity_end_days)
    rows = await _members().filter(_inactive_since(cutoff), inactivity_warned_at__isnull=False)
    # Only after a warning that still stands, and when the day it named has come.
    return [
        m
        for m in rows
        if _warned_since_activity(m)
        and m.inactivity_warned_at is not None
        and ends_on(m, m.inactivity_warned_at) <= now
    ]


async def warn_inactive(now: datetime, dry_run: bool) -> int:
    members = await _to_warn(now)
    if dry_run:
        return len(members)
    warned: list[tuple[int, datetime]] = []
    for member in members:
        end = ends_on(member, now)
        async with in_transaction("community"):
            # Conditional: a second worker's round warns nobody twice.
            took = await Member.filter(
                id=member.id, inactivity_warned_at=member.inactivity_warned_at
            ).update(inactivity_warned_at=now)
            if took:
                await notify(member.id, "INACTIVITY_WARNING", {"until": end.isoformat()})
                warned.append((member.id, end))
    for member_id, end in warned:
        await get_bus().publish(member_channel(member_id), {"type": "notification"})
        await outreach.email_members(
            [member_id],
            "inactivity_warning",
            _same({"ends_on": end.date().isoformat()}),
            bulk=False,
        )
    return len(warned)


def _same(context: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    return lambda _language: context


async def end_inactive(now: datetime, dry_run: bool) -> int:
    from resolvers.accounts import erase_personal_data

    members = await _to_end(now)
    if dry_run:
        return len(members)
    ended = 0
    for member in members:
        async with in_transaction("community"):
            row = await Member.filter(id=member.id).select_for_update().get()
            if row.status != MemberStatus.ACTIVE or not _warned_since_activity(row):
                continue  # took part (or left) meanwhile
            row.status = MemberStatus.RESIGNED
            row.ended_at = now
            await row.save(update_fields=["status", "ended_at"])
            await erase_personal_data(row)
            await audit.record(None, "member.inactivity_end", target_member_id=row.id)
        await publish_sessions_ended(member.id)
        await forget_member_everywhere(member.id)
        ended += 1
    return ended


async def purge_bans(now: datetime, dry_run: bool) -> int:
    from resolvers.sanctions import purge_ended_bans

    if dry_run:
        return await MemberSanction.filter(
            kind=SanctionKind.BAN, until__lte=now, lifted_at__isnull=True
        ).count()
    return await purge_ended_bans()


async def purge_mail(now: datetime, dry_run: bool) -> int:
    """Delivered mail holds an address and a text: gone after the retention time."""
    cutoff = now - timedelta(days=get_settings().outbox_retention_days)
    query = OutboxMessage.filter(status__in=("sent", "failed"), created_at__lt=cutoff)
    return await query.count() if dry_run else await query.delete()


async def purge_sessions(now: datetime, dry_run: bool) -> int:
    idle = now - timedelta(minutes=get_settings().session_idle_minutes)
    query = Session.filter(Q(expires_at__lte=now) | Q(last_seen_at__lte=idle))
    return await query.count() if dry_run else await query.delete()


async def purge_tokens(now: datetime, dry_run: bool) -> int:
    query = EmailToken.filter(Q(expires_at__lte=now) | Q(used_at__isnull=False))
    return await query.count() if dry_run else await query.delete()


async def purge_unverified(now: datetime, dry_run: bool) -> int:
    """Registrations never verified (and name placeholders) after UNVERIFIED_RETENTION_DAYS."""
    cutoff = now - timedelta(days=get_settings().unverified_retention_days)
    rows = await Member.filter(status=MemberStatus.PENDING, created_at__lt=cutoff)
    if dry_run:
        return len(rows)
    for member in rows:
        async with in_transaction("community"):
            async with in_transaction("contacts"):
                contact = await Contact.get_or_none(member_index=crypto.member_index(member.id))
                if contact is not None:
                    await OutboxMessage.filter(contact_id=contact.id).delete()
                    await EmailToken.filter(contact_id=contact.id).delete()
                    await Consent.filter(contact_id=contact.id).delete()
                    await contact.delete()
            # Never active: no posts, answers or audit entries point at it.
            await Member.filter(id=member.id, status=MemberStatus.PENDING).delete()
    return len(rows)


async def run_lifecycle(dry_run: bool = False) -> LifecycleReport:
    now = clock.now()
    report = LifecycleReport(dry_run=dry_run)
    report.warned = await warn_inactive(now, dry_run)
    report.ended = await end_inactive(now, dry_run)
    report.bans_purged = await purge_bans(now, dry_run)
    report.mail_purged = await purge_mail(now, dry_run)
    report.sessions_purged = await purge_sessions(now, dry_run)
    report.tokens_purged = await purge_tokens(now, dry_run)
    report.unverified_purged = await purge_unverified(now, dry_run)
    return report
