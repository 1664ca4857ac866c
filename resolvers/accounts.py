"""Membership: registration, email verification, profile, password, email, resignation.

Only the modules listed in the README's architecture section touch the
contacts register. Writes that span both registers take the community locks
first and the contacts ones second (no lock cycle). Registration commits
the member, then the contact, and undoes the member when the contact cannot
be written (see :func:`do_register`); other writes open the contacts
transaction inside the community one, so a failure before the end rolls
both back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config import get_settings
from models.community import (
    GroupMembership,
    Language,
    LoginThrottle,
    Member,
    MemberStatus,
    NameHistory,
    Notification,
    RulesAcceptance,
    Session,
)
from models.contacts import BannedAddress, Consent, Contact, EmailToken, OutboxMessage
from models.research import AttributeValue
from resolvers import audit, clock, crypto, mail, studies
from resolvers.checks import (
    check_birth_date,
    check_display_name,
    check_display_not_identifying,
    check_email,
    check_language,
    check_login_name,
)
from resolvers.errors import Code, UserError
from resolvers.passwords import check_password, hash_password, verify_password
from resolvers.rules import check_can_write, current_rules
from resolvers.segments import record_birth_period
from resolvers.sessions import publish_sessions_ended
from subscriptions.connections import forget_member_everywhere

log = logging.getLogger("community.accounts")


@dataclass
class Registration:
    """What registering answers: the same whether or not the email was known."""

    email_sent: bool = True


async def contact_of(member: Member) -> Contact | None:
    """The member's contact record, found through the keyed link."""
    return await Contact.get_or_none(member_index=crypto.member_index(member.id))


async def _issue_token(contact: Contact, purpose: str, lifetime: timedelta, **extra: Any) -> str:
    token = crypto.new_token()
    await EmailToken.create(
        contact=contact,
        purpose=purpose,
        token_hash=crypto.hash_token(token),
        created_at=clock.today(),
        expires_at=clock.hour_after(clock.now() + lifetime),
        **extra,
    )
    return token


async def _use_token(token: str, purpose: str) -> EmailToken:
    """Consume a single-use token (call inside a contacts transaction)."""
    row = await EmailToken.get_or_none(token_hash=crypto.hash_token(token or ""), purpose=purpose)
    now = clock.now()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise UserError(Code.TOKEN_INVALID, field="token")
    # Conditional update: of two concurrent uses only one wins. Kept to the day.
    used = await EmailToken.filter(id=row.id, used_at__isnull=True).update(used_at=clock.today())
    if used != 1:
        raise UserError(Code.TOKEN_INVALID, field="token")
    return row


async def _check_names_free(
    login_key: str | None, display_key: str | None, member_id: int = 0
) -> None:
    if login_key and await Member.filter(login_key=login_key).exclude(id=member_id).exists():
        raise UserError(Code.NAME_TAKEN, field="loginName")
    if display_key and await Member.filter(display_key=display_key).exclude(id=member_id).exists():
        raise UserError(Code.NAME_TAKEN, field="displayName")


async def _tell_already_registered(address: str, index: str, language: str) -> bool:
    """Email the owner of a known address instead of registering it again.

    An address under a ban's legal hold is told it cannot register until the
    hold ends (the same answer to the caller as any registration).
    """
    hold = await BannedAddress.get_or_none(email_index=index, hold_until__gt=clock.now())
    if hold is not None:
        # Tied to the banned contact, so that the purge after the hold removes it too.
        banned = await Contact.get_or_none(email_index=index)
        await _notice_within_cap(
            banned,
            address,
            "registration_refused",
            language,
            hold_until=hold.hold_until.date().isoformat(),
        )
        return True
    existing = await Contact.get_or_none(email_index=index)
    if existing is None:
        return False
    await _notice_within_cap(
        existing,
        address,
        "already_registered",
        existing.language,
        login_link=mail.link("/login"),
        reset_link=mail.link("/reset-password"),
    )
    return True


