"""The authorization matrix: every root field of the schema against every role.

The schema is introspected from the running server; every field of Query, Mutation and
Subscription must have a row in ``EXPECTED`` (a new field without one fails the test).
Each field is called by each role with minimal placeholder arguments built from the
introspected argument types, and the answer is classified:

- denied: a GraphQL error with ``extensions.code`` UNAUTHENTICATED or FORBIDDEN;
- allowed: anything else (data, a typed error union, null, NOT_FOUND, BAD_USER_INPUT...).

The rows follow the permission classes in ``schema/*.py`` (IsAuthenticated, IsStaff,
IsModerator, IsResearcher, IsAdmin; no class means public). A suspended member is a
member for permissions: suspension refuses writes with typed errors, never with a
permission error, so its classification must equal the member's for every field.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

from resolvers import clock
from tests.conftest import Server
from tests.helpers import me_of, member, sign_in, staff
from tests.test_moderation import ws_client
from tests.test_sanctions import acted
from tests.ws import WsClient

ANONYMOUS = "anonymous"
MEMBER = "member"
SUSPENDED = "suspended member"
MODERATOR = "moderator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANONYMOUS, MEMBER, SUSPENDED, MODERATOR, RESEARCHER, ADMIN)

EVERYONE = frozenset(ROLES)
SIGNED_IN = EVERYONE - {ANONYMOUS}
STAFF = frozenset({MODERATOR, RESEARCHER, ADMIN})
MODERATORS = frozenset({MODERATOR, ADMIN})
RESEARCHERS = frozenset({RESEARCHER, ADMIN})
ADMINS = frozenset({ADMIN})

DENIAL_CODES = {"UNAUTHENTICATED", "FORBIDDEN"}

# Who may call each root field ("Type.field"), from the fields' permission classes.
EXPECTED: dict[str, frozenset[str]] = {
    # Query
    "Query.me": EVERYONE,
    "Query.rules": EVERYONE,
    "Query.node": EVERYONE,
    "Query.notifications": SIGNED_IN,
    "Query.areas": SIGNED_IN,
    "Query.unreadThreads": SIGNED_IN,
    "Query.researchAttributes": SIGNED_IN,
    "Query.myInvitations": SIGNED_IN,
    "Query.myStudy": SIGNED_IN,
    "Query.myData": SIGNED_IN,
    "Query.moderationQueue": MODERATORS,
    "Query.moderationMember": MODERATORS,
    "Query.moderationWords": MODERATORS,
    "Query.studies": RESEARCHERS,
    "Query.study": RESEARCHERS,
    "Query.segments": RESEARCHERS,
    "Query.memberGroups": RESEARCHERS,
    "Query.previewSegment": RESEARCHERS,
    "Query.studyResults": RESEARCHERS,
    "Query.studyAnswersCsv": RESEARCHERS,
    "Query.verifyPrizeDraw": RESEARCHERS,
    "Query.outboxStatus": ADMINS,
    "Query.auditLog": ADMINS,
    "Query.communityHealth": ADMINS,
    # Mutation: public
    "Mutation.register": EVERYONE,
    "Mutation.verifyEmail": EVERYONE,
    "Mutation.login": EVERYONE,
    "Mutation.confirmEmailChange": EVERYONE,
    "Mutation.requestPasswordReset": EVERYONE,
    "Mutation.resetPassword": EVERYONE,
    # Mutation: any signed-in account
    "Mutation.logout": SIGNED_IN,
    "Mutation.revokeSession": SIGNED_IN,
    "Mutation.logoutEverywhere": SIGNED_IN,
    "Mutation.updateProfile": SIGNED_IN,
    "Mutation.changePassword": SIGNED_IN,
    "Mutation.requestEmailChange": SIGNED_IN,
    "Mutation.resign": SIGNED_IN,
    "Mutation.acceptRules": SIGNED_IN,
    "Mutation.markNotificationsRead": SIGNED_IN,
    "Mutation.startThread": SIGNED_IN,
    "Mutation.addPost": SIGNED_IN,
    "Mutation.editPost": SIGNED_IN,
    "Mutation.deletePost": SIGNED_IN,
    "Mutation.react": SIGNED_IN,
    "Mutation.markThreadRead": SIGNED_IN,
    "Mutation.sendTyping": SIGNED_IN,
    "Mutation.reportPost": SIGNED_IN,
    "Mutation.acknowledgeWarning": SIGNED_IN,
    "Mutation.setMyAttributes": SIGNED_IN,
    "Mutation.saveAnswers": SIGNED_IN,
    "Mutation.submitAnswers": SIGNED_IN,
    "Mutation.declineInvitation": SIGNED_IN,
    "Mutation.setStudyEmails": SIGNED_IN,
    "Mutation.claimReward": SIGNED_IN,
    # Mutation: staff
    "Mutation.createArea": STAFF,
    "Mutation.moderatePost": MODERATORS,
    "Mutation.moderateThread": MODERATORS,
    "Mutation.moderateMember": MODERATORS,
    "Mutation.setAreaPremoderation": MODERATORS,
    "Mutation.addModerationWord": MODERATORS,
    "Mutation.removeModerationWord": MODERATORS,
    "Mutation.lockAccount": MODERATORS,
    "Mutation.unlockAccount": MODERATORS,
    "Mutation.createMemberGroup": RESEARCHERS,
    "Mutation.addGroupMembers": RESEARCHERS,
    "Mutation.saveSegment": RESEARCHERS,
    "Mutation.createStudy": RESEARCHERS,
    "Mutation.updateStudy": RESEARCHERS,
    "Mutation.setStudyQuestions": RESEARCHERS,
    "Mutation.launchStudy": RESEARCHERS,
    "Mutation.closeStudy": RESEARCHERS,
    "Mutation.archiveStudy": RESEARCHERS,
    "Mutation.drawPrizes": RESEARCHERS,
    "Mutation.redrawUnclaimed": RESEARCHERS,
    "Mutation.publishRules": ADMINS,
    "Mutation.retryFailedMail": ADMINS,
    "Mutation.readMemberContact": ADMINS,
    "Mutation.defineResearchAttribute": ADMINS,
    # Subscription
    "Subscription.notifications": SIGNED_IN,
    "Subscription.threadEvents": SIGNED_IN,
    "Subscription.threadTyping": SIGNED_IN,
    "Subscription.moderationFeed": MODERATORS,
}

# Node types of `id` arguments named plainly `id` (others are named `<type>Id`).
ID_TYPES = {
    "node": "Study",
    "study": "Study",
    "myStudy": "Study",
    "updateStudy": "Study",
    "launchStudy": "Study",
    "closeStudy": "Study",
    "archiveStudy": "Study",
    "revokeSession": "Session",
    "removeModerationWord": "ModerationWord",
    "acknowledgeWarning": "Sanction",
    "claimReward": "Reward",
}
# Calls that end the caller's session: the role signs in again after them.
SESSION_ENDING = {"Mutation.logout", "Mutation.logoutEverywhere"}
SUBSCRIPTION_WAIT = 0.5

ROOTS_WALK = """
query RootsWalk {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      name
      kind
      enumValues { name }
      fields { name type { ...TypeRef } args { name defaultValue type { ...TypeRef } } }
      inputFields { name defaultValue type { ...TypeRef } }
    }
  }
}
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name } } }
}
"""


# ---------------------------------------------------------------------------
# Building calls from the introspected schema
# ---------------------------------------------------------------------------


def type_string(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return type_string(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return f"[{type_string(ref['ofType'])}]"
    name: str = ref["name"]
    return name


def named(ref: dict[str, Any]) -> dict[str, Any]:
    while ref.get("ofType") is not None:
        ref = ref["ofType"]
    return ref


def required(entry: dict[str, Any]) -> bool:
    return bool(entry["type"]["kind"] == "NON_NULL" and entry["defaultValue"] is None)


def global_id(type_name: str) -> str:
    return base64.b64encode(f"{type_name}:999999".encode()).decode()


def placeholder(ref: dict[str, Any], types: dict[str, Any], arg: str, field: str) -> Any:
    """A minimal value of the type `ref` for the argument or input field `arg`."""
    if ref["kind"] == "NON_NULL":
        return placeholder(ref["ofType"], types, arg, field)
    if ref["kind"] == "LIST":
        return []
    name = ref["name"]
    kind = types[name]["kind"]
    if kind == "ENUM":
        return types[name]["enumValues"][0]["name"]
    if kind == "INPUT_OBJECT":
        return {
            f["name"]: placeholder(f["type"], types, f["name"], field)
            for f in types[name]["inputFields"]
            if required(f)
        }
    if name == "ID":
        if arg == "id":
            return global_id(ID_TYPES.get(field, "Node"))
        return global_id(arg.removesuffix("Id")[:1].upper() + arg.removesuffix("Id")[1:])
    scalars: dict[str, Any] = {
        "Int": 0,
        "Float": 0.0,
        "Boolean": False,
        "Date": "2000-01-01",
        "DateTime": "2000-01-01T00:00:00+00:00",
        "JSON": {},
    }
    return scalars.get(name, "")


def operation(
    root: str, field: dict[str, Any], types: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A document calling `field` with its required arguments only, and its variables."""
    args = [a for a in field["args"] if required(a)]
    variables = {a["name"]: placeholder(a["type"], types, a["name"], field["name"]) for a in args}
    declared = ", ".join(f"${a['name']}: {type_string(a['type'])}" for a in args)
    passed = ", ".join(f"{a['name']}: ${a['name']}" for a in args)
    result = named(field["type"])
    selection = " { __typename }" if result["kind"] in ("OBJECT", "UNION", "INTERFACE") else ""
    keyword = root.lower()
    head = f"{keyword} Probe({declared})" if declared else f"{keyword} Probe"
    call = f"{field['name']}({passed})" if passed else field["name"]
    return f"{head} {{ {call}{selection} }}", variables


