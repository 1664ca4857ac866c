"""GraphQL documents and helpers shared by the tests (documents are UPPER_CASE constants)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

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
    ... on VerifyEmailSuccess { member { id displayName } }
    ... on Error { code message }
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

ME = "{ me { id loginName displayName role language mustAcceptRules } }"

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
    token = token_in(await server.smtp.wait_for(email, "verify"))
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
    return Account(
        member_id=row.id,
        gid=signed_in["me"]["id"],
        login_name=login_name,
        display_name=display_name,
        email=None,
        password=PASSWORD,
        token=signed_in["token"],
    )


def assert_no_permission(body: dict[str, Any], code: str = "FORBIDDEN") -> None:
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == code, body