async def _notice_within_cap(
    contact: Contact | None, address: str, template: str, language: str, **params: str
) -> None:
    """Queue a notice that a stranger can cause, unless the address had its daily cap."""
    if await mail.within_daily_cap(contact, template):
        async with in_transaction("contacts"):
            await mail.enqueue(contact, address, template, language, bulk=False, **params)
        mail.wake_worker()


async def _reserve_names(
    login: str, login_key: str, display: str, display_key: str, language: str
) -> None:
    """Reserve the names of a registration whose address was already known.

    Exactly as a new registration would; otherwise a later registration with
    the same names would tell whether the address was known. The placeholder
    has no contact and no password, so it can never sign in; unverified
    registrations are purged by the lifecycle job.
    """
    try:
        await Member.create(
            login_name=login,
            login_key=login_key,
            display_name=display,
            display_key=display_key,
            language=Language(language),
            status=MemberStatus.PENDING,
        )
    except IntegrityError:
        pass  # taken a moment ago by someone else: the same answer either way


async def _undo_member(member_id: int) -> None:
    """Remove a registration whose contact was never committed (pending: nothing
    points at it but its rules acceptance and age band, which cascade)."""
    await Member.filter(id=member_id, status=MemberStatus.PENDING).delete()


async def do_register(
    email: str,
    birth_date: date,
    language: str,
    login_name: str,
    display_name: str,
    password: str,
    rules_version_id: int,
) -> Registration:
    """Register a member, or tell an existing address's owner by email.

    The answer never reveals whether the address was already registered:
    every check runs, the password is hashed and one email goes out either way.
    """
    normalised = check_email(email)
    birth_year = check_birth_date(birth_date, clock.now().date())
    check_language(language)
    login, login_key = check_login_name(login_name)
    display, display_key = check_display_name(display_name)
    check_display_not_identifying(display_key, login, normalised)
    check_password(password, login, display, normalised.split("@", 1)[0])
    rules = await current_rules()
    if rules is None or rules.id != rules_version_id:
        raise UserError(Code.RULES_NOT_CURRENT, field="rulesVersionId")
    await _check_names_free(login_key, display_key)
    password_hash = await hash_password(password)
    index = crypto.email_index(normalised)
    settings = get_settings()

    if await _tell_already_registered(normalised, index, language):
        await _reserve_names(login, login_key, display, display_key, language)
        return Registration()

    # The member is committed first and the contact second. A crash between the
    # two commits leaves a pending member without contact: it cannot sign in
    # (no verify link exists), the address stays free to register, and the
    # lifecycle job purges it like any unverified registration. The other
    # order left a contact without member, which held the address for ever.
    member_id: int | None = None
    try:
        async with in_transaction("community"):
            member = await Member.create(
                login_name=login,
                login_key=login_key,
                display_name=display,
                display_key=display_key,
                password_hash=password_hash,
                language=Language(language),
                status=MemberStatus.PENDING,
            )
            await RulesAcceptance.create(member=member, rules=rules)
            await record_birth_period(member, birth_year)
        member_id = member.id
        async with in_transaction("contacts"):
            contact = await Contact.create(
                email_ciphertext=crypto.encrypt(normalised, "contact-email"),
                email_index=index,
                birth_year=birth_year,
                language=language,
                member_index=crypto.member_index(member.id),
                member_seal=crypto.seal_member(member.id),
                created_at=clock.today(),
            )
            for kind, version in (("rules", str(rules.version)), ("privacy_notice", "1")):
                await Consent.create(
                    contact=contact, kind=kind, version=version, given_at=clock.today()
                )
            token = await _issue_token(
                contact, "verify", timedelta(hours=settings.verify_token_hours)
            )
            await mail.enqueue(
                contact,
                normalised,
                "verify",
                language,
                display_name=display,
                hours=settings.verify_token_hours,
                link=mail.link("/verify-email", token=token),
            )
    except IntegrityError:
        if member_id is not None:
            await _undo_member(member_id)
        # A concurrent registration took a name or the address a moment ago.
        await _check_names_free(login_key, display_key)
        if await _tell_already_registered(normalised, index, language):
            await _reserve_names(login, login_key, display, display_key, language)
        return Registration()
    except BaseException:
        # The contacts commit failed after the community commit: undo the member.
        if member_id is not None:
            await _undo_member(member_id)
        raise
    mail.wake_worker()
    return Registration()