def denied(errors: list[dict[str, Any]] | None) -> bool:
    return any(
        (error.get("extensions") or {}).get("code") in DENIAL_CODES for error in errors or []
    )


async def introspect_roots(
    server: Server,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    body = await server.gql(ROOTS_WALK)
    assert "errors" not in body, body
    schema = body["data"]["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    roots = {
        root: types[schema[f"{root.lower()}Type"]["name"]]["fields"]
        for root in ("Query", "Mutation", "Subscription")
    }
    return roots, types


# ---------------------------------------------------------------------------
# The roles
# ---------------------------------------------------------------------------


async def role_accounts(server: Server) -> dict[str, tuple[str, str | None]]:
    """Each role's (login name, token); a fresh account per role (anonymous: no token)."""
    moderator = await staff(server, "moderator")
    suspended = await member(server)
    until = (clock.now() + timedelta(days=7)).replace(microsecond=0)
    sanction = await acted(server, moderator, suspended.gid, "SUSPEND", "SELLING", "Myy", until)
    assert sanction["applied"] is True, sanction
    me = await me_of(server, suspended.token)
    assert me is not None, "a suspended member stays signed in"
    plain = await member(server)
    researcher = await staff(server, "researcher")
    admin = await staff(server, "admin")
    return {
        ANONYMOUS: ("", None),
        MEMBER: (plain.login_name, plain.token),
        SUSPENDED: (suspended.login_name, suspended.token),
        MODERATOR: (moderator.login_name, moderator.token),
        RESEARCHER: (researcher.login_name, researcher.token),
        ADMIN: (admin.login_name, admin.token),
    }


async def http_matrix(
    server: Server,
    calls: dict[str, tuple[str, dict[str, Any]]],
    accounts: dict[str, tuple[str, str | None]],
) -> dict[str, set[str]]:
    """For each Query and Mutation field, the roles whose call was not denied (updates
    `accounts` with the tokens of the sessions signed in again)."""
    allowed: dict[str, set[str]] = {key: set() for key in calls}
    for role, (login_name, token) in accounts.items():
        for key, (document, variables) in calls.items():
            body = await server.gql(document, variables, token=token)
            assert "data" in body, (key, body)  # the document passed validation and ran
            if not denied(body.get("errors")):
                allowed[key].add(role)
            if token is not None and key in SESSION_ENDING:
                token = await sign_in(server, login_name)
        if token is not None:
            assert await me_of(server, token) is not None, f"{role} lost the session"
        accounts[role] = (login_name, token)  # the websockets sign in with the live token
    return allowed


async def subscription_matrix(
    server: Server,
    calls: dict[str, tuple[str, dict[str, Any]]],
    accounts: dict[str, tuple[str, str | None]],
) -> dict[str, set[str]]:
    """For each subscription, the roles whose first message within a short wait was not
    a denial (no message or data counts as allowed). One websocket per role."""
    allowed: dict[str, set[str]] = {key: set() for key in calls}
    for role, (_login_name, token) in accounts.items():
        async with ws_client(server, token or "") as client:
            for n, (key, (document, variables)) in enumerate(calls.items()):
                op_id = f"probe{n}"
                await client.subscribe(op_id, document, variables)
                message = await first_message(client, op_id)
                if message is None:
                    allowed[key].add(role)
                    continue
                if message["type"] == "error":
                    errors = message["payload"]
                elif message["type"] == "next":
                    errors = message["payload"].get("errors")
                else:
                    errors = None
                if not denied(errors):
                    allowed[key].add(role)
    return allowed


async def first_message(client: WsClient, op_id: str) -> dict[str, Any] | None:
    """The first message of `op_id` within the short wait (earlier operations' trailing
    messages, such as their `complete`, are skipped); None when none comes."""
    try:
        async with asyncio.timeout(SUBSCRIPTION_WAIT):
            while True:
                message = await client.receive()
                if message.get("id") == op_id:
                    return message
    except TimeoutError:
        return None


def as_table(allowed: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    return {key: frozenset(roles) for key, roles in allowed.items()}


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


async def test_every_root_field_answers_each_role_as_its_permission_class_says(
    server: Server,
) -> None:
    """Every Query, Mutation and Subscription field has an expectation; each role's call
    with placeholder arguments is denied exactly when the expectation leaves the role out;
    a suspended member is classified like a member for every field."""
    roots, types = await introspect_roots(server)
    fields = {f"{root}.{f['name']}": (root, f) for root, fs in roots.items() for f in fs}
    assert set(fields) == set(EXPECTED), (
        f"no expectation for: {sorted(set(fields) - set(EXPECTED))}; "
        f"not in the schema: {sorted(set(EXPECTED) - set(fields))}"
    )
    calls = {key: operation(root, f, types) for key, (root, f) in fields.items()}
    accounts = await role_accounts(server)

    http_calls = {k: c for k, c in calls.items() if not k.startswith("Subscription.")}
    ws_calls = {k: c for k, c in calls.items() if k.startswith("Subscription.")}
    observed = as_table(await http_matrix(server, http_calls, accounts))
    observed |= as_table(await subscription_matrix(server, ws_calls, accounts))

    mismatches = {
        key: {"expected": sorted(EXPECTED[key]), "observed": sorted(observed[key])}
        for key in sorted(EXPECTED)
        if observed[key] != EXPECTED[key]
    }
    assert mismatches == {}, mismatches
    unlike_member = sorted(
        k for k, roles in observed.items() if (MEMBER in roles) != (SUSPENDED in roles)
    )
    assert unlike_member == [], (
        f"a suspended member is not classified like a member: {unlike_member}"
    )
    assert len(fields) == len(EXPECTED) > 80
