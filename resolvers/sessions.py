"""Sign-in, sessions and login throttling.

Sessions are opaque 256-bit tokens; only their SHA-256 is stored, with an
idle and an absolute expiry. Failed sign-ins are counted per account and per
client address (both as keyed hashes), and every failure path does the same
work and gives the same answer whether or not the account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tortoise.expressions import F

from config import get_settings
from models.community import LoginThrottle, Member, MemberStatus, Session
from models.contacts import Contact
from resolvers import clock, crypto
from resolvers.checks import check_email
from resolvers.errors import Code, UserError
from resolvers.passwords import verify_password
from resolvers.throttle import count_in_window
from subscriptions.bus import get_bus
from subscriptions.notifications import member_channel

TOUCH_EVERY = timedelta(seconds=60)


@dataclass
class SignedIn:
    member: Member
    session: Session
    token: str


async def _count_attempt(key: str) -> tuple[int, int]:
    """Count one attempt for ``key`` atomically: (attempts in this window, seconds left).

    Counting before the password is checked makes a burst of parallel
    attempts count in full: none of them can slip past the limit.
    """
    return await count_in_window(key, get_settings().login_window_seconds)


async def _find_member(identifier: str) -> Member | None:
    """By login name, or by email through the blind index and the sealed link."""
    if "@" in identifier:
        try:
            email = check_email(identifier)
        except UserError:
            return None
        contact = await Contact.get_or_none(email_index=crypto.email_index(email))
        if contact is None:
            return None
        return await Member.get_or_none(id=crypto.unseal_member(contact.member_seal))
    key = identifier.strip().lower()
    if not 0 < len(key) <= 32 or "\x00" in key:
        return None  # cannot be a login name: an unknown account, not an error
    return await Member.get_or_none(login_key=key)


async def do_login(identifier: str, password: str, client_address: str) -> SignedIn:
    settings = get_settings()
    identifier = identifier.strip()[:320].replace("\x00", "")
    member = await _find_member(identifier)
    # One counter per account however it is typed (name or email, any case);
    # per typed text when no account matches, so unknown names are throttled alike.
    account_key = crypto.throttle_key(
        "account", f"member:{member.id}" if member else identifier.lower()
    )
    address_key = crypto.throttle_key("address", client_address)
    account_attempts, account_wait = await _count_attempt(account_key)
    address_attempts, address_wait = await _count_attempt(address_key)
    if account_attempts > settings.login_max_failures_account:
        raise UserError(Code.TOO_MANY_ATTEMPTS, retry_after=account_wait)
    if address_attempts > settings.login_max_failures_address:
        raise UserError(Code.TOO_MANY_ATTEMPTS, retry_after=address_wait)
    # Always one full argon2 verification, against a dummy hash if no account.
    ok = await verify_password(member.password_hash if member else None, password)
    if not ok or member is None or member.status != MemberStatus.ACTIVE:
        # One neutral answer for: no such account, wrong password, not verified, resigned.
        raise UserError(Code.INVALID_CREDENTIALS)
    if member.locked_at is not None:
        # Told only to whoever knows the password: the reset link we sent unlocks it.
        locked = UserError(Code.ACCOUNT_LOCKED)
        locked.language = member.language.value  # the owner is known: their language
        raise locked
    # A success clears the account's count and takes its attempt off the address's.
    await LoginThrottle.filter(key=account_key).delete()
    await LoginThrottle.filter(key=address_key, failures__gt=0).update(failures=F("failures") - 1)
    return await start_session(member)


async def start_session(member: Member) -> SignedIn:
    settings = get_settings()
    token = crypto.new_token()
    now = clock.now()
    session = await Session.create(
        member=member,
        token_hash=crypto.hash_token(token),
        last_seen_at=now,
        expires_at=now + timedelta(days=settings.session_absolute_days),
    )
    return SignedIn(member=member, session=session, token=token)


async def access_session(token: str | None) -> Session | None:
    """The live session a bearer token names, with its member; None if none."""
    if not token or len(token) > 200:
        return None
    session = await Session.get_or_none(token_hash=crypto.hash_token(token)).select_related(
        "member"
    )
    if session is None:
        return None
    if not await session_is_live(session):
        await session.delete()
        return None
    now = clock.now()
    if now - session.last_seen_at > TOUCH_EVERY:
        session.last_seen_at = now
        await Session.filter(id=session.id).update(last_seen_at=now)
    return session


async def session_is_live(session: Session) -> bool:
    settings = get_settings()
    now = clock.now()
    idle_limit = session.last_seen_at + timedelta(minutes=settings.session_idle_minutes)
    if session.expires_at <= now or idle_limit <= now:
        return False
    member: Member = session.member
    return member.status == MemberStatus.ACTIVE and member.locked_at is None


async def session_still_exists(session_id: int) -> bool:
    """For open subscriptions: is the session still there and live?"""
    return await reload_session(session_id) is not None


async def reload_session(session_id: int) -> Session | None:
    """The session with a fresh member, or None once it has ended."""
    session = await Session.get_or_none(id=session_id).select_related("member")
    if session is None or not await session_is_live(session):
        return None
    return session


async def publish_sessions_ended(member_id: int) -> None:
    """Tell every worker to re-check this member's open subscriptions."""
    await get_bus().publish(member_channel(member_id), {"type": "sessions_ended"})


async def do_logout(session: Session) -> None:
    member_id = session.member_id  # type: ignore[attr-defined]
    await Session.filter(id=session.id).delete()
    await publish_sessions_ended(member_id)


async def do_revoke_session(member: Member, session_id: int) -> None:
    # A member can revoke only their own sessions; others' look like missing ones.
    deleted = await Session.filter(id=session_id, member_id=member.id).delete()
    if not deleted:
        raise UserError(Code.NOT_FOUND)
    await publish_sessions_ended(member.id)


async def do_logout_everywhere(member: Member, keep: Session | None = None) -> int:
    query = Session.filter(member_id=member.id)
    if keep is not None:
        query = query.exclude(id=keep.id)
    deleted = await query.delete()
    await publish_sessions_ended(member.id)
    return deleted


async def list_sessions(member: Member) -> list[Session]:
    return await Session.filter(member_id=member.id).order_by("-last_seen_at", "-id")
