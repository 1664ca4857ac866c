"""Registration and email verification: the `register` and `verifyEmail` mutations.

Covers the joining requirements (R1-R3): age 16+ on the day, only the birth year
kept, current rules accepted, names and password rules, one neutral answer for
known addresses, single-use expiring hashed verification tokens, and that only
verified members can sign in. Every refused registration leaves no rows behind.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from strawberry.relay import GlobalID

from models.community import Member, MemberStatus, RulesAcceptance
from models.contacts import Consent, Contact, EmailToken, OutboxMessage
from resolvers import clock, crypto
from resolvers.errors import MESSAGES, Code
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    LOGIN,
    PASSWORD,
    REGISTER,
    REQUEST_PASSWORD_RESET,
    VERIFY_EMAIL,
    current_rules_id,
    emailed_token,
    login,
    member,
    publish_rules,
    register,
    staff,
    unique,
)
from tests.smtp import body_of, token_in

# Every table a registration writes to, per register.
WRITTEN_TABLES = {
    "community": ("member", "rules_acceptance", "name_history", "audit_entry"),
    "contacts": ("contact", "consent", "email_token", "outbox_message"),
}

VERIFY_SUBJECTS = {
    "FI": "Vahvista sähköpostiosoitteesi",
    "SV": "Bekräfta din e-postadress",
    "EN": "Confirm your email address",
}


async def row_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for register_name, tables in WRITTEN_TABLES.items():
        for table in tables:
            counts[f"{register_name}.{table}"] = await dbtools.count(register_name, table)
    return counts


def registration(n_prefix: str = "reg", **overrides: Any) -> dict[str, Any]:
    """A valid RegisterInput (without rulesVersionId) with unique names and address."""
    n = unique("")
    data: dict[str, Any] = {
        "email": f"{n_prefix}{n}@example.com",
        "birthDate": "1990-05-17",
        "language": "FI",
        "loginName": f"{n_prefix}{n}",
        "displayName": f"Satunnainen Kulkija {n}",
        "password": PASSWORD,
    }
    data.update(overrides)
    return data


async def assert_refused(
    server: Server,
    code: str,
    field: str | None,
    typename: str = "InputError",
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Register with ``overrides``; expect a typed error and no new rows anywhere."""
    before = await row_counts()
    data = registration(**overrides)
    if "rulesVersionId" not in data:
        data["rulesVersionId"] = await current_rules_id(server)
    body = await server.gql(REGISTER, {"input": data}, headers=headers)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["register"]
    assert result["__typename"] == typename, result
    assert result["code"] == code, result
    if typename == "InputError":
        assert result["field"] == field, result
    assert result["message"], result
    assert await row_counts() == before
    return result


Case = tuple[str, str | None, dict[str, Any]]  # (code, field, input overrides)