async def do_verify_email(token: str) -> Member:
    # Community first, then contacts: the order register takes them in (no lock cycle).
    async with in_transaction("community"), in_transaction("contacts"):
        row = await _use_token(token, "verify")
        contact = await Contact.get(id=row.contact_id)  # type: ignore[attr-defined]
        contact.verified_at = clock.today()
        await contact.save(update_fields=["verified_at"])
        member = await Member.get(id=crypto.unseal_member(contact.member_seal))
        if member.status == MemberStatus.PENDING:
            member.status = MemberStatus.ACTIVE
            member.activated_at = clock.now()
            await member.save(update_fields=["status", "activated_at"])
    return member


async def do_update_profile(
    member: Member,
    display_name: str | None = None,
    login_name: str | None = None,
    language: str | None = None,
) -> Member:
    if display_name is None and login_name is None and language is None:
        raise UserError(Code.NOTHING_TO_CHANGE)
    changes: list[str] = []
    history: list[tuple[str, str]] = []
    new_login = member.login_name or ""
    if login_name is not None and login_name != member.login_name:
        new_login, login_key = check_login_name(login_name)
        await _check_names_free(login_key, None, member.id)
        history.append(("login", member.login_name or ""))
        member.login_name, member.login_key = new_login, login_key
        changes += ["login_name", "login_key"]
    if display_name is not None and display_name != member.display_name:
        # A new public name is a public write: it needs the current rules accepted.
        await check_can_write(member)
        display, display_key = check_display_name(display_name)
        contact = await contact_of(member)
        email = crypto.decrypt(contact.email_ciphertext, "contact-email") if contact else None
        check_display_not_identifying(display_key, new_login, email)
        await _check_names_free(None, display_key, member.id)
        history.append(("display", member.display_name or ""))
        member.display_name, member.display_key = display, display_key
        changes += ["display_name", "display_key"]
    if language is not None and language != member.language:
        member.language = Language(check_language(language))
        changes.append("language")
    if not changes:
        return member
    try:
        async with in_transaction("community"):
            await member.save(update_fields=changes)
            for kind, old in history:
                await NameHistory.create(member=member, kind=kind, old_value=old)
            if "language" in changes:
                async with in_transaction("contacts"):
                    await Contact.filter(member_index=crypto.member_index(member.id)).update(
                        language=language
                    )
    except IntegrityError:
        await member.refresh_from_db()
        raise UserError(
            Code.NAME_TAKEN, field="displayName" if "display_name" in changes else "loginName"
        ) from None
    return member


async def do_change_password(
    member: Member, session: Session | None, current: str, new: str
) -> None:
    """Change the password; every other session of the member ends."""
    if not await verify_password(member.password_hash, current):
        raise UserError(Code.WRONG_PASSWORD, field="currentPassword")
    check_password(new, member.login_name or "", member.display_name or "", field="newPassword")
    password_hash = await hash_password(new)
    async with in_transaction("community"):
        member.password_hash = password_hash
        member.password_changed_at = clock.now()
        await member.save(update_fields=["password_hash", "password_changed_at"])
        others = Session.filter(member_id=member.id)
        if session is not None:
            others = others.exclude(id=session.id)
        await others.delete()
    await publish_sessions_ended(member.id)


