"""GraphQL documents and helpers shared by the tests (documents are UPPER_CASE constants).

A document selects everything any test reads from its answer; a test that needs
more keeps its own document. Database helpers live in ``tests.dbtools``.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from strawberry.relay import GlobalID

from tests.conftest import Server
from tests.smtp import token_in

RULES_QUERY = "{ rules { current { id version } } }"

REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    __typename
    ... on RegisterSuccess { emailSent }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

VERIFY_EMAIL = """
mutation Verify($token: String!) {
  verifyEmail(token: $token) {
    __typename
    ... on VerifyEmailSuccess { member { id displayName isFormerMember } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

LOGIN = """
mutation Login($login: String!, $password: String!) {
  login(input: {login: $login, password: $password}) {
    __typename
    ... on LoginSuccess { token expiresAt me { id loginName displayName role } }
    ... on Error { code message }
    ... on RateLimitedError { retryAfterSeconds }
  }
}
"""

LOGOUT = """
mutation Logout {
  logout {
    __typename
    ... on Done { ok }
    ... on Error { code message }
  }
}
"""

ME = """
{
  me {
    __typename id loginName displayName role language createdAt mustAcceptRules
    sessions { edges { node { id current } } }
  }
}
"""

MY_SESSIONS = """
query MySessions($first: Int! = 20, $after: String) {
  me {
    sessions(first: $first, after: $after) {
      edges { cursor node { __typename id current lastSeenAt createdAt expiresAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

REVOKE_SESSION = """
mutation Revoke($id: ID!) {
  revokeSession(id: $id) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
  }
}
"""

UPDATE_PROFILE = """
mutation Update($input: UpdateProfileInput!) {
  updateProfile(input: $input) {
    __typename
    ... on UpdateProfileSuccess { me { id loginName displayName language mustAcceptRules } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

CHANGE_PASSWORD = """
mutation ChangePassword($input: ChangePasswordInput!) {
  changePassword(input: $input) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

REQUEST_EMAIL_CHANGE = """
mutation RequestEmailChange($input: RequestEmailChangeInput!) {
  requestEmailChange(input: $input) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

CONFIRM_EMAIL_CHANGE = """
mutation ConfirmEmailChange($token: String!) {
  confirmEmailChange(token: $token) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

REQUEST_PASSWORD_RESET = """
mutation RequestPasswordReset($email: String!) {
  requestPasswordReset(email: $email) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
  }
}
"""

RESET_PASSWORD = """
mutation ResetPassword($input: ResetPasswordInput!) {
  resetPassword(input: $input) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

RESIGN = """
mutation Resign($password: String!) {
  resign(password: $password) {
    __typename
    ... on Done { ok }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

PUBLISH_RULES = """
mutation Publish($input: PublishRulesInput!) {
  publishRules(input: $input) {
    __typename
    ... on PublishRulesSuccess { rules { id version textFi textSv textEn text } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

ACCEPT_RULES = """
mutation Accept($versionId: ID!) {
  acceptRules(versionId: $versionId) {
    __typename
    ... on AcceptRulesSuccess { rules { id version } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

NOTIFICATIONS = """
query Notifications($first: Int!, $after: String, $unreadOnly: Boolean! = false) {
  notifications(first: $first, after: $after, unreadOnly: $unreadOnly) {
    edges { cursor node { id position kind subjectId read createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# Each type's fragment applies only to nodes of that type, so an answer holds
# `__typename`, `id` and the fields of the node's own type.
NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename
    id
    ... on Member { displayName isFormerMember staffBadge }
    ... on Session { createdAt current }
    ... on Notification { kind position }
    ... on AuditEntry { action reason }
    ... on RulesVersion { version }
  }
}
"""

AUDIT_LOG = """
query AuditLog($first: Int! = 50, $after: String, $action: String, $target: ID) {
  auditLog(first: $first, after: $after, action: $action, targetMemberId: $target) {
    edges { cursor node { id at actorId actorRole action targetMemberId reason details } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

READ_MEMBER_CONTACT = """
mutation ReadContact($memberId: ID!, $reason: String!) {
  readMemberContact(memberId: $memberId, reason: $reason) {
    __typename
    ... on ReadMemberContactSuccess {
      contact {
        memberId email birthYear language verifiedAt createdAt
        consents { kind version givenAt withdrawnAt }
      }
    }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@dataclass
class Account:
    member_id: int
    gid: str
    login_name: str
    display_name: str
    email: str | None
    password: str
    token: str


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


async def current_rules_id(server: Server) -> str:
    body = await server.gql(RULES_QUERY)
    rules_id: str = body["data"]["rules"]["current"]["id"]
    return rules_id


async def emailed_token(server: Server, address: str, template: str) -> str:
    """Wait for the `template` email to `address`; the token of its link."""
    return token_in(await server.smtp.wait_for(address, template))


async def register(server: Server, **overrides: Any) -> dict[str, Any]:
    """Call `register`; returns the mutation's result object."""
    n = next(_counter)
    data: dict[str, Any] = {
        "email": f"person{n}@example.com",
        "birthDate": "1990-05-17",
        "language": "FI",
        "loginName": f"login{n}",
        "displayName": f"Pseudonym {n}",
        "password": PASSWORD,
    }
    if "rulesVersionId" not in overrides:
        data["rulesVersionId"] = await current_rules_id(server)
    data.update(overrides)
    body = await server.gql(REGISTER, {"input": data})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["register"]
    return result


async def login(server: Server, login_name: str, password: str = PASSWORD) -> dict[str, Any]:
    body = await server.gql(LOGIN, {"login": login_name, "password": password})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["login"]
    return result


async def sign_in(server: Server, identifier: str, password: str = PASSWORD) -> str:
    """Log in and return the new session's token (asserts success)."""
    result = await login(server, identifier, password)
    assert result["__typename"] == "LoginSuccess", result
    token: str = result["token"]
    return token


async def member(server: Server, language: str = "FI", **overrides: Any) -> Account:
    """A verified, signed-in member, made through the API and the real mail path."""
    n = next(_counter)
    email = overrides.pop("email", f"member{n}@example.com")
    login_name = overrides.pop("loginName", f"member{n}")
    display_name = overrides.pop("displayName", f"Nimimerkki {n}")
    result = await register(
        server,
        email=email,
        loginName=login_name,
        displayName=display_name,
        language=language,
        **overrides,
    )
    assert result["__typename"] == "RegisterSuccess", result
    token = await emailed_token(server, email, "verify")
    verified = await server.gql(VERIFY_EMAIL, {"token": token})
    assert verified["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess", verified
    signed_in = await login(server, login_name)
    assert signed_in["__typename"] == "LoginSuccess", signed_in
    gid = signed_in["me"]["id"]
    return Account(
        member_id=int(GlobalID.from_id(gid).node_id),
        gid=gid,
        login_name=login_name,
        display_name=display_name,
        email=email,
        password=PASSWORD,
        token=signed_in["token"],
    )


async def staff(server: Server, role: str) -> Account:
    """A signed-in staff account (created as the CLI does)."""
    from resolvers.accounts import do_create_staff

    login_name = unique(f"staff{role[:3]}x")  # role words are reserved in login names
    display_name = unique(f"{role.title()} ")
    row = await do_create_staff(role, login_name, display_name, PASSWORD)
    signed_in = await login(server, login_name)
    assert signed_in["__typename"] == "LoginSuccess", signed_in
    assert signed_in["me"]["role"] == role.upper(), signed_in
    return Account(
        member_id=row.id,
        gid=signed_in["me"]["id"],
        login_name=login_name,
        display_name=display_name,
        email=None,
        password=PASSWORD,
        token=signed_in["token"],
    )


async def me_of(server: Server, token: str) -> dict[str, Any] | None:
    """The caller's `me` (None when the token does not authenticate)."""
    body = await server.gql(ME, token=token)
    assert "errors" not in body, body
    me: dict[str, Any] | None = body["data"]["me"]
    return me


async def update_profile(server: Server, token: str, **changes: Any) -> dict[str, Any]:
    """Call `updateProfile`; returns the mutation's result object."""
    body = await server.gql(UPDATE_PROFILE, {"input": changes}, token=token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["updateProfile"]
    return result


def rules_input(n: int) -> dict[str, str]:
    """A PublishRulesInput for version `n`."""
    return {"textFi": f"Säännöt {n}", "textSv": f"Regler {n}", "textEn": f"Rules {n}"}


async def publish_rules(server: Server, admin: Account, n: int) -> dict[str, Any]:
    """Publish rules version `n` over HTTP as `admin`; returns the new RulesVersion."""
    body = await server.gql(PUBLISH_RULES, {"input": rules_input(n)}, token=admin.token)
    assert "errors" not in body, body
    result = body["data"]["publishRules"]
    assert result["__typename"] == "PublishRulesSuccess", result
    rules: dict[str, Any] = result["rules"]
    assert rules["version"] == n, rules
    return rules


def assert_no_permission(body: dict[str, Any], code: str = "FORBIDDEN") -> None:
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == code, body


def assert_unauthenticated(body: dict[str, Any]) -> None:
    assert_no_permission(body, "UNAUTHENTICATED")


# ---------------------------------------------------------------- servers in a subprocess


def wait_until_up(
    process: subprocess.Popen[bytes], url: str, log: Path, what: str = "server"
) -> None:
    """Poll `url` until it answers 200; fails with the log if the process exits first."""
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate `process`, killing it if it does not end within ten seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
