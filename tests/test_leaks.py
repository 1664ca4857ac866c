"""Personal data never leaks: not through the schema, error messages, other members'
answers, nor logs.

1. The log scanner of tests/logcheck.py (the plugin that fails the session when a
   log line holds personal data) finds emails and valid identity codes, and only them.
2. The schema, as each role sees it: every field, argument and input field whose name
   or description suggests contact or identity data is on a declared allow-list;
   only the admin's ``readMemberContact`` and the member's own ``myData`` carry such
   data (extends test_privacy's ``test_schema_has_one_path_to_contact_data``, which
   pins the one path to ``ContactDetails``). Each role then calls those paths, and the
   other member-id paths, with another member's id: only the admin gets that member's
   contact, members get only their own, and nobody gets any other email.
3. Error paths driven with an email or a valid identity code in the input answer
   without repeating either (HTTP and websocket), and store neither.
4. After a realistic scenario, every list a member or a moderator can read holds none
   of the members' emails.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from models.contacts import Contact
from resolvers import clock
from tests import dbtools, logcheck
from tests.conftest import Server
from tests.helpers import (
    LOGIN,
    PASSWORD,
    READ_MEMBER_CONTACT,
    REGISTER,
    REQUEST_EMAIL_CHANGE,
    REQUEST_PASSWORD_RESET,
    Account,
    current_rules_id,
    member,
    publish_rules,
    staff,
    update_profile,
)
from tests.test_discussions import EDIT_POST
from tests.test_moderation import (
    START_THREAD,
    THREAD_EVENTS,
    add_post,
    allow_many_posts,
    ckey,
    create_area,
    decided,
    posted,
    reported,
    start_thread,
    ws_client,
)
from tests.test_moderation_feed import FEED, stored_positions
from tests.test_sanctions import MODERATION_MEMBER, acted

# A valid personal identity code (checksum T) and one with a wrong check character;
# a temporary code (individual number 900-999) identifies a person too.
HETU = "131052-308T"
HETU_BAD_CHECKSUM = "131052-308U"
HETU_TEMPORARY = "010594Y9021"
REASON = "Data subject access request received by the service desk"

# ---------------------------------------------------------------- 1. the log scanner


def test_log_scanner_finds_emails_and_valid_identity_codes() -> None:
    assert logcheck.scan("community.mail INFO sent to aino.virtanen@example.fi") == [
        "aino.virtanen@example.fi"
    ]
    assert logcheck.scan(f"uvicorn.error ERROR bad input {HETU}, again {HETU.lower()}") == [
        HETU,
        HETU.lower(),
    ]
    assert logcheck.scan(f"id={HETU_TEMPORARY};") == [HETU_TEMPORARY]
    assert logcheck.scan(f"to: Björn <björn.lindqvist+x@exämple.se> ({HETU})") == [
        "björn.lindqvist+x@exämple.se",
        HETU,
    ]
    # In the middle of a JSON log line or a truncated websocket frame.
    assert logcheck.scan('{"msg": "login", "login": "chris@example.org"}') == ["chris@example.org"]


def test_log_scanner_ignores_look_alikes() -> None:
    """Decided here: no dot-less hosts, no numeric hosts (DSNs), no wrong checksums."""
    for text in (
        f"a code with a wrong check character {HETU_BAD_CHECKSUM}",
        "an impossible date 311352-308T and 000000-0000",
        f"part of a longer run: X{HETU} {HETU}9 1{HETU}",
        "root@localhost and user@localhost are local accounts, not people",
        "postgres://postgres@127.0.0.1:5432/ctest_1_community",
        "decorators in tracebacks:    @strawberry.type  @pytest.mark.xfail",
        "a bare @ sign, a@b and x@y. and mailto: nothing",
        "counts 1310523081 and dates 1952-10-13 and uuid 0b8e4a0e-2c2c-4f4b-9a11-3c1d2e3f4a5b",
    ):
        assert logcheck.scan(text) == [], text


def test_capture_formats_exception_text_and_skips_only_infrastructure_loggers() -> None:
    capture = logcheck.Capture()

    def record(name: str, msg: str, exc: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, (), exc_info)

    try:
        raise ValueError(f"input was {HETU}")
    except ValueError as exc:
        capture.handle(record("community.accounts", "registration failed", exc))
    # SQL parameters at DEBUG are never written (ops.logs pins the logger at INFO) ...
    capture.handle(record("tortoise.db_client", "SELECT 1: ['dora@example.com']"))
    # ... but the same line at INFO or above would be, and is caught.
    info = record("tortoise.db_client", "SELECT 2: ['dora@example.com']")
    info.levelno, info.levelname = logging.INFO, "INFO"
    capture.handle(info)
    capture.handle(record("mail.log", "RCPT TO: <dora@example.com>"))  # the test SMTP server
    capture.handle(record("community.mail", "sent 1 message"))
    capture.handle(record("community.mail", "sent 1 message"))
    found = {(f.source, tuple(f.values)) for f in capture.findings.values()}
    assert found == {
        ("community.accounts", (HETU,)),
        ("tortoise.db_client", ("dora@example.com",)),
    }, capture.findings
    assert capture.records == 4  # the DEBUG SQL line and mail.log are not scanned
    exc_line = next(f.line for f in capture.findings.values() if f.source == "community.accounts")
    assert exc_line == f"ValueError: input was {HETU}"
    # The app's loggers are never skipped, whatever their name's prefix.
    for name in ("community", "community.mail", "tortoise", "uvicorn.error", "asyncpg"):
        assert not logcheck.ignored(name), name
    assert logcheck.ignored("mail.log") and not logcheck.ignored("mailer")


@contextmanager
def capture_active() -> Iterator[logcheck.Capture]:
    """The session's capture (the plugin), or one installed for this block."""
    if logcheck.CAPTURE is not None:
        yield logcheck.CAPTURE
        return
    capture = logcheck.install()
    try:
        yield capture
    finally:
        logcheck.uninstall()