async def do_request_email_change(member: Member, password: str, new_email: str) -> None:
    """Send a confirmation link to the new address and a notice to the old one."""
    if not await verify_password(member.password_hash, password):
        raise UserError(Code.WRONG_PASSWORD, field="password")
    normalised = check_email(new_email, field="newEmail")
    contact = await contact_of(member)
    if contact is None:
        raise UserError(Code.NOT_FOUND)
    # Each request mails the current address (and a link to the new one).
    if not await mail.within_daily_cap(contact, "email_change_notice"):
        tomorrow = clock.today() + timedelta(days=1)
        raise UserError(
            Code.TOO_MANY_ATTEMPTS, retry_after=int((tomorrow - clock.now()).total_seconds())
        )
    settings = get_settings()
    index = crypto.email_index(normalised)
    old = crypto.decrypt(contact.email_ciphertext, "contact-email")
    async with in_transaction("contacts"):
        if index != contact.email_index and not await Contact.exists(email_index=index):
            token = await _issue_token(
                contact,
                "change_email",
                timedelta(hours=settings.verify_token_hours),
                new_email_ciphertext=crypto.encrypt(normalised, "contact-email"),
                new_email_index=index,
            )
            await mail.enqueue(
                contact,
                normalised,
                "change_email",
                contact.language,
                hours=settings.verify_token_hours,
                link=mail.link("/confirm-email", token=token),
            )
        elif index != contact.email_index:
            # Taken by someone else: tell that address's owner, reveal nothing here.
            await _tell_already_registered(normalised, index, contact.language)
        await mail.enqueue(
            contact,
            old,
            "email_change_notice",
            contact.language,
            reset_link=mail.link("/reset-password"),
        )
    mail.wake_worker()


async def do_confirm_email_change(token: str) -> None:
    async with in_transaction("contacts"):
        row = await _use_token(token, "change_email")
        if row.new_email_index is None or row.new_email_ciphertext is None:
            raise UserError(Code.TOKEN_INVALID, field="token")
        if await Contact.exists(email_index=row.new_email_index):
            raise UserError(Code.TOKEN_INVALID, field="token")
        await Contact.filter(id=row.contact_id).update(  # type: ignore[attr-defined]
            email_ciphertext=row.new_email_ciphertext,
            email_index=row.new_email_index,
            verified_at=clock.today(),
        )
        # The pending address is no longer needed in the token row.
        await EmailToken.filter(id=row.id).update(new_email_ciphertext=None, new_email_index=None)


async def send_reset_link(contact: Contact, address: str) -> None:
    """Queue a password-reset link (inside the caller's contacts transaction)."""
    settings = get_settings()
    token = await _issue_token(contact, "reset", timedelta(minutes=settings.reset_token_minutes))
    await mail.enqueue(
        contact,
        address,
        "reset_password",
        contact.language,
        minutes=settings.reset_token_minutes,
        link=mail.link("/reset-password", token=token),
    )


async def do_request_password_reset(email: str) -> None:
    """Always the same answer; a link goes out only if the address is a member's."""
    try:
        normalised = check_email(email)
    except UserError:
        return
    contact = await Contact.get_or_none(email_index=crypto.email_index(normalised))
    if contact is None:
        return
    member = await Member.get_or_none(id=crypto.unseal_member(contact.member_seal))
    if member is None or member.status not in (MemberStatus.ACTIVE, MemberStatus.PENDING):
        return
    if not await mail.within_daily_cap(contact, "reset_password"):
        return  # the same answer: a cap tells nothing about the address
    async with in_transaction("contacts"):
        await send_reset_link(contact, normalised)
    mail.wake_worker()


async def do_reset_password(token: str, new_password: str) -> None:
    """Set a new password from an email link; all sessions end.

    Opening the link proves the address, so a still unverified member is
    verified by it too.
    """
    row = await EmailToken.get_or_none(token_hash=crypto.hash_token(token or ""), purpose="reset")
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        raise UserError(Code.TOKEN_INVALID, field="token")
    contact = await Contact.get(id=row.contact_id)  # type: ignore[attr-defined]
    member = await Member.get(id=crypto.unseal_member(contact.member_seal))
    check_password(
        new_password, member.login_name or "", member.display_name or "", field="newPassword"
    )
    # Hashed before any lock is taken; then community first, contacts second:
    # the order every write across both registers takes them in (no lock cycle).
    password_hash = await hash_password(new_password)
    async with in_transaction("community"), in_transaction("contacts"):
        await _use_token(token, "reset")
        now = clock.now()
        member.password_hash = password_hash
        member.password_changed_at = now
        fields = ["password_hash", "password_changed_at"]
        if member.locked_at is not None:
            # The real member proved the address: a lock for suspected misuse ends.
            member.locked_at = None
            fields.append("locked_at")
            await audit.record(None, "member.unlock_by_reset", target_member_id=member.id)
        if member.status == MemberStatus.PENDING:
            member.status, member.activated_at = MemberStatus.ACTIVE, now
            fields += ["status", "activated_at"]
        await member.save(update_fields=fields)
        await Session.filter(member_id=member.id).delete()
        if contact.verified_at is None:
            contact.verified_at = clock.today()
            await contact.save(update_fields=["verified_at"])
    await publish_sessions_ended(member.id)


