"""The signed-in account: `me`, profile changes, password, email, reset and resignation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from config import override_settings
from models.community import AuditEntry, Member, MemberStatus, NameHistory, Session
from models.contacts import Consent, Contact, EmailToken, OutboxMessage
from resolvers import clock, crypto
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    ACCEPT_RULES,
    AUDIT_LOG,
    CHANGE_PASSWORD,
    CONFIRM_EMAIL_CHANGE,
    ME,
    NODE,
    PASSWORD,
    REQUEST_EMAIL_CHANGE,
    REQUEST_PASSWORD_RESET,
    RESET_PASSWORD,
    RESIGN,
    UPDATE_PROFILE,
    assert_unauthenticated,
    login,
    me_of,
    member,
    publish_rules,
    register,
    sign_in,
    staff,
    unique,
    update_profile,
)
from tests.smtp import body_of, token_in

NEW_PASSWORD = "purple elephants juggle quietly"


# ---------------------------------------------------------------- helpers


async def mutate(
    server: Server, doc: str, name: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    body = await server.gql(doc, variables, token=token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][name]
    return result


def assert_error(result: dict[str, Any], typename: str, code: str) -> None:
    assert result["__typename"] == typename, result
    assert result["code"] == code, result


async def contact_row(member_id: int) -> Contact | None:
    return await Contact.get_or_none(member_index=crypto.member_index(member_id))


def distinctive_email() -> str:
    return f"{unique('quokka')}.leaves@example.org"


# ---------------------------------------------------------------- me


async def test_me_is_null_without_session_and_describes_the_account(server: Server) -> None:
    anonymous = await server.gql(ME)
    assert anonymous == {"data": {"me": None}}
    bogus = await server.gql(ME, token="not-a-real-token")
    assert bogus == {"data": {"me": None}}

    account = await member(server, language="SV", displayName="Kaffekopp")
    body = await server.gql(ME, token=account.token)
    assert "errors" not in body, body
    me = body["data"]["me"]
    assert me["__typename"] == "Me"
    assert me["id"] == account.gid
    assert me["loginName"] == account.login_name
    assert me["displayName"] == "Kaffekopp"
    assert me["role"] == "MEMBER"
    assert me["language"] == "SV"
    assert me["mustAcceptRules"] is False
    assert me["createdAt"]
    sessions = me["sessions"]["edges"]
    assert len(sessions) == 1 and sessions[0]["node"]["current"] is True


# ---------------------------------------------------------------- updateProfile


async def test_update_profile_changes_names_and_records_history(server: Server) -> None:
    account = await member(server, displayName="Vanha Nimi")
    old_login = account.login_name
    new_login = unique("renamed")
    result = await update_profile(
        server, account.token, displayName="Uusi Nimi", loginName=new_login
    )
    assert result["__typename"] == "UpdateProfileSuccess", result
    assert result["me"]["displayName"] == "Uusi Nimi"
    assert result["me"]["loginName"] == new_login

    me = await me_of(server, account.token)
    assert me is not None
    assert (me["displayName"], me["loginName"]) == ("Uusi Nimi", new_login)

    row = await Member.get(id=account.member_id)
    assert row.display_name == "Uusi Nimi"
    assert row.login_name == new_login
    history = await NameHistory.filter(member_id=account.member_id).order_by("id")
    assert {(h.kind, h.old_value) for h in history} == {
        ("display", "Vanha Nimi"),
        ("login", old_login),
    }

    # The new login name signs in, the old one no longer does.
    assert (await login(server, new_login))["__typename"] == "LoginSuccess"
    old = await login(server, old_login)
    assert_error(old, "NotAllowedError", "INVALID_CREDENTIALS")

    # Others see the new public name.
    other = await member(server)
    node = await server.gql(NODE, {"id": account.gid}, token=other.token)
    assert node["data"]["node"]["displayName"] == "Uusi Nimi"

    # A second change adds to the history.
    again = await update_profile(server, account.token, displayName="Kolmas Nimi")
    assert again["__typename"] == "UpdateProfileSuccess", again
    assert await NameHistory.filter(
        member_id=account.member_id, kind="display", old_value="Uusi Nimi"
    ).exists()


async def test_update_profile_names_are_unique_case_insensitively(server: Server) -> None:
    taken = await member(server, displayName="Sininen Lintu")
    account = await member(server, displayName="Punainen Kettu")

    clash_login = await update_profile(server, account.token, loginName=taken.login_name.upper())
    assert_error(clash_login, "InputError", "NAME_TAKEN")
    assert clash_login["field"] == "loginName"

    clash_display = await update_profile(server, account.token, displayName="sININEN lINTU")
    assert_error(clash_display, "InputError", "NAME_TAKEN")
    assert clash_display["field"] == "displayName"

    row = await Member.get(id=account.member_id)
    assert row.login_name == account.login_name
    assert row.display_name == "Punainen Kettu"
    assert not await NameHistory.filter(member_id=account.member_id).exists()

    # The taken names still belong to their owner.
    owner = await Member.get(id=taken.member_id)
    assert (owner.login_name, owner.display_name) == (taken.login_name, "Sininen Lintu")

    # One's own name in another case is not "taken".
    own = await update_profile(server, account.token, displayName="PUNAINEN KETTU")
    assert own["__typename"] == "UpdateProfileSuccess", own
    assert own["me"]["displayName"] == "PUNAINEN KETTU"


async def test_update_profile_with_nothing_is_refused(server: Server) -> None:
    account = await member(server)
    result = await update_profile(server, account.token)
    assert_error(result, "InputError", "NOTHING_TO_CHANGE")
    assert result["message"] == "Ei muutettavaa."
    explicit_nulls = await update_profile(
        server, account.token, displayName=None, loginName=None, language=None
    )
    assert_error(explicit_nulls, "InputError", "NOTHING_TO_CHANGE")
    assert not await NameHistory.filter(member_id=account.member_id).exists()


async def test_update_profile_needs_sign_in(server: Server) -> None:
    body = await server.gql(UPDATE_PROFILE, {"input": {"displayName": "Kuka Tahansa"}})
    assert_unauthenticated(body)


async def test_language_change_reaches_contacts_and_later_emails(server: Server) -> None:
    email = distinctive_email()
    account = await member(server, language="FI", email=email)
    contact = await contact_row(account.member_id)
    assert contact is not None and contact.language == "fi"

    result = await update_profile(server, account.token, language="EN")
    assert result["__typename"] == "UpdateProfileSuccess", result
    assert result["me"]["language"] == "EN"
    assert (await Member.get(id=account.member_id)).language == "en"
    contact = await contact_row(account.member_id)
    assert contact is not None and contact.language == "en"

    # Messages to the member now come in English ...
    nothing = await update_profile(server, account.token)
    assert nothing["message"] == "Nothing to change."
    # ... and so do emails.
    server.smtp.clear()
    done = await mutate(server, REQUEST_PASSWORD_RESET, "requestPasswordReset", {"email": email})
    assert done["__typename"] == "Done", done
    message = await server.smtp.wait_for(email, "reset_password")
    assert message["Subject"] == "Reset your password"
    assert body_of(message).startswith("Open this link within")
    # The outbox row says the language, and so should the delivered message.
    assert await OutboxMessage.filter(template="reset_password", language="en").count() == 1

    # And to Swedish.
    result = await update_profile(server, account.token, language="SV")
    assert result["__typename"] == "UpdateProfileSuccess", result
    contact = await contact_row(account.member_id)
    assert contact is not None and contact.language == "sv"
    server.smtp.clear()
    await mutate(
        server,
        REQUEST_EMAIL_CHANGE,
        "requestEmailChange",
        {"input": {"password": PASSWORD, "newEmail": distinctive_email()}},
        token=account.token,
    )
    notice = await server.smtp.wait_for(email, "email_change_notice")
    assert notice["Subject"] == "Din e-postadress håller på att ändras"

    # The delivered messages declare their language too (the worker sets Content-Language).
    assert (message["Content-Language"], notice["Content-Language"]) == ("en", "sv")


async def test_display_name_change_needs_current_rules(server: Server) -> None:
    account = await member(server, displayName="Ennen Sääntöjä")
    admin = await staff(server, "admin")
    new_id = (await publish_rules(server, admin, 2))["id"]  # asserts success and version 2

    me = await me_of(server, account.token)
    assert me is not None and me["mustAcceptRules"] is True

    refused = await update_profile(server, account.token, displayName="Jälkeen Sääntöjen")
    assert_error(refused, "NotAllowedError", "RULES_NOT_ACCEPTED")
    row = await Member.get(id=account.member_id)
    assert row.display_name == "Ennen Sääntöjä"
    assert not await NameHistory.filter(member_id=account.member_id).exists()

    accepted = await mutate(
        server, ACCEPT_RULES, "acceptRules", {"versionId": new_id}, account.token
    )
    assert accepted["__typename"] == "AcceptRulesSuccess", accepted
    assert accepted["rules"]["id"] == new_id
    me = await me_of(server, account.token)
    assert me is not None and me["mustAcceptRules"] is False

    ok = await update_profile(server, account.token, displayName="Jälkeen Sääntöjen")
    assert ok["__typename"] == "UpdateProfileSuccess", ok
    assert ok["me"]["displayName"] == "Jälkeen Sääntöjen"
    assert (await Member.get(id=account.member_id)).display_name == "Jälkeen Sääntöjen"


# ---------------------------------------------------------------- changePassword


async def test_change_password(server: Server) -> None:
    account = await member(server)
    other_token = await sign_in(server, account.login_name)
    assert await Session.filter(member_id=account.member_id).count() == 2

    wrong = await mutate(
        server,
        CHANGE_PASSWORD,
        "changePassword",
        {"input": {"currentPassword": "not my password at all", "newPassword": NEW_PASSWORD}},
        account.token,
    )
    assert_error(wrong, "InputError", "WRONG_PASSWORD")

    too_short = await mutate(
        server,
        CHANGE_PASSWORD,
        "changePassword",
        {"input": {"currentPassword": PASSWORD, "newPassword": "short"}},
        account.token,
    )
    assert_error(too_short, "InputError", "PASSWORD_TOO_SHORT")
    assert too_short["field"] == "newPassword"
    like_name = await mutate(
        server,
        CHANGE_PASSWORD,
        "changePassword",
        {"input": {"currentPassword": PASSWORD, "newPassword": f"xx{account.login_name}xx9"}},
        account.token,
    )
    assert_error(like_name, "InputError", "PASSWORD_LIKE_NAME")

    # Nothing changed by the refused attempts: both sessions live, old password works.
    assert await me_of(server, other_token) is not None
    assert await Session.filter(member_id=account.member_id).count() == 2
    hash_before = (await Member.get(id=account.member_id)).password_hash

    done = await mutate(
        server,
        CHANGE_PASSWORD,
        "changePassword",
        {"input": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}},
        account.token,
    )
    assert done == {"__typename": "Done", "ok": True}
    row = await Member.get(id=account.member_id)
    assert row.password_hash != hash_before
    assert row.password_changed_at is not None

    # The current session goes on, the other one ended.
    assert await me_of(server, account.token) is not None
    assert await me_of(server, other_token) is None
    assert await Session.filter(member_id=account.member_id).count() == 1

    old = await login(server, account.login_name, PASSWORD)
    assert_error(old, "NotAllowedError", "INVALID_CREDENTIALS")
    new = await login(server, account.login_name, NEW_PASSWORD)
    assert new["__typename"] == "LoginSuccess", new


# ---------------------------------------------------------------- email change


async def test_email_change(server: Server) -> None:
    old_email = distinctive_email()
    new_email = distinctive_email()
    account = await member(server, email=old_email)
    server.smtp.clear()

    wrong = await mutate(
        server,
        REQUEST_EMAIL_CHANGE,
        "requestEmailChange",
        {"input": {"password": "not my password at all", "newEmail": new_email}},
        account.token,
    )
    assert_error(wrong, "InputError", "WRONG_PASSWORD")
    invalid = await mutate(
        server,
        REQUEST_EMAIL_CHANGE,
        "requestEmailChange",
        {"input": {"password": PASSWORD, "newEmail": "not an address"}},
        account.token,
    )
    assert_error(invalid, "InputError", "INVALID_EMAIL")
    assert invalid["field"] == "newEmail"
    assert (
        await OutboxMessage.filter(template__in=["change_email", "email_change_notice"]).count()
        == 0
    )

    done = await mutate(
        server,
        REQUEST_EMAIL_CHANGE,
        "requestEmailChange",
        {"input": {"password": PASSWORD, "newEmail": new_email}},
        account.token,
    )
    assert done == {"__typename": "Done", "ok": True}

    confirmation = await server.smtp.wait_for(new_email, "change_email")
    notice = await server.smtp.wait_for(old_email, "email_change_notice")
    token = token_in(confirmation)
    assert "/confirm-email?token=" in body_of(confirmation)
    assert token not in body_of(notice)
    assert server.smtp.sent_to(old_email, "change_email") == []
    assert server.smtp.sent_to(new_email, "email_change_notice") == []

    # Not switched until confirmed.
    early = await login(server, new_email)
    assert_error(early, "NotAllowedError", "INVALID_CREDENTIALS")
    assert (await login(server, old_email))["__typename"] == "LoginSuccess"

    confirmed = await mutate(server, CONFIRM_EMAIL_CHANGE, "confirmEmailChange", {"token": token})
    assert confirmed == {"__typename": "Done", "ok": True}

    contact = await contact_row(account.member_id)
    assert contact is not None
    assert contact.email_index == crypto.email_index(new_email)
    assert crypto.decrypt(contact.email_ciphertext, "contact-email") == new_email

    by_new = await login(server, new_email)
    assert by_new["__typename"] == "LoginSuccess", by_new
    assert by_new["me"]["id"] == account.gid
    by_old = await login(server, old_email)
    assert_error(by_old, "NotAllowedError", "INVALID_CREDENTIALS")

    again = await mutate(server, CONFIRM_EMAIL_CHANGE, "confirmEmailChange", {"token": token})
    assert_error(again, "InputError", "TOKEN_INVALID")
    bogus = await mutate(server, CONFIRM_EMAIL_CHANGE, "confirmEmailChange", {"token": "x" * 43})
    assert_error(bogus, "InputError", "TOKEN_INVALID")
    contact = await contact_row(account.member_id)
    assert contact is not None and contact.email_index == crypto.email_index(new_email)


# ---------------------------------------------------------------- password reset


async def test_password_reset_answers_alike_and_resets(server: Server) -> None:
    email = distinctive_email()
    account = await member(server, email=email)
    other_token = await sign_in(server, account.login_name)
    server.smtp.clear()

    known = await server.gql(REQUEST_PASSWORD_RESET, {"email": email})
    unknown_address = distinctive_email()
    unknown = await server.gql(REQUEST_PASSWORD_RESET, {"email": unknown_address})
    malformed = await server.gql(REQUEST_PASSWORD_RESET, {"email": "not an address"})
    assert (
        known
        == unknown
        == malformed
        == {"data": {"requestPasswordReset": {"__typename": "Done", "ok": True}}}
    )

    message = await server.smtp.wait_for(email, "reset_password")
    assert message["Subject"] == "Vaihda salasanasi"
    assert await OutboxMessage.filter(template="reset_password").count() == 1
    assert server.smtp.sent_to(unknown_address) == []
    token = token_in(message)

    # Requesting alone changes nothing.
    assert await me_of(server, account.token) is not None

    weak = await mutate(
        server, RESET_PASSWORD, "resetPassword", {"input": {"token": token, "newPassword": "abc"}}
    )
    assert_error(weak, "InputError", "PASSWORD_TOO_SHORT")
    assert weak["field"] == "newPassword"

    done = await mutate(
        server,
        RESET_PASSWORD,
        "resetPassword",
        {"input": {"token": token, "newPassword": NEW_PASSWORD}},
    )
    assert done == {"__typename": "Done", "ok": True}

    # Every session ended.
    assert await me_of(server, account.token) is None
    assert await me_of(server, other_token) is None
    assert await Session.filter(member_id=account.member_id).count() == 0

    old = await login(server, account.login_name, PASSWORD)
    assert_error(old, "NotAllowedError", "INVALID_CREDENTIALS")
    new = await login(server, account.login_name, NEW_PASSWORD)
    assert new["__typename"] == "LoginSuccess", new

    # Single use.
    reused = await mutate(
        server,
        RESET_PASSWORD,
        "resetPassword",
        {"input": {"token": token, "newPassword": "another fine passphrase"}},
    )
    assert_error(reused, "InputError", "TOKEN_INVALID")
    still = await login(server, account.login_name, NEW_PASSWORD)
    assert still["__typename"] == "LoginSuccess", still


async def test_password_reset_token_expires(server: Server) -> None:
    override_settings(replace(server.settings, reset_token_minutes=7))
    email = distinctive_email()
    account = await member(server, email=email)
    server.smtp.clear()

    # Within the lifetime the link works.
    await mutate(server, REQUEST_PASSWORD_RESET, "requestPasswordReset", {"email": email})
    first = await server.smtp.wait_for(email, "reset_password")
    assert "7" in body_of(first)
    clock.move(timedelta(minutes=6))
    ok = await mutate(
        server,
        RESET_PASSWORD,
        "resetPassword",
        {"input": {"token": token_in(first), "newPassword": NEW_PASSWORD}},
    )
    assert ok == {"__typename": "Done", "ok": True}

    # After it, it does not.
    server.smtp.clear()
    await mutate(server, REQUEST_PASSWORD_RESET, "requestPasswordReset", {"email": email})
    second = await server.smtp.wait_for(email, "reset_password")
    # Expiry is rounded up to the next full hour (no exact time in contacts).
    clock.move(timedelta(minutes=60 + 7, seconds=5))
    expired = await mutate(
        server,
        RESET_PASSWORD,
        "resetPassword",
        {"input": {"token": token_in(second), "newPassword": "another fine passphrase"}},
    )
    assert_error(expired, "InputError", "TOKEN_INVALID")
    signed_in = await login(server, account.login_name, NEW_PASSWORD)
    assert signed_in["__typename"] == "LoginSuccess", signed_in


# ---------------------------------------------------------------- resign


async def test_resign_with_wrong_password_changes_nothing(server: Server) -> None:
    email = distinctive_email()
    account = await member(server, email=email)
    result = await mutate(
        server, RESIGN, "resign", {"password": "not my password at all"}, account.token
    )
    assert_error(result, "InputError", "WRONG_PASSWORD")

    row = await Member.get(id=account.member_id)
    assert row.status == MemberStatus.ACTIVE
    assert row.login_name == account.login_name
    assert row.display_name == account.display_name
    assert row.password_hash
    assert await contact_row(account.member_id) is not None
    assert await me_of(server, account.token) is not None
    assert not await AuditEntry.filter(action="member.resign").exists()
    assert (await login(server, email))["__typename"] == "LoginSuccess"


async def test_resign_erases_personal_data_and_leaves_a_tombstone(server: Server) -> None:
    email = distinctive_email()
    local_part = email.split("@", 1)[0]
    pending_email = distinctive_email()
    fi_viewer = await member(server, language="FI")
    en_viewer = await member(server, language="EN")
    admin = await staff(server, "admin")
    account = await member(server, email=email, displayName="Katoava Kissa")
    original_login = account.login_name

    # Give the member some history, pending tokens and mail.
    renamed = await update_profile(
        server, account.token, displayName="Haihtuva Hiiri", loginName=unique("fading")
    )
    assert renamed["__typename"] == "UpdateProfileSuccess", renamed
    login_name = renamed["me"]["loginName"]
    display_name = renamed["me"]["displayName"]
    await mutate(
        server,
        REQUEST_EMAIL_CHANGE,
        "requestEmailChange",
        {"input": {"password": PASSWORD, "newEmail": pending_email}},
        account.token,
    )
    await mutate(server, REQUEST_PASSWORD_RESET, "requestPasswordReset", {"email": email})
    await server.smtp.wait_for(email, "reset_password")
    await server.smtp.wait_for(pending_email, "change_email")
    other = await login(server, login_name)
    assert other["__typename"] == "LoginSuccess", other
    other_token = other["token"]

    contact = await contact_row(account.member_id)
    assert contact is not None
    contact_id = contact.id
    assert await Consent.filter(contact_id=contact_id).count() >= 1
    assert await EmailToken.filter(contact_id=contact_id).count() >= 3
    assert await OutboxMessage.filter(contact_id=contact_id).count() >= 3
    assert await NameHistory.filter(member_id=account.member_id).count() == 2
    contacts_before = await Contact.all().count()
    # The dump does find the address's keyed forms while the member is there.
    assert crypto.email_index(email) in await dbtools.text_values("contacts")

    result = await mutate(server, RESIGN, "resign", {"password": PASSWORD}, account.token)
    assert result == {"__typename": "Done", "ok": True}

    # The contacts register: the record and everything hanging on it are gone.
    assert await contact_row(account.member_id) is None
    assert await Contact.filter(id=contact_id).count() == 0
    assert await Contact.all().count() == contacts_before - 1
    assert await Consent.filter(contact_id=contact_id).count() == 0
    assert await EmailToken.filter(contact_id=contact_id).count() == 0
    assert await OutboxMessage.filter(contact_id=contact_id).count() == 0

    # Neither register holds the address (or the pending new one) in any findable form.
    forms = {
        email,
        local_part,
        pending_email,
        pending_email.split("@", 1)[0],
        crypto.email_index(email),
        crypto.email_index(pending_email),
        crypto.member_index(account.member_id),
    }
    for register_name in ("community", "contacts"):
        values = await dbtools.text_values(register_name)
        for form in forms:
            leaks = [v for v in values if form.lower() in v.lower()]
            assert leaks == [], (register_name, form, leaks)
        if register_name == "community":
            for name in (login_name, display_name, original_login, "Katoava Kissa"):
                leaks = [v for v in values if name.lower() in v.lower()]
                assert leaks == [], (register_name, name, leaks)

    # Credentials and sessions are gone.
    assert await me_of(server, account.token) is None
    assert await me_of(server, other_token) is None
    assert await Session.filter(member_id=account.member_id).count() == 0
    for identifier in (login_name, email):
        failed = await login(server, identifier)
        assert_error(failed, "NotAllowedError", "INVALID_CREDENTIALS")
    assert await NameHistory.filter(member_id=account.member_id).count() == 0

    # The identity stays only as a tombstone.
    row = await Member.get(id=account.member_id)
    assert row.status == MemberStatus.RESIGNED
    assert row.login_name is None and row.login_key is None
    assert row.display_name is None and row.display_key is None
    assert row.password_hash is None
    assert row.ended_at is not None

    # Others see a neutral former member, in their own language.
    fi_view = await server.gql(NODE, {"id": account.gid}, token=fi_viewer.token)
    assert fi_view["data"]["node"] == {
        "__typename": "Member",
        "id": account.gid,
        "displayName": "entinen jäsen",
        "isFormerMember": True,
        "staffBadge": None,
    }
    en_view = await server.gql(NODE, {"id": account.gid}, token=en_viewer.token)
    assert en_view["data"]["node"]["displayName"] == "former member"
    assert en_view["data"]["node"]["isFormerMember"] is True

    # The audit log refers to the member by id only.
    entries = await AuditEntry.filter(action="member.resign")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.target_member_id == account.member_id
    assert entry.actor_id in (None, account.member_id)
    rendered = f"{entry.reason} {entry.details} {entry.actor_role}".lower()
    for secret in (email, local_part, login_name, display_name, original_login):
        assert secret.lower() not in rendered, rendered
    audit = await server.gql(AUDIT_LOG, {"action": "member.resign"}, token=admin.token)
    assert "errors" not in audit, audit
    nodes = [e["node"] for e in audit["data"]["auditLog"]["edges"]]
    assert [n["targetMemberId"] for n in nodes] == [account.gid]

    # The names are free again: a new member may take both.
    newcomer = await member(server, displayName=display_name, loginName=login_name)
    assert newcomer.member_id != account.member_id
    me = await me_of(server, newcomer.token)
    assert me is not None
    assert (me["loginName"], me["displayName"]) == (login_name, display_name)
    # ... and the email address too.
    again = await register(server, email=email)
    assert again["__typename"] == "RegisterSuccess", again
    verify = await server.smtp.wait_for(email, "verify")
    assert verify["X-Community-Template"] == "verify"