async def assert_all_refused(server: Server, cases: list[Case]) -> None:
    """Run many refusals in one test; report every case that went wrong, not just the first."""
    failures: list[str] = []
    for code, field, overrides in cases:
        try:
            await assert_refused(server, code, field, **overrides)
        except AssertionError as exc:
            shown = {
                k: (v if len(repr(v)) < 60 else repr(v)[:57] + "...") for k, v in overrides.items()
            }
            failures.append(f"{shown} -> expected {code}/{field}: {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)


def set_today(day: date) -> None:
    """Move the business clock forward to noon UTC of ``day`` (must be in the future)."""
    target = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    delta = target - clock.now()
    assert delta > timedelta(0), "set_today can only move the clock forward"
    clock.move(delta)


# --- The happy path and what is stored -------------------------------------------------


async def test_register_stores_member_contact_and_only_the_birth_year(server: Server) -> None:
    data = registration(birthDate="1987-11-23", language="SV", displayName="Tyst Läsare")
    before = await row_counts()
    result = await register(server, **data)
    assert result == {"__typename": "RegisterSuccess", "emailSent": True}

    after = await row_counts()
    for table in ("member", "rules_acceptance"):
        assert after[f"community.{table}"] == before[f"community.{table}"] + 1
    assert after["contacts.contact"] == before["contacts.contact"] + 1
    assert after["contacts.email_token"] == before["contacts.email_token"] + 1
    assert after["contacts.outbox_message"] == before["contacts.outbox_message"] + 1

    row = await Member.get(login_key=data["loginName"].lower())
    assert row.status == MemberStatus.PENDING
    assert row.display_name == "Tyst Läsare"
    assert row.language.value == "sv"
    assert row.activated_at is None

    contact = await Contact.get()
    assert contact.birth_year == 1987
    assert contact.language == "sv"
    assert contact.verified_at is None
    # The full birth date and the plain address are stored nowhere.
    contacts_text = await dbtools.text_values("contacts")
    community_text = await dbtools.text_values("community")
    for value in contacts_text + community_text:
        assert "1987-11-23" not in value
        assert "11-23" not in value
        assert data["email"] not in value

    # The accepted rules version is recorded, in both registers.
    rules_gid = GlobalID.from_id(await current_rules_id(server))
    acceptance = await RulesAcceptance.get(member_id=row.id)
    assert acceptance.rules_id == int(rules_gid.node_id)  # type: ignore[attr-defined]
    consents = {c.kind: c.version for c in await Consent.filter(contact_id=contact.id)}
    assert consents.get("rules") == "1", consents


async def test_register_password_is_argon2id_at_owasp_minimum(server: Server) -> None:
    data = registration()
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"
    row = await Member.get(login_key=data["loginName"].lower())
    assert row.password_hash is not None
    assert row.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    match = re.match(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$", row.password_hash)
    assert match, row.password_hash
    assert int(match.group(1)) >= 19456 and int(match.group(2)) >= 2
    assert PASSWORD not in row.password_hash
    for value in await dbtools.text_values("community") + await dbtools.text_values("contacts"):
        assert PASSWORD not in value


@pytest.mark.parametrize("language", ["FI", "SV", "EN"])
async def test_verify_email_in_members_language_with_public_link(
    server: Server, language: str
) -> None:
    data = registration(language=language, displayName=unique("Kielitaitoinen "))
    # The caller's Accept-Language does not decide the email's language; the member's does.
    other = "en" if language != "EN" else "fi"
    body = await server.gql(
        REGISTER,
        {"input": {**data, "rulesVersionId": await current_rules_id(server)}},
        headers={"Accept-Language": other},
    )
    assert body["data"]["register"]["__typename"] == "RegisterSuccess", body
    message = await server.smtp.wait_for(data["email"], "verify")
    assert message["Subject"] == VERIFY_SUBJECTS[language]
    text = body_of(message)
    assert data["displayName"] in text
    assert str(server.settings.verify_token_hours) in text
    links = re.findall(r"\S+token=\S+", text)
    assert len(links) == 1, text
    assert links[0].startswith(server.settings.public_base_url + "/verify-email?")
    token = parse_qs(urlsplit(links[0]).query)["token"][0]
    assert token == token_in(message)
    assert len(token) >= 32
    # Mail clients and screen readers are told the language, too.
    assert message["Content-Language"] == language.lower()


# --- Email verification ---------------------------------------------------------------


async def test_only_verified_members_can_sign_in(server: Server) -> None:
    data = registration(displayName="Vahvistamaton Vieras")
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"

    before = await login(server, data["loginName"])
    assert before["__typename"] == "NotAllowedError", before
    assert before["code"] == "INVALID_CREDENTIALS"
    by_email = await login(server, data["email"])
    assert by_email["code"] == "INVALID_CREDENTIALS"

    token = await emailed_token(server, data["email"], "verify")
    verified = await server.gql(VERIFY_EMAIL, {"token": token})
    result = verified["data"]["verifyEmail"]
    assert result["__typename"] == "VerifyEmailSuccess", verified
    assert result["member"]["displayName"] == "Vahvistamaton Vieras"

    row = await Member.get(login_key=data["loginName"].lower())
    assert row.status == MemberStatus.ACTIVE
    assert row.activated_at is not None
    assert GlobalID.from_id(result["member"]["id"]).node_id == str(row.id)
    contact = await Contact.get()
    assert contact.verified_at is not None

    after = await login(server, data["loginName"])
    assert after["__typename"] == "LoginSuccess", after
    assert after["me"]["loginName"] == data["loginName"]
    assert after["me"]["role"] == "MEMBER"
    assert (await login(server, data["email"].upper()))["__typename"] == "LoginSuccess"


async def test_verification_token_is_single_use(server: Server) -> None:
    data = registration()
    await register(server, **data)
    token = await emailed_token(server, data["email"], "verify")
    first = await server.gql(VERIFY_EMAIL, {"token": token})
    assert first["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess"
    second = await server.gql(VERIFY_EMAIL, {"token": token})
    result = second["data"]["verifyEmail"]
    assert result["__typename"] == "InputError", second
    assert result["code"] == "TOKEN_INVALID"
    assert result["field"] == "token"
    row = await EmailToken.get()
    assert row.used_at is not None


async def test_verification_token_expires(server: Server) -> None:
    data = registration()
    await register(server, **data)
    token = await emailed_token(server, data["email"], "verify")
    # Expiry is rounded up to the next full hour (no exact time in contacts).
    clock.move(timedelta(hours=server.settings.verify_token_hours + 1, seconds=1))
    body = await server.gql(VERIFY_EMAIL, {"token": token})
    result = body["data"]["verifyEmail"]
    assert result["__typename"] == "InputError", body
    assert result["code"] == "TOKEN_INVALID"
    row = await Member.get(login_key=data["loginName"].lower())
    assert row.status == MemberStatus.PENDING
    assert (await Contact.get()).verified_at is None
    assert (await login(server, data["loginName"]))["code"] == "INVALID_CREDENTIALS"


async def test_verification_token_valid_until_just_before_expiry(server: Server) -> None:
    data = registration()
    await register(server, **data)
    token = await emailed_token(server, data["email"], "verify")
    clock.move(timedelta(hours=server.settings.verify_token_hours) - timedelta(minutes=1))
    body = await server.gql(VERIFY_EMAIL, {"token": token})
    assert body["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess", body


async def test_verification_token_stored_only_as_hash(server: Server) -> None:
    data = registration()
    await register(server, **data)
    token = await emailed_token(server, data["email"], "verify")
    for value in await dbtools.text_values("contacts") + await dbtools.text_values("community"):
        assert token not in value
    row = await EmailToken.get()
    assert row.purpose == "verify"
    assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)
    assert row.token_hash != token
    # The stored hash still identifies the token: verification works.
    body = await server.gql(VERIFY_EMAIL, {"token": token})
    assert body["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess"


async def test_unknown_verification_tokens(server: Server) -> None:
    for token in ("", "not-a-real-token", "x" * 5000, "token=abc"):
        body = await server.gql(VERIFY_EMAIL, {"token": token})
        result = body["data"]["verifyEmail"]
        assert result["__typename"] == "InputError", (token[:20], body)
        assert (result["code"], result["field"]) == ("TOKEN_INVALID", "token")


async def test_token_of_other_purpose_does_not_verify(server: Server) -> None:
    data = registration()
    await register(server, **data)
    # A password-reset link for the same (pending) address is not a verification link.
    await server.gql(REQUEST_PASSWORD_RESET, {"email": data["email"]})
    reset = await emailed_token(server, data["email"], "reset_password")
    body = await server.gql(VERIFY_EMAIL, {"token": reset})
    assert body["data"]["verifyEmail"]["code"] == "TOKEN_INVALID", body
    assert (await Member.get(login_key=data["loginName"].lower())).status == MemberStatus.PENDING


# --- Known addresses: one neutral answer ----------------------------------------------


async def test_second_registration_with_same_email_reveals_nothing(server: Server) -> None:
    rules_id = await current_rules_id(server)
    first = registration(email="Aino.Virtanen@Example.com", language="SV")
    body1 = await server.gql(REGISTER, {"input": {**first, "rulesVersionId": rules_id}})
    assert body1["data"]["register"]["__typename"] == "RegisterSuccess", body1
    await server.smtp.wait_for("aino.virtanen@example.com", "verify")
    before = await row_counts()

    second = registration(email="AINO.VIRTANEN@example.COM")
    body2 = await server.gql(REGISTER, {"input": {**second, "rulesVersionId": rules_id}})
    assert body2 == body1

    after = await row_counts()
    # The names are reserved exactly as for a new address (else a later
    # registration with the same names would tell the two cases apart), by a
    # pending placeholder with no contact, no password and no way to sign in.
    assert after["community.member"] == before["community.member"] + 1
    placeholder = await Member.get(login_key=second["loginName"].lower())
    assert placeholder.status == MemberStatus.PENDING and placeholder.password_hash is None
    assert after["community.rules_acceptance"] == before["community.rules_acceptance"]
    assert after["contacts.contact"] == before["contacts.contact"]
    assert after["contacts.email_token"] == before["contacts.email_token"]
    taken = await server.gql(
        REGISTER,
        {"input": {**registration(loginName=second["loginName"]), "rulesVersionId": rules_id}},
    )
    assert taken["data"]["register"]["code"] == "NAME_TAKEN", taken

    notice = await server.smtp.wait_for("aino.virtanen@example.com", "already_registered")
    # In the existing member's language, with sign-in and reset links, and no token.
    assert notice["Subject"] == "Du har redan ett konto"
    text = body_of(notice)
    assert server.settings.public_base_url + "/login" in text
    assert server.settings.public_base_url + "/reset-password" in text
    assert "token=" not in text
    assert await OutboxMessage.filter(template="verify").count() == 1
    assert await OutboxMessage.filter(template="already_registered").count() == 1
    assert len(server.smtp.sent_to("aino.virtanen@example.com", "verify")) == 1

    # The first registration is untouched: its link still works and its owner signs in.
    token = await emailed_token(server, "aino.virtanen@example.com", "verify")
    verified = await server.gql(VERIFY_EMAIL, {"token": token})
    assert verified["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess"
    assert (await login(server, first["loginName"]))["__typename"] == "LoginSuccess"
    assert (await login(server, second["loginName"]))["code"] == "INVALID_CREDENTIALS"
    assert notice["Content-Language"] == "sv"


async def test_known_email_still_gets_the_same_input_checks(server: Server) -> None:
    """A refused input is refused alike for new and known addresses (no oracle)."""
    known = registration()
    await register(server, **known)
    for email in (known["email"], "brand.new.person@example.com"):
        await assert_refused(
            server, "PASSWORD_TOO_SHORT", "password", email=email, password="short"
        )
    assert await OutboxMessage.filter(template="already_registered").count() == 0


async def test_concurrent_registrations_with_same_email(server: Server) -> None:
    rules_id = await current_rules_id(server)
    inputs = [
        {**registration(email="same.time@example.com"), "rulesVersionId": rules_id}
        for _ in range(3)
    ]
    bodies = await asyncio.gather(*(server.gql(REGISTER, {"input": i}) for i in inputs))
    for body in bodies:
        assert body["data"]["register"] == {"__typename": "RegisterSuccess", "emailSent": True}
    # One member with the contact; the other two names reserved by placeholders.
    assert await dbtools.count("community", "member") == 3
    assert await Member.filter(password_hash__isnull=True, status=MemberStatus.PENDING).count() == 2
    assert await dbtools.count("contacts", "contact") == 1
    assert await dbtools.count("community", "rules_acceptance") == 1
    assert await OutboxMessage.filter(template="verify").count() == 1


async def test_concurrent_registrations_with_same_login_name(server: Server) -> None:
    rules_id = await current_rules_id(server)
    name = unique("racer")
    inputs = [{**registration(loginName=name), "rulesVersionId": rules_id} for _ in range(3)]
    bodies = await asyncio.gather(*(server.gql(REGISTER, {"input": i}) for i in inputs))
    results = [b["data"]["register"] for b in bodies]
    assert [r["__typename"] for r in results].count("RegisterSuccess") >= 1, results
    for r in results:
        if r["__typename"] != "RegisterSuccess":
            assert (r["code"], r["field"]) == ("NAME_TAKEN", "loginName"), r
    assert await dbtools.count("community", "member") == 1
    assert await dbtools.count("contacts", "contact") == 1


# --- Age ------------------------------------------------------------------------------


async def test_exactly_sixteen_today_may_join(server: Server) -> None:
    today = clock.now().date()
    birthday = today.replace(year=today.year - 16)
    data = registration(birthDate=birthday.isoformat())
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"
    assert (await Contact.get()).birth_year == birthday.year


async def test_sixteen_tomorrow_may_not_join(server: Server) -> None:
    today = clock.now().date()
    birthday = today.replace(year=today.year - 16) + timedelta(days=1)
    result = await assert_refused(server, "UNDER_AGE", "birthDate", birthDate=birthday.isoformat())
    assert result["message"] == MESSAGES[Code.UNDER_AGE]["fi"]


async def test_age_is_checked_on_the_business_clocks_day(server: Server) -> None:
    set_today(date(2036, 12, 31))
    await assert_refused(server, "UNDER_AGE", "birthDate", birthDate="2021-01-01")
    data = registration(birthDate="2020-12-31")
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"
    assert (await Contact.get()).birth_year == 2020


async def test_impossible_birth_dates(server: Server) -> None:
    tomorrow = (clock.now().date() + timedelta(days=1)).isoformat()
    await assert_all_refused(
        server,
        [
            ("INVALID_DATE", "birthDate", {"birthDate": "2999-01-01"}),
            ("INVALID_DATE", "birthDate", {"birthDate": tomorrow}),
            ("INVALID_DATE", "birthDate", {"birthDate": "1850-06-01"}),
        ],
    )


async def test_under_age_refused_for_a_known_email_too(server: Server) -> None:
    known = registration()
    await register(server, **known)
    today = clock.now().date()
    young = (today.replace(year=today.year - 15)).isoformat()
    await assert_refused(server, "UNDER_AGE", "birthDate", email=known["email"], birthDate=young)
    assert await OutboxMessage.filter(template="already_registered").count() == 0


# --- Rules version --------------------------------------------------------------------


async def test_rules_version_must_be_the_current_one(server: Server) -> None:
    old_id = await current_rules_id(server)
    admin = await staff(server, "admin")
    new_rules = await publish_rules(server, admin, 2)  # asserts success and version 2

    await assert_refused(server, "RULES_NOT_CURRENT", "rulesVersionId", rulesVersionId=old_id)

    data = registration()
    result = await register(server, **data, rulesVersionId=new_rules["id"])
    assert result["__typename"] == "RegisterSuccess"
    row = await Member.get(login_key=data["loginName"].lower())
    acceptance = await RulesAcceptance.get(member_id=row.id)
    assert acceptance.rules_id == int(GlobalID.from_id(new_rules["id"]).node_id)  # type: ignore[attr-defined]
    consent = await Consent.get(kind="rules")
    assert consent.version == "2"


async def test_unknown_rules_version_id(server: Server) -> None:
    unknown = str(GlobalID("RulesVersion", "987654"))
    await assert_refused(server, "RULES_NOT_CURRENT", "rulesVersionId", rulesVersionId=unknown)


@pytest.mark.parametrize("type_name", ["Member", "Session", "RulesVersion"])
async def test_rules_version_id_of_another_type(server: Server, type_name: str) -> None:
    """A well-formed id that names no rules version can never be the current one."""
    rules_gid = GlobalID.from_id(await current_rules_id(server))
    node_id = rules_gid.node_id if type_name != "RulesVersion" else "abc"
    wrong = str(GlobalID(type_name, node_id))
    await assert_refused(server, "RULES_NOT_CURRENT", "rulesVersionId", rulesVersionId=wrong)


async def test_garbage_rules_version_ids(server: Server) -> None:
    """Strings that are no global id at all are refused by the GraphQL layer, writing nothing."""
    for rules_id in ("garbage", "!!not a global id!!", ""):
        before = await row_counts()
        body = await server.gql(REGISTER, {"input": {**registration(), "rulesVersionId": rules_id}})
        assert body.get("errors"), (rules_id, body)
        assert body.get("data") is None, (rules_id, body)
        assert await row_counts() == before


# --- Names ----------------------------------------------------------------------------


async def test_login_name_unique_case_insensitively(server: Server) -> None:
    name = unique("Kalle_K")
    await register(server, **registration(loginName=name))
    await assert_refused(server, "NAME_TAKEN", "loginName", loginName=name.lower())
    await assert_refused(server, "NAME_TAKEN", "loginName", loginName=name.upper())


async def test_display_name_unique_case_insensitively(server: Server) -> None:
    name = unique("Sininen Lintu ")
    await register(server, **registration(displayName=name))
    await assert_refused(server, "NAME_TAKEN", "displayName", displayName=name.lower())
    await assert_refused(server, "NAME_TAKEN", "displayName", displayName=name.upper())


async def test_taken_name_of_unverified_member_stays_taken(server: Server) -> None:
    data = registration()
    await register(server, **data)
    clock.move(timedelta(hours=server.settings.verify_token_hours + 1))
    await assert_refused(server, "NAME_TAKEN", "loginName", loginName=data["loginName"])


async def test_login_name_rules(server: Server) -> None:
    await assert_all_refused(
        server,
        [
            ("NAME_TOO_SHORT", "loginName", {"loginName": "ab"}),
            ("NAME_TOO_LONG", "loginName", {"loginName": "a" * 33}),
            ("NAME_TOO_LONG", "loginName", {"loginName": "a" * 5000}),
            ("NAME_INVALID_CHARACTERS", "loginName", {"loginName": "has space"}),
            ("NAME_INVALID_CHARACTERS", "loginName", {"loginName": "a<b>c"}),
            ("NAME_INVALID_CHARACTERS", "loginName", {"loginName": "robert'); drop"}),
            ("NAME_INVALID_CHARACTERS", "loginName", {"loginName": "äijä_fi"}),
            ("NAME_INVALID_CHARACTERS", "loginName", {"loginName": "tab\tname"}),
            ("NAME_RESERVED", "loginName", {"loginName": "admin"}),
            ("NAME_RESERVED", "loginName", {"loginName": "SuperAdmin7"}),
            ("NAME_RESERVED", "loginName", {"loginName": "kela_tuki"}),
            ("NAME_RESERVED", "loginName", {"loginName": "moderator"}),
            ("NAME_RESERVED", "loginName", {"loginName": "root"}),
        ],
    )


async def test_display_name_rules(server: Server) -> None:
    await assert_all_refused(
        server,
        [
            ("NAME_TOO_SHORT", "displayName", {"displayName": "Jo"}),
            ("NAME_TOO_LONG", "displayName", {"displayName": "X" * 33}),
            ("NAME_TOO_LONG", "displayName", {"displayName": "Ä" * 5000}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "soft\u00adhyphen"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "Маtti Latin-Cyrillic"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "new\nline"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "zero\u200bwidth"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "<script>"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": "two  spaces"}),
            ("NAME_INVALID_CHARACTERS", "displayName", {"displayName": " leading"}),
            ("NAME_RESERVED", "displayName", {"displayName": "Admin"}),
            ("NAME_RESERVED", "displayName", {"displayName": "Moderator Anna"}),
            ("NAME_RESERVED", "displayName", {"displayName": "KELA"}),
            ("NAME_RESERVED", "displayName", {"displayName": "Kelan Tuki"}),
            ("NAME_RESERVED", "displayName", {"displayName": "Ylläpito"}),
            ("NAME_RESERVED", "displayName", {"displayName": "Entinen jäsen"}),
        ],
    )


async def test_name_length_messages_give_the_limits(server: Server) -> None:
    short = await assert_refused(server, "NAME_TOO_SHORT", "loginName", loginName="ab")
    assert short["message"] == MESSAGES[Code.NAME_TOO_SHORT]["fi"].format(min=3)
    long = await assert_refused(server, "NAME_TOO_LONG", "displayName", displayName="Y" * 40)
    assert long["message"] == MESSAGES[Code.NAME_TOO_LONG]["fi"].format(max=32)


async def test_name_boundaries_and_finnish_letters_accepted(server: Server) -> None:
    accepted = [
        ("abc", "Äijä"),
        ("a" * 32, "Åsa Ölund-Ärlig"),
        ("first.last_99", "Ö" * 32),
        ("x-y", "Mökin Mummo"),
        ("Mixed.Case-7", "Sää Ja Kelit 2"),
    ]
    for login_name, display_name in accepted:
        data = registration(loginName=login_name, displayName=display_name)
        result = await register(server, **data)
        assert result["__typename"] == "RegisterSuccess", (login_name, display_name, result)
        row = await Member.get(login_key=login_name.lower())
        assert row.display_name == display_name
        assert row.login_name == login_name
    assert await dbtools.count("community", "member") == len(accepted)


async def test_display_name_may_not_identify(server: Server) -> None:
    code, field = "DISPLAY_NAME_IDENTIFYING", "displayName"
    await assert_all_refused(
        server,
        [
            (code, field, {"loginName": "hiljainen", "displayName": "hiljainen"}),
            (code, field, {"loginName": "hiljainen", "displayName": "HILJAINEN"}),
            (code, field, {"loginName": "Hiljainen", "displayName": "hiljainen"}),
            (
                code,
                field,
                {"email": "matti.meikalainen@example.com", "displayName": "matti.meikalainen"},
            ),
            (
                code,
                field,
                {"email": "matti.meikalainen@example.com", "displayName": "Matti Meikalainen"},
            ),
            (code, field, {"email": "Liisa@Example.com", "displayName": "liisa"}),
            (code, field, {"email": "liisa@example.com", "displayName": "LIISA"}),
        ],
    )


# --- Passwords ------------------------------------------------------------------------


async def test_weak_passwords_refused(server: Server) -> None:
    await assert_all_refused(
        server,
        [
            ("PASSWORD_TOO_SHORT", "password", {"password": ""}),
            ("PASSWORD_TOO_SHORT", "password", {"password": "short1!"}),
            ("PASSWORD_TOO_SHORT", "password", {"password": "n1ne-char"}),
            ("PASSWORD_TOO_LONG", "password", {"password": "Zx9!" * 33}),
            ("PASSWORD_TOO_LONG", "password", {"password": "y" * 100_000}),
            ("PASSWORD_TOO_COMMON", "password", {"password": "password123"}),
            ("PASSWORD_TOO_COMMON", "password", {"password": "qwertyuiop"}),
            ("PASSWORD_TOO_COMMON", "password", {"password": "QWERTYUIOP"}),
            ("PASSWORD_TOO_COMMON", "password", {"password": "aaaaaaaaaaaa"}),
        ],
    )
    short = await assert_refused(server, "PASSWORD_TOO_SHORT", "password", password="abc")
    assert short["message"] == MESSAGES[Code.PASSWORD_TOO_SHORT]["fi"].format(min=10)


async def test_password_containing_login_name_refused(server: Server) -> None:
    name = unique("sammakko")
    await assert_refused(
        server, "PASSWORD_LIKE_NAME", "password", loginName=name, password=f"my {name} rocks!"
    )


async def test_ten_character_password_accepted(server: Server) -> None:
    data = registration(password="k7#Vq2!mZp")
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"
    token = await emailed_token(server, data["email"], "verify")
    await server.gql(VERIFY_EMAIL, {"token": token})
    assert (await login(server, data["loginName"], "k7#Vq2!mZp"))["__typename"] == "LoginSuccess"
    wrong = await login(server, data["loginName"], "k7#Vq2!mZP")
    assert wrong["code"] == "INVALID_CREDENTIALS"


# --- Emails and other bad input -------------------------------------------------------


async def test_invalid_emails(server: Server) -> None:
    emails = [
        "",
        "not-an-email",
        "two@@example.com",
        "space in@example.com",
        "nobody@",
        "@example.com",
        "a" * 250 + "@example.com",
        "x" * 10_000,
        "x" * 10_000 + "@example.com",
    ]
    await assert_all_refused(server, [("INVALID_EMAIL", "email", {"email": e}) for e in emails])


async def test_wrong_graphql_types_give_errors_and_no_rows(server: Server) -> None:
    rules_id = await current_rules_id(server)
    wrong: list[tuple[str, Any]] = [
        ("birthDate", "not-a-date"),
        ("birthDate", "2000-02-30"),
        ("birthDate", "17.5.1990"),
        ("birthDate", 20000101),
        ("language", "DE"),
        ("language", "fi"),
        ("email", None),
        ("password", 1234567890123),
        ("loginName", ["list"]),
        ("displayName", {"an": "object"}),
    ]
    for field, value in wrong:
        before = await row_counts()
        data = {**registration(), "rulesVersionId": rules_id, field: value}
        body = await server.gql(REGISTER, {"input": data})
        assert body.get("errors"), (field, value, body)
        assert body.get("data") is None, (field, value, body)
        assert await row_counts() == before, (field, value)
    assert await OutboxMessage.all().count() == 0
    assert await dbtools.count("community", "member") == 0


async def test_missing_field_gives_error_and_no_rows(server: Server) -> None:
    before = await row_counts()
    data = registration()
    del data["birthDate"]
    body = await server.gql(
        REGISTER, {"input": {**data, "rulesVersionId": await current_rules_id(server)}}
    )
    assert body.get("errors"), body
    assert await row_counts() == before


async def test_refused_registration_leaves_names_and_address_free(server: Server) -> None:
    """After a refusal the same names and address register normally."""
    data = registration()
    await assert_refused(
        server, "PASSWORD_TOO_COMMON", "password", **{**data, "password": "password123"}
    )
    assert (await register(server, **data))["__typename"] == "RegisterSuccess"
    await emailed_token(server, data["email"], "verify")
    assert await OutboxMessage.filter(template="verify").count() == 1


# --- Language of error messages -------------------------------------------------------


async def test_error_messages_follow_accept_language(server: Server) -> None:
    today = clock.now().date()
    young = today.replace(year=today.year - 10).isoformat()
    wanted: list[tuple[str | None, str]] = [
        (None, "fi"),
        ("sv", "sv"),
        ("sv-FI,sv;q=0.9", "sv"),
        ("en-GB,en;q=0.9", "en"),
        ("de-DE, sv;q=0.5", "sv"),
        ("fi", "fi"),
        ("ja", "fi"),
    ]
    for accept_language, language in wanted:
        headers = {"Accept-Language": accept_language} if accept_language else None
        result = await assert_refused(
            server, "UNDER_AGE", "birthDate", headers=headers, birthDate=young
        )
        assert result["message"] == MESSAGES[Code.UNDER_AGE][language], accept_language
        short = await assert_refused(
            server, "NAME_TOO_SHORT", "loginName", headers=headers, loginName="xy"
        )
        expected = MESSAGES[Code.NAME_TOO_SHORT][language].format(min=3)
        assert short["message"] == expected, accept_language


async def test_verify_error_message_follows_accept_language(server: Server) -> None:
    body = await server.gql(VERIFY_EMAIL, {"token": "nope"}, headers={"Accept-Language": "sv"})
    result = body["data"]["verifyEmail"]
    assert result["message"] == MESSAGES[Code.TOKEN_INVALID]["sv"]
    body = await server.gql(
        LOGIN, {"login": "nobody", "password": "whatever12"}, headers={"Accept-Language": "en"}
    )
    assert body["data"]["login"]["message"] == MESSAGES[Code.INVALID_CREDENTIALS]["en"]


# ---------------------------------------------------------------- mail anyone can cause

EMAIL_CHANGE_LIMITED = """
mutation RequestEmailChange($input: RequestEmailChangeInput!) {
  requestEmailChange(input: $input) {
    __typename
    ... on Error { code message }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""


async def test_mail_anyone_can_cause_to_an_address_is_capped_per_day(server: Server) -> None:
    """Reset links and "already registered" notices to one address: at most
    MAIL_PER_ADDRESS_PER_DAY of each a day, with answers that never change; the
    member's own address change says when to try again."""
    cap = server.settings.mail_per_address_per_day
    aino = await member(server, email=f"{unique('capped')}@example.com")
    other = await member(server, email=f"{unique('uncapped')}@example.com")
    assert aino.email is not None and other.email is not None
    contact = await Contact.get(email_index=crypto.email_index(aino.email))

    async def queued(template: str, of: Contact = contact) -> int:
        return await OutboxMessage.filter(contact_id=of.id, template=template).count()

    # A stranger asks for reset links again and again: the same answer each time.
    answers = [
        await server.gql(REQUEST_PASSWORD_RESET, {"email": aino.email}) for _ in range(cap + 3)
    ]
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["data"]["requestPasswordReset"]["__typename"] == "Done", answers[0]
    assert await queued("reset_password") == cap
    assert await EmailToken.filter(contact_id=contact.id, purpose="reset").count() == cap

    # ... and registers with the address under new names: always RegisterSuccess.
    rules_id = await current_rules_id(server)
    for _ in range(cap + 2):
        again = await server.gql(
            REGISTER, {"input": {**registration(email=aino.email), "rulesVersionId": rules_id}}
        )
        assert again["data"]["register"]["__typename"] == "RegisterSuccess", again
    assert await queued("already_registered") == cap

    # Per address: another member's link still goes out.
    other_contact = await Contact.get(email_index=crypto.email_index(other.email))
    done = await server.gql(REQUEST_PASSWORD_RESET, {"email": other.email})
    assert done["data"]["requestPasswordReset"]["__typename"] == "Done", done
    assert await queued("reset_password", other_contact) == 1

    # The member changing their own address is told when to try again.
    for n in range(cap):
        changed = await server.gql(
            EMAIL_CHANGE_LIMITED,
            {"input": {"password": PASSWORD, "newEmail": f"uusi{n}.{aino.email}"}},
            token=aino.token,
        )
        assert changed["data"]["requestEmailChange"]["__typename"] == "Done", changed
    refused = await server.gql(
        EMAIL_CHANGE_LIMITED,
        {"input": {"password": PASSWORD, "newEmail": f"liikaa.{aino.email}"}},
        token=aino.token,
    )
    result = refused["data"]["requestEmailChange"]
    assert (result["__typename"], result["code"]) == ("RateLimitedError", "TOO_MANY_ATTEMPTS")
    assert 0 < result["retryAfterSeconds"] <= 24 * 3600
    assert await queued("email_change_notice") == cap
    assert await queued("change_email") == cap

    # The next day the address may be sent one more of each.
    clock.move(timedelta(days=1))
    await server.gql(REQUEST_PASSWORD_RESET, {"email": aino.email})
    assert await queued("reset_password") == cap + 1