async def do_resign(member: Member, password: str) -> None:
    """End the membership now: contact record, credentials, sessions, names go.

    The identity stays as a tombstone (shown as "former member") so that what
    the member posted or answered stays, de-linked from any person.
    """
    if not await verify_password(member.password_hash, password):
        raise UserError(Code.WRONG_PASSWORD, field="password")
    async with in_transaction("community"):
        member.status = MemberStatus.RESIGNED
        member.ended_at = clock.now()
        await member.save(update_fields=["status", "ended_at"])
        await erase_personal_data(member)
        await audit.record(member, "member.resign", target_member_id=member.id)
    await publish_sessions_ended(member.id)
    await forget_member_everywhere(member.id)


async def erase_personal_data(member: Member) -> None:
    """Erase what identifies a member (inside the caller's community transaction).

    Credentials, sessions, names and their history, notices and the whole
    contact record (with its consents, tokens, outbox mail and any ban hold)
    go; the pseudonymous id stays as a tombstone ("former member").
    """
    await Session.filter(member_id=member.id).delete()
    await NameHistory.filter(member_id=member.id).delete()
    await Notification.filter(member_id=member.id).delete()
    await LoginThrottle.filter(key=crypto.throttle_key("account", f"member:{member.id}")).delete()
    await AttributeValue.filter(member_id=member.id).delete()
    await GroupMembership.filter(member_id=member.id).delete()
    await studies.forget_member(member.id)
    member.login_name = member.login_key = None
    member.display_name = member.display_key = None
    member.password_hash = None
    # The last activity time would line up with the time of their last answer.
    member.last_active_at = None
    await member.save(
        update_fields=[
            "login_name",
            "login_key",
            "display_name",
            "display_key",
            "password_hash",
            "last_active_at",
        ]
    )
    async with in_transaction("contacts"):
        index = crypto.member_index(member.id)
        contact = await Contact.get_or_none(member_index=index)
        if contact is not None:
            # Children first: nothing relies on the database's cascade.
            await OutboxMessage.filter(contact_id=contact.id).delete()
            await EmailToken.filter(contact_id=contact.id).delete()
            await Consent.filter(contact_id=contact.id).delete()
            await contact.delete()
        await BannedAddress.filter(member_index=index).delete()


async def do_create_staff(role: str, login_name: str, display_name: str, password: str) -> Member:
    """Create an active staff account (no contact record: staff are not members)."""
    from models.community import Role

    if role not in {Role.MODERATOR, Role.RESEARCHER, Role.ADMIN}:
        raise UserError(Code.INVALID_ROLE, field="role")
    login, login_key = check_login_name(login_name)
    # Staff names are checked for shape, not for reserved words: "Moderator Anna" is fine.
    display = display_name.strip()
    if not 3 <= len(display) <= 32:
        raise UserError(
            Code.NAME_TOO_SHORT if len(display) < 3 else Code.NAME_TOO_LONG,
            field="displayName",
            min=3,
            max=32,
        )
    from resolvers.checks import name_key

    display_key = name_key(display)
    check_password(password, login, display)
    await _check_names_free(login_key, display_key)
    now = clock.now()
    async with in_transaction("community"):
        member = await Member.create(
            login_name=login,
            login_key=login_key,
            display_name=display,
            display_key=display_key,
            password_hash=await hash_password(password),
            role=Role(role),
            status=MemberStatus.ACTIVE,
            activated_at=now,
        )
        await audit.record(None, "staff.create", target_member_id=member.id, role=role)
    return member