def test_capture_sees_every_level_and_logger_and_caplog_sees_what_it_did(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[logging.LogRecord] = []

    def spy(record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("leak-probe"):
            seen.append(record)
        return True

    probe = logging.getLogger("community.leakprobe")
    uvicorn_error = logging.getLogger("uvicorn.error")  # does not propagate to the root
    with capture_active() as capture:
        capture.addFilter(spy)
        try:
            probe.debug("leak-probe debug")
            uvicorn_error.debug("leak-probe uvicorn")
            with caplog.at_level(logging.DEBUG, logger="community.leakprobe"):
                probe.debug("leak-probe visible")
        finally:
            capture.removeFilter(spy)
    assert [r.getMessage() for r in seen] == [
        "leak-probe debug",
        "leak-probe uvicorn",
        "leak-probe visible",
    ]
    # pytest's capture got only what the loggers' levels let through, as without the plugin.
    assert [r.getMessage() for r in caplog.records if r.name == probe.name] == [
        "leak-probe visible"
    ]


# ---------------------------------------------------------------- 2. the schema per role

SCHEMA_WALK = """
query LeakWalk {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      name kind
      fields(includeDeprecated: true) {
        name description type { ...T }
        args { name description type { ...T } }
      }
      inputFields { name description type { ...T } }
      interfaces { name }
      possibleTypes { name }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
"""

SUGGESTS_PERSONAL = re.compile(
    r"e-?mail|\bmail|address|phone|birth|identity|hetu|\bssn\b|social.?security"
    r"|real.?name|full.?name|first.?name|last.?name|surname|contact|postal|street",
    re.IGNORECASE,
)

# Output fields that carry contact data, and to whom.
CONTACT_DATA = {
    "Mutation.readMemberContact": "admins only, audited: one member's contact",
    "ReadMemberContactSuccess.contact": "its result",
    "ContactDetails.email": "its result",
    "ContactDetails.birthYear": "its result",
    "Query.myData": "the signed-in member's own export (JSON)",
}
# Output fields named or described like contact data that carry none: operations whose
# description mentions email (they answer Done, a result union or a flag), flags,
# counts. Each must return an object, a union, an enum or a Boolean.
MENTIONS_ONLY = {
    "Mutation.register": "RegisterResult; 'a verification email always follows'",
    "RegisterSuccess.emailSent": "Boolean",
    "Mutation.verifyEmail": "VerifyEmailResult (a pseudonymous Member)",
    "Mutation.login": "LoginResult ('with a login name or email'): a token and Me",
    "Mutation.resign": "DoneResult ('contact data ... deleted at once')",
    "Mutation.requestEmailChange": "DoneResult",
    "Mutation.confirmEmailChange": "DoneResult",
    "Mutation.requestPasswordReset": "DoneResult, the same for any address",
    "Mutation.retryFailedMail": "Boolean",
    "Mutation.moderateMember": "ModerateMemberResult ('a ban: by email')",
    "Mutation.launchStudy": "StudyResult ('by email in their language')",
    "Mutation.drawPrizes": "DrawResult ('told in-app and by email')",
    "Mutation.setStudyEmails": "SettingResult (a flag)",
    "Mutation.lockAccount": "LockResult ('a password-reset link is emailed')",
    "Me.studyEmails": "Boolean",
    "Query.outboxStatus": "OutboxStatus: counts and failed mail without addresses",
    "Query.moderationMember": "ModerationMemberRecord ('never contact data')",
}
# Inputs: what a client sends (never echoed, see section 3).
INPUTS = {
    "RegisterInput.email": "the address to register",
    "RegisterInput.birthDate": "checked for 16+, only the year kept",
    "LoginInput.login": "'Login name or email address'",
    "RequestEmailChangeInput.newEmail": "the new address",
    "Mutation.requestPasswordReset(email)": "the address to send the link to",
}
STRUCTURAL_KINDS = {"OBJECT", "UNION", "INTERFACE", "ENUM"}


def named_type(ref: dict[str, Any]) -> dict[str, Any]:
    while ref.get("ofType") is not None:
        ref = ref["ofType"]
    return ref


def reachable_types(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every type reachable from the three roots through fields, arguments, input
    fields, possible types and interfaces."""
    types = {t["name"]: t for t in schema["types"]}
    roots = [schema[k]["name"] for k in ("queryType", "mutationType", "subscriptionType")]
    seen: dict[str, dict[str, Any]] = {}
    queue: deque[str] = deque(roots)
    while queue:
        name = queue.popleft()
        if name in seen:
            continue
        t = seen[name] = types[name]
        refs = []
        for field in t["fields"] or []:
            refs.append(field["type"])
            refs += [arg["type"] for arg in field["args"]]
        refs += [f["type"] for f in t["inputFields"] or []]
        names = [named_type(r)["name"] for r in refs]
        names += [p["name"] for p in (t["possibleTypes"] or []) + (t["interfaces"] or [])]
        queue.extend(n for n in names if n not in seen)
    return seen


def suggestive(name: str, description: str | None) -> bool:
    return bool(SUGGESTS_PERSONAL.search(f"{name} {description or ''}"))


def personal_looking(schema: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """({output field: its named type's kind or scalar name}, {input field or argument})."""
    outputs: dict[str, str] = {}
    inputs: set[str] = set()
    for type_name, t in reachable_types(schema).items():
        for field in t["fields"] or []:
            key = f"{type_name}.{field['name']}"
            if suggestive(field["name"], field["description"]):
                target = named_type(field["type"])
                outputs[key] = target["kind"] if target["kind"] != "SCALAR" else target["name"]
            for arg in field["args"]:
                if suggestive(arg["name"], arg["description"]):
                    inputs.add(f"{key}({arg['name']})")
        for input_field in t["inputFields"] or []:
            if suggestive(input_field["name"], input_field["description"]):
                inputs.add(f"{type_name}.{input_field['name']}")
    return outputs, inputs


async def role_accounts(server: Server) -> dict[str, Account | None]:
    """One account per role (anonymous: None); the suspended member is suspended for a
    week by a moderator, as in test_authz_matrix."""
    moderator = await staff(server, "moderator")
    suspended = await member(server)
    until = (clock.now() + timedelta(days=7)).replace(microsecond=0)
    await acted(server, moderator, suspended.gid, "SUSPEND", "SELLING", "Myy", until)
    return {
        "anonymous": None,
        "member": await member(server),
        "suspended member": suspended,
        "moderator": moderator,
        "researcher": await staff(server, "researcher"),
        "admin": await staff(server, "admin"),
    }


def token_of(account: Account | None) -> str | None:
    return account.token if account else None


def emails_in(body: Any) -> set[str]:
    """Every email address anywhere in an answer, as the raw text a client receives."""
    return set(logcheck.EMAIL.findall(json.dumps(body, ensure_ascii=False)))


async def test_schema_shows_every_role_contact_data_only_on_the_allow_list(
    server: Server,
) -> None:
    accounts = await role_accounts(server)
    schemas: dict[str, Any] = {}
    for role, account in accounts.items():
        body = await server.gql(SCHEMA_WALK, token=token_of(account))
        assert "errors" not in body, (role, body)
        schemas[role] = body["data"]["__schema"]
    # One schema for everyone: the allow-list below holds for every role.
    for role, schema in schemas.items():
        assert schema == schemas["anonymous"], f"{role} sees another schema"

    outputs, inputs = personal_looking(schemas["anonymous"])
    allowed = set(CONTACT_DATA) | set(MENTIONS_ONLY)
    assert set(outputs) == allowed, (
        f"not reviewed: {sorted(set(outputs) - allowed)}; gone: {sorted(allowed - set(outputs))}"
    )
    assert inputs == set(INPUTS), (
        f"not reviewed: {sorted(inputs - set(INPUTS))}; gone: {sorted(set(INPUTS) - inputs)}"
    )
    # What only mentions email cannot carry an address or a date: it is structured or a flag.
    carriers = {k: v for k, v in outputs.items() if k in MENTIONS_ONLY}
    assert all(v in STRUCTURAL_KINDS or v == "Boolean" for v in carriers.values()), carriers
    assert outputs["ContactDetails.email"] == "String"
    assert outputs["Query.myData"] == "JSON"


PATHS_TO_A_MEMBER = """
query Paths($id: ID!) {
  node(id: $id) { __typename id ... on Member { displayName isFormerMember staffBadge } }
}
"""
MY_DATA = "{ myData }"
ME = "{ me { id loginName displayName role language } }"


async def call(server: Server, document: str, variables: dict[str, Any], token: str | None) -> Any:
    body = await server.gql(document, variables, token=token)
    assert "data" in body, body
    return body


def denied(body: dict[str, Any]) -> bool:
    codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}
    data = body.get("data")
    nothing = data is None or all(value is None for value in data.values())
    return bool(codes & {"UNAUTHENTICATED", "FORBIDDEN"}) and nothing


async def test_each_role_gets_only_what_its_role_allows_of_another_members_contact(
    server: Server,
) -> None:
    target = await member(server, email="target.person@example.fi", birthDate="1977-03-04")
    accounts = await role_accounts(server)
    assert target.email is not None
    everyone = {a.email for a in accounts.values() if a and a.email} | {target.email}
    assert len(everyone) == 3  # the target, the member, the suspended member

    for role, account in accounts.items():
        token = token_of(account)
        own: set[str] = {account.email} if account and account.email else set()
        answers: dict[str, Any] = {}

        body = await call(
            server, READ_MEMBER_CONTACT, {"memberId": target.gid, "reason": REASON}, token
        )
        answers["readMemberContact"] = body
        if role == "admin":
            contact = body["data"]["readMemberContact"]["contact"]
            assert (contact["email"], contact["birthYear"]) == (target.email, 1977), body
            assert emails_in(body) == {target.email}, body
        else:
            assert denied(body), (role, body)

        body = await call(server, MY_DATA, {}, token)
        answers["myData"] = body
        if role == "anonymous":
            assert denied(body), body
        elif account is not None and account.email is not None:
            assert body["data"]["myData"]["contact"]["email"] == account.email, body
        else:  # staff accounts have no contact record
            assert "errors" not in body, (role, body)
            assert emails_in(body) == set(), (role, body)
        assert emails_in(body) <= own, (role, body)

        body = await call(server, PATHS_TO_A_MEMBER, {"id": target.gid}, token)
        answers["node"] = body
        assert "errors" not in body, body
        pseudonym = {
            "__typename": "Member",
            "id": target.gid,
            "displayName": target.display_name,
            "isFormerMember": False,
            "staffBadge": None,
        }
        assert body["data"]["node"] == (None if account is None else pseudonym), (role, body)

        body = await call(server, MODERATION_MEMBER, {"id": target.gid}, token)
        answers["moderationMember"] = body
        if role in ("moderator", "admin"):
            assert body["data"]["moderationMember"]["member"]["id"] == target.gid, body
        else:
            assert denied(body), (role, body)

        answers["me"] = await call(server, ME, {}, token)

        for name, answer in answers.items():
            allowed = own | (
                {target.email} if (role, name) == ("admin", "readMemberContact") else set()
            )
            assert emails_in(answer) <= allowed, (role, name, answer)
            others = everyone - allowed
            text = json.dumps(answer, ensure_ascii=False).casefold()
            assert not [e for e in others if e.casefold() in text], (role, name, answer)


# ---------------------------------------------------------------- 3. errors never echo


async def raw(
    server: Server, document: str, variables: dict[str, Any], token: str | None = None
) -> tuple[dict[str, Any], str]:
    """POST an operation; (the JSON body, the raw response text as the client got it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await server.http.post(
        "/graphql", json={"query": document, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    return body, response.text


def assert_no_echo(texts: list[str], *values: str) -> None:
    """None of ``values`` in any of ``texts`` (raw or JSON-decoded, any case), and no
    email or identity code at all."""
    for text in texts:
        decoded = json.dumps(json.loads(text), ensure_ascii=False) if text[:1] == "{" else text
        for form in (text, decoded):
            for value in values:
                assert value.casefold() not in form.casefold(), (value, text)
            assert logcheck.scan(form) == [], text


def result(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"][field]
    return found


async def registration(server: Server, **overrides: Any) -> dict[str, Any]:
    n = ckey()[2:10]
    data: dict[str, Any] = {
        "email": f"leak{n}@example.com",
        "birthDate": "1990-05-17",
        "language": "FI",
        "loginName": f"leak{n}",
        "displayName": f"Vuotaja {n}",
        "password": PASSWORD,
        "rulesVersionId": await current_rules_id(server),
    }
    data.update(overrides)
    return data


async def test_register_answers_never_repeat_the_address_or_an_identity_code(
    server: Server,
) -> None:
    contacts = await Contact.all().count()
    texts: list[str] = []
    for malformed in (f"{HETU}@example..fi", f"{HETU} <aino@example.fi", f"aino@{HETU}"):
        body, text = await raw(
            server, REGISTER, {"input": await registration(server, email=malformed)}
        )
        texts.append(text)
        got = result(body, "register")
        assert (got["__typename"], got["code"], got["field"]) == (
            "InputError",
            "INVALID_EMAIL",
            "email",
        ), body
    assert_no_echo(texts, HETU, "aino@example.fi")
    assert await Contact.all().count() == contacts

    # An address already registered gets the very answer a new one gets, and neither
    # repeats it.
    known = await member(server, email="known.member@example.fi")
    assert known.email is not None
    new_body, new_text = await raw(
        server, REGISTER, {"input": await registration(server, email="brand.new@example.fi")}
    )
    again_body, again_text = await raw(
        server, REGISTER, {"input": await registration(server, email=known.email)}
    )
    assert result(new_body, "register") == {"__typename": "RegisterSuccess", "emailSent": True}
    assert result(again_body, "register") == result(new_body, "register")
    assert_no_echo([new_text, again_text], known.email, "brand.new@example.fi")


async def test_sign_in_failures_never_repeat_the_address(server: Server) -> None:
    known = await member(server, email="signing.in@example.fi")
    assert known.email is not None
    variables = [
        {"login": known.email, "password": "not the right password at all"},
        {"login": "nobody.here@example.fi", "password": "not the right password at all"},
        {"login": f"{HETU}@example.fi", "password": PASSWORD},
    ]
    answers = []
    texts = []
    for v in variables:
        body, text = await raw(server, LOGIN, v)
        answers.append(result(body, "login"))
        texts.append(text)
    assert answers[0]["__typename"] == "NotAllowedError", answers
    assert answers[0]["code"] == "INVALID_CREDENTIALS", answers
    # The same neutral answer whatever was typed.
    assert all(a == answers[0] for a in answers), answers
    assert_no_echo(texts, known.email, "nobody.here@example.fi", HETU)


async def test_password_reset_and_email_change_answers_never_repeat_an_address(
    server: Server,
) -> None:
    alice = await member(server, email="alice.reset@example.fi")
    bob = await member(server, email="bob.taken@example.fi")
    assert alice.email is not None and bob.email is not None
    texts: list[str] = []
    answers = []
    for address in (alice.email, "nobody.known@example.fi", f"{HETU}@example..fi"):
        body, text = await raw(server, REQUEST_PASSWORD_RESET, {"email": address})
        answers.append(result(body, "requestPasswordReset"))
        texts.append(text)
    assert answers == [{"__typename": "Done", "ok": True}] * 3, answers
    await server.smtp.wait_for(alice.email, "reset_password")

    changes = {}
    for new_email in (f"{HETU}@example..fi", bob.email, "free.address@example.fi"):
        body, text = await raw(
            server,
            REQUEST_EMAIL_CHANGE,
            {"input": {"password": PASSWORD, "newEmail": new_email}},
            alice.token,
        )
        changes[new_email] = result(body, "requestEmailChange")
        texts.append(text)
    invalid = changes[f"{HETU}@example..fi"]
    assert (invalid["__typename"], invalid["code"], invalid["field"]) == (
        "InputError",
        "INVALID_EMAIL",
        "newEmail",
    ), invalid
    # A taken address gets the answer a free one gets (its owner is told by email).
    assert (
        changes[bob.email]
        == changes["free.address@example.fi"]
        == {
            "__typename": "Done",
            "ok": True,
        }
    )
    assert_no_echo(texts, alice.email, bob.email, "free.address@example.fi", HETU)


async def test_refused_posts_and_edits_never_repeat_the_personal_data_nor_store_it(
    server: Server,
) -> None:
    allow_many_posts(server)
    admin = await staff(server, "admin")
    author = await member(server)
    area = await create_area(server, admin)
    thread, first = await start_thread(server, author, area, "Ihan tavallinen aloitus")
    email = "my.own.address@example.fi"
    texts: list[str] = []
    codes = []
    for text_with, code in (
        (f"Henkilötunnukseni on {HETU}, kysykää lisää", "PERSONAL_IDENTITY_CODE_IN_TEXT"),
        (f"Lähettäkää viestiä osoitteeseen {email} niin kerron", "EMAIL_ADDRESS_IN_TEXT"),
    ):
        data = {"threadId": thread, "body": text_with, "clientKey": ckey()}
        added, added_text = await raw(server, ADD_POST_DOC, {"input": data}, author.token)
        edit = {"postId": first, "body": text_with}
        edited, edited_text = await raw(server, EDIT_POST, {"input": edit}, author.token)
        started = {"areaId": area, "title": "Ketju", "body": text_with, "clientKey": ckey()}
        new_thread, thread_text = await raw(server, START_THREAD, {"input": started}, author.token)
        titled = {
            "areaId": area,
            "title": f"Soita {HETU}",
            "body": "Tavallinen",
            "clientKey": ckey(),
        }
        new_title, title_text = await raw(server, START_THREAD, {"input": titled}, author.token)
        for body, field in (
            (added, "addPost"),
            (edited, "editPost"),
            (new_thread, "startThread"),
            (new_title, "startThread"),
        ):
            got = result(body, field)
            assert got["__typename"] == "InputError", body
            codes.append(got["code"])
        assert codes[-4:-1] == [code] * 3, codes
        assert codes[-1] == "PERSONAL_IDENTITY_CODE_IN_TEXT", codes
        texts += [added_text, edited_text, thread_text, title_text]
    assert_no_echo(texts, HETU, email)
    # Nothing of the refused texts was kept: not as a post, an edit, a title, nor in the
    # checks' decisions.
    stored = "\n".join(await dbtools.text_values("community"))
    assert HETU not in stored and email not in stored
    assert "Ihan tavallinen aloitus" in stored


ADD_POST_DOC = """
mutation AddPost($input: AddPostInput!) {
  addPost(input: $input) {
    __typename
    ... on PostSuccess { post { id body } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""


async def test_a_display_name_like_an_email_is_refused_without_repeating_it(
    server: Server,
) -> None:
    email = "shown.as.name@example.fi"
    body, text = await raw(
        server, REGISTER, {"input": await registration(server, displayName=email)}
    )
    got = result(body, "register")
    assert (got["__typename"], got["field"]) == ("InputError", "displayName"), got
    someone = await member(server)
    changed, changed_text = await raw(
        server, UPDATE_PROFILE_DOC, {"input": {"displayName": email}}, someone.token
    )
    got = result(changed, "updateProfile")
    assert (got["__typename"], got["field"]) == ("InputError", "displayName"), got
    assert_no_echo([text, changed_text], email)


UPDATE_PROFILE_DOC = """
mutation Update($input: UpdateProfileInput!) {
  updateProfile(input: $input) {
    __typename
    ... on UpdateProfileSuccess { me { displayName } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""


async def test_a_display_name_that_is_an_identity_code_is_refused(server: Server) -> None:
    body, text = await raw(
        server, REGISTER, {"input": await registration(server, displayName=HETU)}
    )
    got = result(body, "register")
    assert (got["__typename"], got["field"]) == ("InputError", "displayName"), got
    someone = await member(server)
    changed, changed_text = await raw(
        server, UPDATE_PROFILE_DOC, {"input": {"displayName": HETU.lower()}}, someone.token
    )
    got = result(changed, "updateProfile")
    assert (got["__typename"], got["field"]) == ("InputError", "displayName"), got
    assert_no_echo([text, changed_text], HETU)


async def test_a_websocket_subscription_error_never_repeats_the_input(server: Server) -> None:
    someone = await member(server)
    # A thread id that names a thread by an email or an identity code: not found.
    for fake in (f"Thread:{HETU}", "Thread:aino@example.fi"):
        thread_id = base64.b64encode(fake.encode()).decode()
        async with ws_client(server, someone.token) as client:
            await client.subscribe("bad", THREAD_EVENTS, {"threadId": thread_id})
            errors = await client.refusal("bad")
        assert errors and errors[0]["extensions"]["code"] == "NOT_FOUND", errors
        assert_no_echo([json.dumps(errors)], HETU, "aino@example.fi")


async def test_a_value_of_the_wrong_type_is_not_quoted_back(server: Server) -> None:
    texts = []
    # People type their identity code where the birth date goes.
    for overrides in (
        {"birthDate": HETU},
        {"language": "aino@example.fi"},
        {"rulesVersionId": "aino@example.fi"},
    ):
        body, text = await raw(server, REGISTER, {"input": await registration(server, **overrides)})
        assert body.get("data") is None and body["errors"], body
        texts.append(text)
    someone = await member(server)
    async with ws_client(server, someone.token) as client:
        # Variables before the document: the value sits mid-frame, outside what uvicorn's
        # DEBUG frame log shows (the first 48 and last 24 characters); the answer is tested.
        for op_id, variables in (
            ("a", {"threadId": "aino@example.fi"}),
            ("b", {"after": HETU, "threadId": "VGhyZWFkOjE="}),
        ):
            payload = {"variables": variables, "query": THREAD_EVENTS}
            await client.send({"type": "subscribe", "id": op_id, "payload": payload})
            texts.append(json.dumps(await client.refusal(op_id)))
    assert_no_echo(texts, HETU, "aino@example.fi")


# ---------------------------------------------------------------- 4. other members' answers

THREAD_READ = """
query ThreadRead($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Thread {
      title areaId postCount lastPosition unreadCount readPosition locked pinned
      startedBy { id displayName isFormerMember staffBadge }
      posts(first: 50, order: OLDEST_FIRST) {
        edges { node {
          id parentId depth body bodyHtml removed pending removedByModerator isMine createdAt
          author { id displayName isFormerMember staffBadge }
          reactions { kind count reactedByMe }
        } }
      }
    }
    ... on Member { displayName isFormerMember staffBadge }
    ... on Post { body author { displayName } }
  }
}
"""
LISTS = """
query Lists {
  me { id loginName displayName role language warnings { id kind note category } }
  rules { current { id version text } history(first: 20) { edges { node { id version } } } }
  areas {
    id title description restricted
    pinnedThreads { id title }
    threads(first: 50) { edges { node {
      id title postCount unreadCount startedBy { id displayName staffBadge }
    } } }
  }
  unreadThreads { unreadCount thread { id title } }
  notifications(first: 100) { edges { node { id position kind subjectId category until } } }
  researchAttributes { id key label myValues options { value label } }
  myInvitations { state study { id title } }
}
"""
MODERATOR_LISTS = """
query ModeratorLists {
  reported: moderationQueue(queue: REPORTED, first: 50) { ...Items }
  held: moderationQueue(queue: HELD, first: 50) { ...Items }
  decidedItems: moderationQueue(queue: DECIDED, first: 50) { ...Items }
  banned: moderationWords(kind: BANNED) { id phrase }
  suspect: moderationWords(kind: SUSPECT) { id phrase }
}
fragment Items on ModerationItemConnection {
  edges { node {
    threadId openReports reportNotes heldReason decision decisionCategory decidedAt
    reportsByCategory { category count }
    checkDecisions { check action detail }
    decidedBy { id displayName staffBadge }
    post { id body author { id displayName } }
  } }
}
"""
ADMIN_LISTS = """
query AdminLists {
  auditLog(first: 100) {
    edges { node { id at actorId actorRole action targetMemberId reason details } }
  }
  outboxStatus { pending bulkPending sending sent failed failedMessages { id template lastError } }
  communityHealth(months: 2) { members active30Days months { month joined left } }
}
"""
REACT_DOC = """
mutation React($input: ReactInput!) {
  react(input: $input) { __typename ... on Error { code message } }
}
"""


async def replayed(
    server: Server,
    account: Account,
    document: str,
    variables: dict[str, Any],
    field: str,
    last: int,
) -> list[dict[str, Any]]:
    """A subscription's replay from the start, up to position ``last``."""
    events: list[dict[str, Any]] = []
    async with ws_client(server, account.token) as client:
        await client.subscribe("replay", document, variables)
        while not events or events[-1]["position"] < last:
            events.append(await client.next_data("replay", field))
    return events


async def test_no_answer_to_another_member_or_a_moderator_holds_a_members_email(
    server: Server,
) -> None:
    allow_many_posts(server)
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    aino = await member(server, email="aino.virtanen@example.fi", displayName="Sininen Kettu")
    bjorn = await member(server, "SV", email="bjorn.lindqvist@example.se", displayName="Grå Uggla")
    chris = await member(server, "EN", email="chris.moreno@example.org", displayName="Quiet Heron")
    dora = await member(server, email="dora.lukija@example.net", displayName="Hiljainen Lukija")
    people = [aino, bjorn, chris, dora]
    emails = {a.email for a in people if a.email}
    assert len(emails) == 4

    # Several members post, reply and react.
    area = await create_area(server, admin)
    thread, first = await start_thread(server, aino, area, "Mitä mieltä palvelusta?")
    reply = await posted(server, bjorn, thread, "Hyvä palvelu, nopea vastaus.")
    rude = await add_post(server, chris, thread, "Kaikki te olette idiootteja", parent=first)
    assert rude["__typename"] == "PostSuccess", rude
    rude_id = rude["post"]["id"]
    await posted(server, dora, thread, "Samaa mieltä Uggla kanssa")
    for account, post in ((chris, first), (dora, first), (aino, reply)):
        body = await server.gql(
            REACT_DOC, {"input": {"postId": post, "kind": "HEART"}}, token=account.token
        )
        assert body["data"]["react"]["__typename"] == "PostSuccess", body
    # Members report; a moderator removes, warns and locks; an admin reads a contact.
    await reported(server, aino, rude_id, "PERSONAL_ATTACK", note="Asiaton kommentti")
    await reported(server, bjorn, rude_id, "OFFENSIVE", note="Loukkaava")
    await reported(server, dora, reply, "MISINFORMATION", note="Tarkistakaa tämä")
    await decided(server, mod, rude_id, "REMOVE", "PERSONAL_ATTACK", note="Henkilöön käyvä")
    await acted(server, mod, chris.gid, "WARN", "PERSONAL_ATTACK", "Asiallisesti, kiitos")
    body = await server.gql(
        READ_MEMBER_CONTACT, {"memberId": aino.gid, "reason": REASON}, token=admin.token
    )
    assert body["data"]["readMemberContact"]["contact"]["email"] == aino.email, body
    # New rules reach everyone; a display name changes; a reply notifies its parent's author.
    await publish_rules(server, admin, 2)
    for account in people:
        accepted = await server.gql(
            "mutation($v: ID!) { acceptRules(versionId: $v) { __typename } }",
            {"v": await current_rules_id(server)},
            token=account.token,
        )
        assert accepted["data"]["acceptRules"]["__typename"] == "AcceptRulesSuccess", accepted
    assert (await update_profile(server, aino.token, displayName="Punainen Kettu"))[
        "__typename"
    ] == "UpdateProfileSuccess"
    await add_post(server, aino, thread, "Kiitos vastauksesta!", parent=reply)

    answers: dict[str, Any] = {}
    node_ids = [a.gid for a in [*people, mod, admin]] + [thread, first, reply, rude_id]
    last = (await server.gql(THREAD_READ, {"id": thread}, token=dora.token))["data"]["node"][
        "lastPosition"
    ]
    for viewer_name, viewer in (("bjorn", bjorn), ("dora", dora), ("moderator", mod)):
        answers[f"{viewer_name}: lists"] = await server.gql(LISTS, token=viewer.token)
        for node_id in node_ids:
            answers[f"{viewer_name}: node {node_id}"] = await server.gql(
                THREAD_READ, {"id": node_id}, token=viewer.token
            )
        answers[f"{viewer_name}: thread events"] = await replayed(
            server, viewer, THREAD_EVENTS, {"threadId": thread, "after": 0}, "threadEvents", last
        )
        notices = answers[f"{viewer_name}: lists"]["data"]["notifications"]["edges"]
        if notices:
            newest = max(e["node"]["position"] for e in notices)
            answers[f"{viewer_name}: notifications"] = await replayed(
                server, viewer, NOTIFICATIONS_SUB, {"after": 0}, "notifications", newest
            )
    answers["moderator: queues"] = await server.gql(MODERATOR_LISTS, token=mod.token)
    for account in people:
        answers[f"moderator: record of {account.display_name}"] = await server.gql(
            MODERATION_MEMBER, {"id": account.gid}, token=mod.token
        )
    answers["moderator: feed"] = await replayed(
        server, mod, FEED, {"after": 0}, "moderationFeed", (await stored_positions())[-1]
    )
    # The admin reads contacts through readMemberContact only: no list holds one.
    answers["admin: lists"] = await server.gql(ADMIN_LISTS, token=admin.token)
    answers["admin: queues"] = await server.gql(MODERATOR_LISTS, token=admin.token)

    for name, answer in answers.items():
        assert "errors" not in answer if isinstance(answer, dict) else True, (name, answer)
        text = json.dumps(answer, ensure_ascii=False)
        assert emails_in(answer) == set(), (name, answer)
        leaked = [e for e in emails if e.casefold() in text.casefold()]
        leaked += [e.split("@")[0] for e in emails if e.split("@")[0] in text.casefold()]
        assert not leaked, (name, leaked, answer)
        assert logcheck.scan(text) == [], (name, answer)
    # The reads did happen: names, texts and audit entries are there to be seen.
    everything = json.dumps(answers, ensure_ascii=False)
    seen = ("Punainen Kettu", "Grå Uggla", "Hyvä palvelu", "contact.read", "Tarkistakaa tämä")
    for expected in seen:
        assert expected in everything, expected


NOTIFICATIONS_SUB = """
subscription Notices($after: Int) {
  notifications(after: $after) { __typename id position kind subjectId category until }
}
"""


# ---------------------------------------------------------------- 3b. request-level refusals


async def test_request_level_refusals_never_repeat_the_input(server: Server) -> None:
    email = "aino.virtanen@example.fi"
    texts: list[str] = []
    statuses = []
    # Text the guard refuses (a bidi override) around an email and an identity code.
    for overrides in ({"email": f"{email}\u202e"}, {"displayName": f"Nimi {HETU}\u202e"}):
        body, text = await raw(server, REGISTER, {"input": await registration(server, **overrides)})
        assert body.get("data") is None, body
        assert body["errors"][0]["extensions"]["code"] == "INVALID_TEXT", body
        texts.append(text)
    # Malformed requests that carry personal data.
    me = "{ me { id } }"
    for content in (
        json.dumps({"query": me, "variables": email}),
        json.dumps({"query": me, "variables": {"x": HETU}})[:-2],  # cut short: not JSON
        json.dumps([{"query": me, "variables": {"email": email}}]),
        json.dumps({"query": {"email": email}}),
        json.dumps({"query": me, "operationName": [HETU]}),
    ):
        response = await server.http.post(
            "/graphql", content=content, headers={"Content-Type": "application/json"}
        )
        statuses.append(response.status_code)
        texts.append(response.text)
    assert all(400 <= s < 500 for s in statuses), (statuses, texts)
    assert_no_echo(texts, email, HETU)
    # The same guard over a websocket (the value mid-frame, see below).
    someone = await member(server)
    async with ws_client(server, someone.token) as client:
        variables = {"note": f"{email}\u202e", "threadId": "VGhyZWFkOjE=", "after": 0}
        payload = {"variables": variables, "query": THREAD_EVENTS}
        await client.send({"type": "subscribe", "id": "guard", "payload": payload})
        errors = await client.refusal("guard")
    assert errors[0]["extensions"]["code"] == "INVALID_TEXT", errors
    assert_no_echo([json.dumps(errors)], email, HETU)


async def test_a_request_id_that_is_an_identity_code_is_not_taken(server: Server) -> None:
    response = await server.http.post(
        "/graphql", json={"query": "{ rules { current { id } } }"}, headers={"X-Request-ID": HETU}
    )
    assert response.status_code == 200, response.text
    assert response.headers.get("X-Request-ID"), response.headers
    assert_no_echo([response.headers["X-Request-ID"], response.text], HETU)
