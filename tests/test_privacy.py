"""The privacy model: what each register holds, who can reach contact data, the audit log.

- The community register never holds an email address, a birth date or year, or
  anything that points at the contacts register.
- The contacts register holds addresses only encrypted (with a keyed blind index)
  and refers to members only by a keyed hash and a sealed id.
- In the API, the only way to contact data is the admin-only, audited
  ``readMemberContact`` mutation; the audit log is append-only and admin-only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections import deque
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from strawberry.relay import GlobalID
from tortoise.connection import get_connection

from config import override_settings
from models.community import AuditEntry, Member, MemberStatus
from models.contacts import Consent, Contact
from resolvers import clock, crypto
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    ACCEPT_RULES,
    AUDIT_LOG,
    CONFIRM_EMAIL_CHANGE,
    MY_SESSIONS,
    NODE,
    NOTIFICATIONS,
    PASSWORD,
    READ_MEMBER_CONTACT,
    REQUEST_EMAIL_CHANGE,
    REQUEST_PASSWORD_RESET,
    RESET_PASSWORD,
    RESIGN,
    Account,
    emailed_token,
    login,
    member,
    publish_rules,
    staff,
    update_profile,
)

# ---------------------------------------------------------------------------
# GraphQL documents
# ---------------------------------------------------------------------------

ME_EMAIL = "{ me { id email } }"

# A compact introspection: every type's output fields (unwrapped to the named type)
# and every abstract type's possible types. Small enough for the depth/token limits.
SCHEMA_WALK = """
query SchemaWalk {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      name
      kind
      fields(includeDeprecated: true) { name type { ...TypeRef } }
      possibleTypes { name }
    }
  }
}
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name } } }
}
"""

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

NEW_PASSWORD = "a brand new passphrase for the privacy test"
REASON = "Data subject access request received by the service desk"
SENSITIVE_FIELD = re.compile(r"email|birth|contact", re.IGNORECASE)
# Named like contact data but only flags: may we email study invitations (a member's
# preference), and has an invitation's email been queued (through the operator path).
PREFERENCES = {("member", "study_emails"), ("invitation", "email_queued")}
ROLES = ("member", "moderator", "researcher")
# Member ids start far from the small numbers other tables use, so that a leaked
# id is recognisable in a dump of the other register (contact ids are UUIDs).
MEMBER_IDS_FROM = 48210


def gid(type_name: str, node_id: int) -> str:
    return str(GlobalID(type_name, str(node_id)))


def node_id(global_id: str) -> int:
    return int(GlobalID.from_id(global_id).node_id)


def bounded(token: str) -> re.Pattern[str]:
    """``token`` as a whole word: not part of a longer run of letters or digits."""
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(token)}(?![0-9A-Za-z])")


def date_forms(d: date) -> list[str]:
    """A birth date written the ways people and programs write dates."""
    return [
        d.isoformat(),
        f"{d.day}.{d.month}.{d.year}",
        f"{d:%d.%m.%Y}",
        f"{d:%Y%m%d}",
        f"{d:%d/%m/%Y}",
        f"{d:%m/%d/%Y}",
        f"{d.month}/{d.day}/{d.year}",
        f"{d:%Y/%m/%d}",
    ]


async def start_ids_at(name: str, table: str, last: int) -> None:
    """Make the next id of ``table`` be ``last + 1``."""
    conn = get_connection(name)
    if dbtools.dialect(name) == "postgres":
        await conn.execute_query(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), {last})"
        )
        return
    await conn.execute_query(f"DELETE FROM sqlite_sequence WHERE name = '{table}'")
    await conn.execute_query(f"INSERT INTO sqlite_sequence (name, seq) VALUES ('{table}', {last})")


async def column_names(name: str) -> dict[str, list[str]]:
    """Every table of one register and its column names (empty tables too)."""
    conn = get_connection(name)
    out: dict[str, list[str]] = {}
    for table in await dbtools.list_tables(name):
        if table in dbtools.SKIP:
            continue
        if dbtools.dialect(name) == "sqlite":
            rows = await conn.execute_query_dict(f'PRAGMA table_info("{table}")')
            out[table] = [r["name"] for r in rows]
        else:
            rows = await conn.execute_query_dict(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = current_schema() AND table_name = '{table}'"
            )
            out[table] = [r["column_name"] for r in rows]
    return out


async def read_contact(server: Server, token: str, member_gid: str, reason: str = REASON) -> Any:
    return await server.gql(
        READ_MEMBER_CONTACT, {"memberId": member_gid, "reason": reason}, token=token
    )


async def audit_rows(action: str) -> list[AuditEntry]:
    return await AuditEntry.filter(action=action).order_by("id")


async def session_gid(server: Server, account: Account) -> str:
    body = await server.gql(MY_SESSIONS, token=account.token)
    assert "errors" not in body, body
    edges = body["data"]["me"]["sessions"]["edges"]
    current = [e["node"]["id"] for e in edges if e["node"]["current"]]
    assert len(current) == 1, body
    found: str = current[0]
    return found


def assert_forbidden(body: dict[str, Any], codes: tuple[str, ...] = ("FORBIDDEN",)) -> None:
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] in codes, body
    assert body.get("data") is None, body


def named(type_ref: dict[str, Any]) -> str:
    while type_ref["name"] is None:
        type_ref = type_ref["ofType"]
    name: str = type_ref["name"]
    return name


def sensitive_paths(schema: dict[str, Any]) -> dict[str, list[list[str]]]:
    """For each root field, one shortest path to every sensitive field it can reach.

    A field is sensitive when its type is ContactDetails, or when it is a data field
    (a field of a non-root type) named like email/birth*/contact* that can hold a value:
    a Boolean flag such as ``RegisterSuccess.emailSent`` holds none. Root fields are
    operations (``verifyEmail``, ``requestEmailChange``): they count by what they return.
    Abstract types are followed into their possible types.
    """
    types = {t["name"]: t for t in schema["types"]}

    def edges(type_name: str) -> list[tuple[str, str, str]]:
        """(step label, field name or "", next type) of one type."""
        t = types[type_name]
        out = [(f"{type_name}.{f['name']}", f["name"], named(f["type"])) for f in t["fields"] or []]
        out += [(f"... on {p['name']}", "", p["name"]) for p in t["possibleTypes"] or []]
        return out

    def is_sensitive(field: str, target: str) -> bool:
        named_like = bool(field and SENSITIVE_FIELD.search(field)) and target != "Boolean"
        return named_like or target == "ContactDetails"

    found: dict[str, list[list[str]]] = {}
    for key in ("queryType", "mutationType", "subscriptionType"):
        if schema[key] is None:
            continue
        root = schema[key]["name"]
        for step, _field, target in edges(root):
            paths: list[list[str]] = []
            if target == "ContactDetails":
                paths.append([step])
            seen = {target}
            queue: deque[tuple[str, list[str]]] = deque([(target, [step])])
            while queue:
                current, path = queue.popleft()
                for next_step, next_field, next_type in edges(current):
                    if is_sensitive(next_field, next_type):
                        paths.append([*path, next_step])
                    if next_type not in seen:
                        seen.add(next_type)
                        queue.append((next_type, [*path, next_step]))
            if paths:
                found[step] = paths
    return found


# ---------------------------------------------------------------------------
# 1. A realistic scenario, then a dump of both registers
# ---------------------------------------------------------------------------


async def test_registers_hold_no_contact_data_after_a_realistic_scenario(server: Server) -> None:
    await start_ids_at("community", "member", MEMBER_IDS_FROM)
    admin = await staff(server, "admin")
    assert admin.member_id > MEMBER_IDS_FROM

    births = {
        "fi": date(1987, 6, 23),
        "sv": date(1962, 11, 4),
        "en": date(2004, 2, 29),
    }
    aino = await member(
        server,
        "FI",
        email="aino.virtanen@example.fi",
        birthDate=births["fi"].isoformat(),
        loginName="kettu_fi",
        displayName="Sininen Kettu",
    )
    bjorn = await member(
        server,
        "SV",
        email="bjorn.lindqvist@example.se",
        birthDate=births["sv"].isoformat(),
        loginName="uggla_sv",
        displayName="Grå Uggla",
    )
    chris = await member(
        server,
        "EN",
        email="chris.moreno@example.org",
        birthDate=births["en"].isoformat(),
        loginName="heron_en",
        displayName="Quiet Heron",
    )
    new_aino_email = "aino.uusi@example.net"
    assert aino.email and bjorn.email and chris.email
    emails = [aino.email, bjorn.email, chris.email, new_aino_email]
    members = [aino, bjorn, chris]
    contacts_before = {c.id: c for c in await Contact.all()}
    assert len(contacts_before) == 3
    # Contact ids are random, and contact times are kept to the day: neither
    # can be lined up with the member rows' ids or times.
    assert all(isinstance(cid, uuid.UUID) and cid.version == 4 for cid in contacts_before)
    for contact in contacts_before.values():
        for moment in (contact.created_at, contact.verified_at):
            assert moment is not None and (moment.hour, moment.minute, moment.second) == (0, 0, 0)
    for consent in await Consent.all():
        assert (consent.given_at.hour, consent.given_at.minute, consent.given_at.second) == (
            0,
            0,
            0,
        )

    # Signing in with the email address, and a failed attempt with another one.
    by_email = await login(server, chris.email)
    assert by_email["__typename"] == "LoginSuccess", by_email
    failed = await login(server, bjorn.email, "not the right password at all")
    assert failed["__typename"] == "NotAllowedError", failed
    assert failed["code"] == "INVALID_CREDENTIALS"

    # New public names.
    for account, new_name in ((aino, "Punainen Kettu"), (bjorn, "Vit Uggla")):
        result = await update_profile(server, account.token, displayName=new_name)
        assert result["__typename"] == "UpdateProfileSuccess", result
        assert result["me"]["displayName"] == new_name

    # A password reset from the email link.
    body = await server.gql(REQUEST_PASSWORD_RESET, {"email": bjorn.email})
    assert body["data"]["requestPasswordReset"]["__typename"] == "Done", body
    reset_token = await emailed_token(server, bjorn.email, "reset_password")
    body = await server.gql(
        RESET_PASSWORD, {"input": {"token": reset_token, "newPassword": NEW_PASSWORD}}
    )
    assert body["data"]["resetPassword"]["__typename"] == "Done", body
    signed_in = await login(server, bjorn.login_name, NEW_PASSWORD)
    assert signed_in["__typename"] == "LoginSuccess", signed_in
    bjorn.token = signed_in["token"]

    # An email change, confirmed from the link sent to the new address.
    body = await server.gql(
        REQUEST_EMAIL_CHANGE,
        {"input": {"password": PASSWORD, "newEmail": new_aino_email}},
        token=aino.token,
    )
    assert body["data"]["requestEmailChange"]["__typename"] == "Done", body
    change_token = await emailed_token(server, new_aino_email, "change_email")
    await server.smtp.wait_for(aino.email, "email_change_notice")
    body = await server.gql(CONFIRM_EMAIL_CHANGE, {"token": change_token})
    assert body["data"]["confirmEmailChange"]["__typename"] == "Done", body
    assert (await login(server, new_aino_email))["__typename"] == "LoginSuccess"

    # New rules: published by the admin, accepted by two members.
    rules_id = (await publish_rules(server, admin, 2))["id"]
    for account in (aino, chris):
        body = await server.gql(ACCEPT_RULES, {"versionId": rules_id}, token=account.token)
        assert body["data"]["acceptRules"]["__typename"] == "AcceptRulesSuccess", body

    # The admin reads one member's contact data (after the change: the new address).
    body = await read_contact(server, admin.token, aino.gid)
    result = body["data"]["readMemberContact"]
    assert result["__typename"] == "ReadMemberContactSuccess", body
    assert result["contact"]["email"] == new_aino_email
    assert result["contact"]["birthYear"] == 1987

    # A resignation.
    body = await server.gql(RESIGN, {"password": NEW_PASSWORD}, token=bjorn.token)
    assert body["data"]["resign"]["__typename"] == "Done", body
    assert (await Member.get(id=bjorn.member_id)).status == MemberStatus.RESIGNED

    # --- The community register -------------------------------------------------
    values = await dbtools.text_values("community")
    dump = "\n".join(values).casefold()
    assert values, "the community register is empty?"
    assert "@" not in dump, [v for v in values if "@" in v]
    for email in emails:
        local = email.split("@", 1)[0]
        assert email.casefold() not in dump, email
        assert local.casefold() not in dump, local
    for born in births.values():
        for form in date_forms(born):
            assert form not in dump, form
        year = bounded(str(born.year))
        leaks = [v for v in values if year.search(v)]
        assert not leaks, (born.year, leaks)
    contact_ids = [bounded(str(cid)) for cid in contacts_before]
    leaks = [v for v in values for pattern in contact_ids if pattern.search(v)]
    assert not leaks, leaks
    for contact in contacts_before.values():
        assert contact.email_index not in dump
        assert contact.member_index not in dump
    for table, columns in (await column_names("community")).items():
        for column in columns:
            if (table, column) in PREFERENCES:
                continue
            assert not re.search(r"email|mail|birth|year|contact", column, re.I), (table, column)
    # The member rows point nowhere else: and the values dumped above are really there.
    assert any("Punainen Kettu" in v for v in values)
    assert any(str(aino.member_id) == v for v in values)

    # --- The contacts register ---------------------------------------------------
    settings = server.settings
    contact_values = await dbtools.text_values("contacts")
    contact_dump = "\n".join(contact_values).casefold()
    for email in emails:
        assert email.casefold() not in contact_dump, email
        assert email.split("@", 1)[0].casefold() not in contact_dump, email
    for born in births.values():
        for form in date_forms(born):
            assert form not in contact_dump, form
    member_ids = [bounded(str(a.member_id)) for a in [*members, admin]]
    leaks = [v for v in contact_values for pattern in member_ids if pattern.search(v)]
    assert not leaks, leaks
    for table, columns in (await column_names("contacts")).items():
        assert "member_id" not in columns, table
        # Only keyed hashes and sealed links: never a plain member id.
        keyed = {"contact": ["member_index", "member_seal"], "banned_address": ["member_index"]}
        assert [c for c in columns if "member" in c] == keyed.get(table, []), (table, columns)

    contacts = await Contact.all().order_by("id")
    assert len(contacts) == 2, "the resigned member's contact record is gone"
    expected = {aino.member_id: new_aino_email, chris.member_id: chris.email}
    for contact in contacts:
        owner = crypto.unseal_member(contact.member_seal)
        assert owner in expected
        email = expected[owner]
        # The address: encrypted, found through a keyed blind index (an HMAC, in hex).
        assert email.encode() not in bytes(contact.email_ciphertext)
        assert crypto.decrypt(contact.email_ciphertext, "contact-email") == email
        assert re.fullmatch(r"[0-9a-f]{64}", contact.email_index)
        assert (
            contact.email_index
            == hmac.new(
                settings.contacts_index_key, b"email:" + email.encode(), hashlib.sha256
            ).hexdigest()
        )
        assert contact.email_index != hashlib.sha256(email.encode()).hexdigest()
        # The member: a keyed hash and a sealed id, never the id itself.
        assert re.fullmatch(r"[0-9a-f]{64}", contact.member_index)
        assert contact.member_index != str(owner)
        assert (
            contact.member_index
            == hmac.new(settings.link_key, f"member:{owner}".encode(), hashlib.sha256).hexdigest()
        )
        assert str(owner).encode() not in bytes(contact.member_seal)
        assert contact.birth_year in {1987, 2004}

    # Without the link key no id matches any member_index: not with another key,
    # not unkeyed, not for any id in a brute-forced range.
    indexes = {c.member_index for c in contacts}
    wrong_keys = [settings.contacts_index_key, settings.token_key, b"\x00" * 32]
    for candidate in range(1, MEMBER_IDS_FROM + 100):
        message = f"member:{candidate}".encode()
        assert hashlib.sha256(message).hexdigest() not in indexes
        for key in wrong_keys:
            assert hmac.new(key, message, hashlib.sha256).hexdigest() not in indexes
    override_settings(replace(settings, link_key=b"another link key, not the real one!"))
    try:
        for contact in contacts:
            with pytest.raises(InvalidTag):
                crypto.unseal_member(contact.member_seal)
        assert not indexes & {crypto.member_index(a.member_id) for a in members}
    finally:
        override_settings(settings)
    assert indexes == {crypto.member_index(aino.member_id), crypto.member_index(chris.member_id)}


# ---------------------------------------------------------------------------
# 2. The schema: one path to contact data, closed to everyone but admins
# ---------------------------------------------------------------------------


async def introspect(server: Server) -> dict[str, Any]:
    body = await server.gql(SCHEMA_WALK)
    assert "errors" not in body, body
    schema: dict[str, Any] = body["data"]["__schema"]
    return schema


async def test_schema_has_one_path_to_contact_data(server: Server) -> None:
    schema = await introspect(server)
    assert schema["subscriptionType"] is not None
    found = sensitive_paths(schema)
    assert set(found) == {"Mutation.readMemberContact"}, found
    tails = {path[-1] for path in found["Mutation.readMemberContact"]}
    assert "ReadMemberContactSuccess.contact" in tails, found
    assert "ContactDetails.email" in tails, found
    assert "ContactDetails.birthYear" in tails, found
    types = {t["name"]: t for t in schema["types"]}
    for type_name in ("Me", "Member", "Session", "Notification", "AuditEntry"):
        names = [f["name"] for f in types[type_name]["fields"]]
        sensitive = [n for n in names if SENSITIVE_FIELD.search(n)]
        assert sensitive == (["studyEmails"] if type_name == "Me" else []), (type_name, names)
        if type_name == "Me":
            kind = next(f for f in types["Me"]["fields"] if f["name"] == "studyEmails")["type"]
            assert kind["ofType"]["name"] == "Boolean", kind


async def test_only_admins_reach_read_member_contact(server: Server) -> None:
    target = await member(server)
    callers = [await member(server), *[await staff(server, role) for role in ROLES[1:]]]
    for caller in callers:
        body = await read_contact(server, caller.token, target.gid)
        assert_forbidden(body)
        assert target.email is not None
        assert target.email not in str(body)
    # Not even one's own record.
    assert_forbidden(await read_contact(server, target.token, target.gid))
    # Signed out.
    body = await read_contact(server, "", target.gid)
    assert_forbidden(body, ("UNAUTHENTICATED", "FORBIDDEN"))
    assert await audit_rows("contact.read") == []


async def test_me_has_no_email_field_for_any_role(server: Server) -> None:
    accounts = [
        await member(server),
        *[await staff(server, r) for r in ("moderator", "researcher", "admin")],
    ]
    for account in accounts:
        body = await server.gql(ME_EMAIL, token=account.token)
        assert body.get("data") is None, body
        assert body["errors"], body
        message = body["errors"][0]["message"]
        assert "email" in message and "Me" in message, body


# ---------------------------------------------------------------------------
# 3. The admin's audited read, and the append-only audit log
# ---------------------------------------------------------------------------


async def test_admin_reads_contact_and_the_read_is_audited(server: Server) -> None:
    target = await member(server, "SV", birthDate="1979-08-30")
    admin = await staff(server, "admin")
    before = clock.now()
    body = await read_contact(server, admin.token, target.gid, f"  {REASON}  ")
    result = body["data"]["readMemberContact"]
    assert result["__typename"] == "ReadMemberContactSuccess", body
    contact = result["contact"]
    assert contact["memberId"] == target.gid
    assert contact["email"] == target.email
    assert contact["birthYear"] == 1979
    assert contact["language"] == "sv"
    assert contact["verifiedAt"] is not None
    assert contact["createdAt"] is not None
    kinds = {c["kind"]: c for c in contact["consents"]}
    assert set(kinds) == {"rules", "privacy_notice"}, contact
    assert kinds["rules"]["version"] == "1"
    assert all(c["withdrawnAt"] is None for c in contact["consents"])

    [entry] = await audit_rows("contact.read")
    assert entry.actor_id == admin.member_id
    assert entry.actor_role == "admin"
    assert entry.target_member_id == target.member_id
    assert entry.reason == REASON
    assert before - timedelta(seconds=5) <= entry.at <= datetime.now(UTC) + timedelta(seconds=5)
    assert target.email is not None
    assert target.email not in str(entry.details) and "@" not in entry.reason


async def test_read_contact_needs_a_reason_and_a_known_member(server: Server) -> None:
    target = await member(server)
    admin = await staff(server, "admin")
    for reason in ("", "   ", "too short", "         x"):
        body = await read_contact(server, admin.token, target.gid, reason)
        assert "errors" not in body, body
        result = body["data"]["readMemberContact"]
        assert result["__typename"] == "InputError", body
        assert result["code"] == "REASON_REQUIRED"
        assert result["field"] == "reason"
        assert "contact" not in result
    assert await audit_rows("contact.read") == []

    for unknown in (gid("Member", 999_999), gid("Session", target.member_id), "not-a-global-id"):
        body = await read_contact(server, admin.token, unknown)
        if unknown == "not-a-global-id":
            assert body.get("errors") and body.get("data") is None, body
            continue
        result = body["data"]["readMemberContact"]
        assert result["__typename"] in {"NotAllowedError", "InputError"}, body
        assert result["code"] == "NOT_FOUND", body
    # A staff account has no contact record.
    body = await read_contact(server, admin.token, admin.gid)
    assert body["data"]["readMemberContact"]["code"] == "NOT_FOUND", body
    assert await audit_rows("contact.read") == []


async def test_read_contact_of_a_resigned_member_is_not_found(server: Server) -> None:
    target = await member(server)
    admin = await staff(server, "admin")
    body = await server.gql(RESIGN, {"password": PASSWORD}, token=target.token)
    assert body["data"]["resign"]["__typename"] == "Done", body
    body = await read_contact(server, admin.token, target.gid)
    assert body["data"]["readMemberContact"]["code"] == "NOT_FOUND", body
    assert await audit_rows("contact.read") == []


async def test_audit_entries_are_append_only(server: Server) -> None:
    target = await member(server)
    admin = await staff(server, "admin")
    body = await read_contact(server, admin.token, target.gid)
    assert body["data"]["readMemberContact"]["__typename"] == "ReadMemberContactSuccess"
    [entry] = await audit_rows("contact.read")

    entry.reason = "rewritten afterwards"
    with pytest.raises(PermissionError):
        await entry.save()
    with pytest.raises(PermissionError):
        await entry.delete()
    [again] = await audit_rows("contact.read")
    assert again.reason == REASON
    assert again.actor_id == admin.member_id

    schema = await introspect(server)
    mutation = {t["name"]: t for t in schema["types"]}[schema["mutationType"]["name"]]
    names = [f["name"] for f in mutation["fields"]]
    assert "readMemberContact" in names
    assert not [n for n in names if re.search(r"audit|entr(y|ies)", n, re.I)], names


async def test_audit_log_is_newest_first_with_cursors_for_admins_only(server: Server) -> None:
    targets = [await member(server) for _ in range(3)]
    admin = await staff(server, "admin")
    reasons = [f"{REASON} (case {n})" for n in range(3)]
    for target, reason in zip(targets, reasons, strict=True):
        body = await read_contact(server, admin.token, target.gid, reason)
        assert body["data"]["readMemberContact"]["__typename"] == "ReadMemberContactSuccess"

    # Every entry, two at a time.
    seen: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(50):
        body = await server.gql(AUDIT_LOG, {"first": 2, "after": after}, token=admin.token)
        assert "errors" not in body, body
        page = body["data"]["auditLog"]
        assert len(page["edges"]) <= 2
        seen += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert len(page["edges"]) == 2
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    stored = await AuditEntry.all().order_by("-id")
    assert len(stored) >= 5  # rules.publish, staff.create, three reads
    assert [node_id(n["id"]) for n in seen] == [row.id for row in stored]
    ats = [datetime.fromisoformat(n["at"]) for n in seen]
    assert ats == sorted(ats, reverse=True)

    # Filtered by action: the three reads, newest first, with who, whom and why.
    body = await server.gql(AUDIT_LOG, {"first": 10, "action": "contact.read"}, token=admin.token)
    reads = [e["node"] for e in body["data"]["auditLog"]["edges"]]
    assert [n["reason"] for n in reads] == list(reversed(reasons))
    assert [n["targetMemberId"] for n in reads] == [t.gid for t in reversed(targets)]
    assert {n["actorId"] for n in reads} == {admin.gid}
    assert {n["actorRole"] for n in reads} == {"admin"}
    assert not body["data"]["auditLog"]["pageInfo"]["hasNextPage"]
    # Filtered by target.
    body = await server.gql(AUDIT_LOG, {"first": 10, "target": targets[1].gid}, token=admin.token)
    assert [e["node"]["reason"] for e in body["data"]["auditLog"]["edges"]] == [reasons[1]]

    for caller in [targets[0], *[await staff(server, role) for role in ROLES[1:]]]:
        assert_forbidden(await server.gql(AUDIT_LOG, {"first": 10}, token=caller.token))
    assert_forbidden(await server.gql(AUDIT_LOG, {"first": 10}), ("UNAUTHENTICATED", "FORBIDDEN"))


# ---------------------------------------------------------------------------
# 4. node(id:) shows nothing that is not the caller's
# ---------------------------------------------------------------------------


async def node(server: Server, global_id: str, token: str | None) -> Any:
    body = await server.gql(NODE, {"id": global_id}, token=token)
    assert "errors" not in body, body
    return body["data"]["node"]


async def test_node_hides_other_members_sessions_and_notifications(server: Server) -> None:
    alice = await member(server)
    bob = await member(server)
    moderator = await staff(server, "moderator")
    admin = await staff(server, "admin")
    await publish_rules(server, admin, 2)

    bob_session = await session_gid(server, bob)
    body = await server.gql(NOTIFICATIONS, {"first": 20}, token=bob.token)
    [edge] = body["data"]["notifications"]["edges"]
    bob_notice = edge["node"]["id"]
    assert edge["node"]["kind"] == "RULES_CHANGED"

    # The owner sees both.
    own = await node(server, bob_session, bob.token)
    assert own is not None and own["__typename"] == "Session" and own["current"] is True
    own = await node(server, bob_notice, bob.token)
    assert own is not None and own["__typename"] == "Notification"

    # Nobody else does: another member, staff, or an anonymous caller.
    for token in (alice.token, moderator.token, admin.token, None):
        assert await node(server, bob_session, token) is None
        assert await node(server, bob_notice, token) is None


async def test_node_hides_audit_entries_from_non_admins(server: Server) -> None:
    target = await member(server)
    admin = await staff(server, "admin")
    body = await read_contact(server, admin.token, target.gid)
    assert body["data"]["readMemberContact"]["__typename"] == "ReadMemberContactSuccess"
    [entry] = await audit_rows("contact.read")
    entry_gid = gid("AuditEntry", entry.id)

    seen = await node(server, entry_gid, admin.token)
    assert seen == {
        "__typename": "AuditEntry",
        "id": entry_gid,
        "action": "contact.read",
        "reason": REASON,
    }
    others = [target, *[await staff(server, role) for role in ROLES[1:]]]
    for caller in others:
        assert await node(server, entry_gid, caller.token) is None
    assert await node(server, entry_gid, None) is None


def test_only_the_operator_path_imports_the_contacts_register() -> None:
    """The module boundary of the README: only these modules may touch contact data."""
    root = Path(__file__).resolve().parent.parent
    allowed = {
        "resolvers/accounts.py",
        "resolvers/sessions.py",
        "resolvers/privacy.py",
        "resolvers/sanctions.py",
        "resolvers/mail.py",
        "resolvers/outreach.py",
        "resolvers/lifecycle.py",
    }
    pattern = re.compile(
        r"^\s*(from models\.contacts import|from models import contacts|import models\.contacts)",
        re.M,
    )
    importers = set()
    for folder in ("schema", "resolvers", "subscriptions", "models"):
        for path in (root / folder).rglob("*.py"):
            if "migrations" not in path.parts and pattern.search(path.read_text()):
                importers.add(str(path.relative_to(root)))
    for name in ("app.py", "cli.py", "config.py"):
        if pattern.search((root / name).read_text()):
            importers.add(name)
    assert importers == allowed, importers
