"""Sign-in and sessions: login by name or email, opaque hashed tokens, idle and
absolute expiry, listing and revoking sessions, logout everywhere, password
change, login throttling per account and per client address, and neutral
failures that do the same work whether or not the account exists.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from strawberry.relay import GlobalID

from config import override_settings, replace
from models.community import LoginThrottle, Member, MemberStatus, Session
from resolvers import clock
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    CHANGE_PASSWORD,
    LOGIN,
    LOGOUT,
    ME,
    MY_SESSIONS,
    PASSWORD,
    RESIGN,
    REVOKE_SESSION,
    VERIFY_EMAIL,
    assert_unauthenticated,
    emailed_token,
    login,
    me_of,
    member,
    register,
    sign_in,
    unique,
)

LOGOUT_EVERYWHERE = """
mutation LogoutEverywhere {
  logoutEverywhere {
    __typename
    ... on Done { ok }
    ... on Error { code message }
  }
}
"""

NEW_PASSWORD = "violet lantern under quiet snow"


# --------------------------------------------------------------------------- helpers


async def session_row(token: str) -> Session | None:
    return await Session.get_or_none(token_hash=hashlib.sha256(token.encode()).hexdigest())


def session_gid(row: Session) -> str:
    return str(GlobalID("Session", str(row.id)))


async def all_sessions(server: Server, token: str, page: int) -> list[dict[str, Any]]:
    """Every session node of the caller, following the cursors page by page."""
    nodes: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(50):
        body = await server.gql(MY_SESSIONS, {"first": page, "after": after}, token=token)
        assert "errors" not in body, body
        conn = body["data"]["me"]["sessions"]
        assert len(conn["edges"]) <= page
        nodes += [edge["node"] for edge in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        after = conn["pageInfo"]["endCursor"]
        assert after
    raise AssertionError("pagination did not end")


def assert_rate_limited(result: dict[str, Any], window_seconds: int) -> None:
    assert result["__typename"] == "RateLimitedError", result
    assert result["code"] == "TOO_MANY_ATTEMPTS", result
    assert 0 < result["retryAfterSeconds"] <= window_seconds, result
    assert "token" not in result


def assert_invalid_credentials(result: dict[str, Any]) -> None:
    assert result["__typename"] == "NotAllowedError", result
    assert result["code"] == "INVALID_CREDENTIALS", result
    assert "token" not in result


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- login


async def test_login_with_login_name_in_any_case(server: Server) -> None:
    name = unique("CamelLogin")
    account = await member(server, loginName=name)
    for typed in (name, name.lower(), name.upper(), name.swapcase(), f"  {name.upper()} "):
        result = await login(server, typed)
        assert result["__typename"] == "LoginSuccess", (typed, result)
        assert result["me"]["id"] == account.gid
        assert result["me"]["loginName"] == name
        me = await me_of(server, result["token"])
        assert me is not None and me["id"] == account.gid
    # The helper's login plus five more: six sessions of this member.
    assert await Session.filter(member_id=account.member_id).count() == 6


async def test_login_with_email_in_any_case(server: Server) -> None:
    # Registered with a mixed-case address (mail goes to its normalised form).
    n = unique("")
    email, login_name = f"Mixed.Case{n}@Example.org", f"mixed{n}"
    registered = await register(
        server, email=email, loginName=login_name, displayName=f"Sekoitus {n}"
    )
    assert registered["__typename"] == "RegisterSuccess", registered
    link = await emailed_token(server, email.lower(), "verify")
    verified = await server.gql(VERIFY_EMAIL, {"token": link})
    assert verified["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess", verified
    row = await Member.get(login_key=login_name)
    for typed in (email, email.lower(), email.upper(), email.swapcase()):
        result = await login(server, typed)
        assert result["__typename"] == "LoginSuccess", (typed, result)
        assert result["me"]["loginName"] == login_name
        assert GlobalID.from_id(result["me"]["id"]).node_id == str(row.id)
    assert await Session.filter(member_id=row.id).count() == 4


async def test_session_token_is_opaque_256_bits_and_only_its_hash_is_stored(
    server: Server,
) -> None:
    account = await member(server)
    result = await login(server, account.login_name)
    assert result["__typename"] == "LoginSuccess", result
    tokens = [account.token, result["token"]]
    assert tokens[0] != tokens[1]
    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) == 32, token  # 256 bits of randomness
        row = await session_row(token)
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.member_id == account.member_id  # type: ignore[attr-defined]
    # The raw token is nowhere in either register.
    for register_name in ("community", "contacts"):
        values = await dbtools.text_values(register_name)
        for token in tokens:
            assert not any(token in value for value in values), register_name
    # The session ends at the absolute limit after login.
    expires = parse_time(result["expiresAt"])
    expected = clock.now() + timedelta(days=server.settings.session_absolute_days)
    assert abs((expires - expected).total_seconds()) < 120


async def test_logout_ends_this_session_only(server: Server) -> None:
    account = await member(server)
    other = await sign_in(server, account.login_name)
    body = await server.gql(LOGOUT, token=account.token)
    assert body["data"]["logout"] == {"__typename": "Done", "ok": True}, body
    assert await session_row(account.token) is None
    # The token no longer authenticates: `me` is null, mutations are refused.
    assert await me_of(server, account.token) is None
    assert_unauthenticated(await server.gql(LOGOUT, token=account.token))
    assert_unauthenticated(await server.gql(LOGOUT_EVERYWHERE, token=account.token))
    # The member's other session lives on.
    me = await me_of(server, other)
    assert me is not None and me["id"] == account.gid
    assert await Session.filter(member_id=account.member_id).count() == 1


async def test_no_token_or_unknown_token_is_anonymous(server: Server) -> None:
    await member(server)
    assert (await server.gql(ME))["data"]["me"] is None
    assert await me_of(server, "not-a-real-session-token") is None
    assert_unauthenticated(await server.gql(LOGOUT))
    assert_unauthenticated(await server.gql(LOGOUT, token="not-a-real-session-token"))


# --------------------------------------------------------------------------- expiry


async def test_session_expires_after_idle_time(server: Server) -> None:
    override_settings(replace(server.settings, session_idle_minutes=30))
    account = await member(server)
    row = await session_row(account.token)
    assert row is not None
    # Used within the idle limit, the session stays (and each use restarts the idle time).
    for _ in range(3):
        clock.move(timedelta(minutes=29))
        me = await me_of(server, account.token)
        assert me is not None and me["id"] == account.gid
    stored = await Session.get(id=row.id)
    assert stored.last_seen_at > row.last_seen_at + timedelta(minutes=80)
    # Left alone past the idle limit, it ends.
    clock.move(timedelta(minutes=31))
    assert await me_of(server, account.token) is None
    assert_unauthenticated(await server.gql(LOGOUT, token=account.token))
    assert not await Session.filter(id=row.id).exists()


async def test_session_expires_at_absolute_limit_even_when_used(server: Server) -> None:
    override_settings(
        replace(server.settings, session_idle_minutes=12 * 60, session_absolute_days=2)
    )
    account = await member(server)
    row = await session_row(account.token)
    assert row is not None
    assert abs((row.expires_at - (row.created_at + timedelta(days=2))).total_seconds()) < 120
    # Used every 11 hours, never idle for long: alive for 44 hours.
    for _ in range(4):
        clock.move(timedelta(hours=11))
        me = await me_of(server, account.token)
        assert me is not None and me["id"] == account.gid
    # 49 hours after sign-in, only 5 idle hours, but past the absolute limit of 2 days.
    clock.move(timedelta(hours=5))
    assert await me_of(server, account.token) is None
    assert_unauthenticated(await server.gql(LOGOUT, token=account.token))
    assert not await Session.filter(id=row.id).exists()
    # Signing in again starts a fresh session.
    fresh = await sign_in(server, account.login_name)
    assert await me_of(server, fresh) is not None


# --------------------------------------------------------------------------- listing


async def test_sessions_list_marks_current_and_paginates(server: Server) -> None:
    account = await member(server)
    tokens = [account.token] + [await sign_in(server, account.login_name) for _ in range(4)]
    outsider = await member(server)
    rows = {t: await session_row(t) for t in tokens}
    expected_ids = {session_gid(r) for r in rows.values() if r is not None}
    assert len(expected_ids) == 5

    caller = tokens[2]
    nodes = await all_sessions(server, caller, page=2)
    assert len(nodes) == 5
    assert {n["id"] for n in nodes} == expected_ids  # each exactly once, no other member's
    assert all(n["__typename"] == "Session" for n in nodes)
    current = [n for n in nodes if n["current"]]
    caller_row = rows[caller]
    assert caller_row is not None
    assert [n["id"] for n in current] == [session_gid(caller_row)]
    for node in nodes:
        assert parse_time(node["lastSeenAt"]) <= clock.now() + timedelta(seconds=5)

    # First page: two of five, with a next page and a cursor.
    body = await server.gql(MY_SESSIONS, {"first": 2}, token=caller)
    page = body["data"]["me"]["sessions"]
    assert len(page["edges"]) == 2
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    # One page holding everything has no next page.
    body = await server.gql(MY_SESSIONS, {"first": 5}, token=caller)
    assert body["data"]["me"]["sessions"]["pageInfo"]["hasNextPage"] is False
    assert len(body["data"]["me"]["sessions"]["edges"]) == 5

    # Another member sees only their own session.
    theirs = await all_sessions(server, outsider.token, page=10)
    outsider_row = await session_row(outsider.token)
    assert outsider_row is not None
    assert [(n["id"], n["current"]) for n in theirs] == [(session_gid(outsider_row), True)]


async def test_sessions_last_seen_moves_with_use(server: Server) -> None:
    account = await member(server)
    second = await sign_in(server, account.login_name)
    clock.move(timedelta(hours=3))
    before = {n["id"]: parse_time(n["lastSeenAt"]) for n in await all_sessions(server, second, 10)}
    row = await session_row(second)
    assert row is not None
    used = before[session_gid(row)]
    # The session in use was just seen (now, on the moved clock); the other three hours ago.
    assert abs((used - clock.now()).total_seconds()) < 60
    first_row = await session_row(account.token)
    assert first_row is not None
    assert clock.now() - before[session_gid(first_row)] > timedelta(hours=2, minutes=50)


async def test_sessions_first_over_100_is_refused(server: Server) -> None:
    account = await member(server)
    body = await server.gql(MY_SESSIONS, {"first": 101}, token=account.token)
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    body = await server.gql(MY_SESSIONS, {"first": 100}, token=account.token)
    assert "errors" not in body, body
    assert len(body["data"]["me"]["sessions"]["edges"]) == 1


# --------------------------------------------------------------------------- revoking


async def test_revoke_session_ends_one_of_my_sessions(server: Server) -> None:
    account = await member(server)
    phone = await sign_in(server, account.login_name)
    laptop = await sign_in(server, account.login_name)
    phone_row = await session_row(phone)
    assert phone_row is not None
    body = await server.gql(REVOKE_SESSION, {"id": session_gid(phone_row)}, token=account.token)
    assert body["data"]["revokeSession"] == {"__typename": "Done", "ok": True}, body
    assert not await Session.filter(id=phone_row.id).exists()
    assert await me_of(server, phone) is None
    assert_unauthenticated(await server.gql(LOGOUT, token=phone))
    # The caller's and the third session live on.
    assert await me_of(server, account.token) is not None
    assert await me_of(server, laptop) is not None
    listed = {n["id"] for n in await all_sessions(server, account.token, 10)}
    assert session_gid(phone_row) not in listed
    assert len(listed) == 2
    # Revoking it again: it is gone.
    body = await server.gql(REVOKE_SESSION, {"id": session_gid(phone_row)}, token=account.token)
    assert body["data"]["revokeSession"]["code"] == "NOT_FOUND", body


async def test_revoke_session_of_another_member_is_not_found(server: Server) -> None:
    me = await member(server)
    victim = await member(server)
    victim_row = await session_row(victim.token)
    assert victim_row is not None
    body = await server.gql(REVOKE_SESSION, {"id": session_gid(victim_row)}, token=me.token)
    result = body["data"]["revokeSession"]
    assert result["__typename"] == "NotAllowedError", body
    assert result["code"] == "NOT_FOUND", body
    # The other member's session is untouched and still works.
    assert await Session.filter(id=victim_row.id).exists()
    alive = await me_of(server, victim.token)
    assert alive is not None and alive["id"] == victim.gid
    # And the answer is the same as for an id that does not exist at all.
    missing = str(GlobalID("Session", str(victim_row.id + 1000)))
    body = await server.gql(REVOKE_SESSION, {"id": missing}, token=me.token)
    assert body["data"]["revokeSession"] == result


async def test_revoke_session_needs_sign_in(server: Server) -> None:
    account = await member(server)
    row = await session_row(account.token)
    assert row is not None
    assert_unauthenticated(await server.gql(REVOKE_SESSION, {"id": session_gid(row)}))
    assert await Session.filter(id=row.id).exists()


async def test_logout_everywhere_ends_all_my_sessions(server: Server) -> None:
    account = await member(server)
    tokens = [account.token] + [await sign_in(server, account.login_name) for _ in range(2)]
    bystander = await member(server)
    body = await server.gql(LOGOUT_EVERYWHERE, token=tokens[1])
    assert body["data"]["logoutEverywhere"] == {"__typename": "Done", "ok": True}, body
    assert await Session.filter(member_id=account.member_id).count() == 0
    for token in tokens:
        assert await me_of(server, token) is None
        assert_unauthenticated(await server.gql(LOGOUT, token=token))
    # Nobody else is signed out.
    assert await me_of(server, bystander.token) is not None
    # Signing in again works.
    assert await me_of(server, await sign_in(server, account.login_name)) is not None


# --------------------------------------------------------------------------- password change


async def test_change_password_ends_other_sessions_keeps_current(server: Server) -> None:
    account = await member(server)
    others = [await sign_in(server, account.login_name) for _ in range(2)]
    bystander = await member(server)

    # A wrong current password changes nothing and ends nothing.
    body = await server.gql(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": "not my password at all", "newPassword": NEW_PASSWORD}},
        token=account.token,
    )
    assert body["data"]["changePassword"]["code"] == "WRONG_PASSWORD", body
    assert await Session.filter(member_id=account.member_id).count() == 3

    body = await server.gql(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}},
        token=account.token,
    )
    assert body["data"]["changePassword"] == {"__typename": "Done", "ok": True}, body
    for token in others:
        assert await me_of(server, token) is None
        assert_unauthenticated(await server.gql(LOGOUT, token=token))
    me = await me_of(server, account.token)
    assert me is not None and me["id"] == account.gid
    current = await session_row(account.token)
    assert current is not None
    assert [s.id for s in await Session.filter(member_id=account.member_id)] == [current.id]
    assert await me_of(server, bystander.token) is not None
    row = await Member.get(id=account.member_id)
    assert row.password_changed_at is not None
    # The old password no longer signs in; the new one does.
    assert_invalid_credentials(await login(server, account.login_name, PASSWORD))
    assert await me_of(server, await sign_in(server, account.login_name, NEW_PASSWORD))


# --------------------------------------------------------------------------- neutral failures


async def test_every_failed_login_gives_the_same_answer(server: Server) -> None:
    active = await member(server)
    assert active.email is not None
    # Registered but never verified: the right password is still refused.
    n = unique("")
    pending_email, pending_login = f"pending{n}@example.com", f"pending{n}"
    registered = await register(
        server, email=pending_email, loginName=pending_login, displayName=f"Odottaja {n}"
    )
    assert registered["__typename"] == "RegisterSuccess", registered
    pending = await Member.get(login_key=pending_login)
    assert pending.status == MemberStatus.PENDING
    # Resigned: the old credentials are refused.
    resigned = await member(server)
    assert resigned.email is not None
    body = await server.gql(RESIGN, {"password": PASSWORD}, token=resigned.token)
    assert body["data"]["resign"]["__typename"] == "Done", body

    attempts = [
        (active.login_name, "wrong password entirely"),
        (active.email, "wrong password entirely"),
        (unique("nosuchlogin"), PASSWORD),
        (f"{unique('nobody')}@example.com", PASSWORD),
        (pending_login, PASSWORD),
        (pending_email, PASSWORD),
        (resigned.login_name, PASSWORD),
        (resigned.email, PASSWORD),
    ]
    answers = []
    for identifier, password in attempts:
        result = await login(server, identifier, password)
        assert_invalid_credentials(result)
        answers.append(result)
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["message"]
    # The same holds in another interface language.
    english = []
    for identifier, password in attempts[:1] + attempts[2:3] + attempts[4:5] + attempts[6:7]:
        body = await server.gql(
            LOGIN, {"login": identifier, "password": password}, headers={"Accept-Language": "en"}
        )
        english.append(body["data"]["login"])
    assert all(a == english[0] for a in english), english
    assert english[0]["code"] == "INVALID_CREDENTIALS"
    assert english[0]["message"] != answers[0]["message"]
    # No session was made for any of them.
    assert await Session.filter(member_id=pending.id).count() == 0
    assert await Session.filter(member_id=resigned.member_id).count() == 0
    assert await Session.filter(member_id=active.member_id).count() == 1


async def test_unknown_account_takes_as_long_as_wrong_password(server: Server) -> None:
    override_settings(
        replace(server.settings, login_max_failures_account=1000, login_max_failures_address=1000)
    )
    account = await member(server)
    assert account.email is not None

    async def timed(identifier: str) -> float:
        start = time.perf_counter()
        result = await login(server, identifier, "definitely the wrong password")
        elapsed = time.perf_counter() - start
        assert_invalid_credentials(result)
        return elapsed

    await timed(account.login_name)  # warm up
    await timed("nosuchmember")
    existing: list[float] = []
    unknown_name: list[float] = []
    unknown_email: list[float] = []
    for i in range(7):  # interleaved, so drift in machine load hits all alike
        existing.append(await timed(account.login_name))
        unknown_name.append(await timed(f"nosuchmember{i}"))
        existing.append(await timed(account.email))
        unknown_email.append(await timed(f"nosuchmember{i}@example.com"))
    reference = statistics.median(existing)
    assert statistics.median(unknown_name) >= 0.5 * reference, (existing, unknown_name)
    assert statistics.median(unknown_email) >= 0.5 * reference, (existing, unknown_email)


# --------------------------------------------------------------------------- throttling


async def test_account_throttle_refuses_even_the_right_password_until_window_passes(
    server: Server,
) -> None:
    window = 600
    override_settings(
        replace(server.settings, login_max_failures_account=3, login_window_seconds=window)
    )
    account = await member(server)
    bystander = await member(server)
    for _ in range(3):
        assert_invalid_credentials(await login(server, account.login_name, "wrong password x1"))
    # The fourth attempt is refused before the password is even looked at.
    assert_rate_limited(await login(server, account.login_name, PASSWORD), window)
    assert_rate_limited(await login(server, account.login_name.upper(), PASSWORD), window)
    assert_rate_limited(await login(server, account.login_name, "wrong password x1"), window)
    assert await Session.filter(member_id=account.member_id).count() == 1
    # Only that account is throttled: another member signs in from the same address.
    assert await me_of(server, await sign_in(server, bystander.login_name)) is not None
    # The stored counters are keyed hashes, never the login name itself.
    keys = [row.key for row in await LoginThrottle.all()]
    assert keys and all(len(k) == 64 and account.login_name not in k for k in keys)
    # Still refused just before the window ends; allowed after it.
    clock.move(timedelta(seconds=window - 30))
    limited = await login(server, account.login_name, PASSWORD)
    assert_rate_limited(limited, window)
    assert limited["retryAfterSeconds"] <= 30
    clock.move(timedelta(seconds=31))
    assert await me_of(server, await sign_in(server, account.login_name)) is not None


async def test_account_throttle_counts_login_name_and_email_together(server: Server) -> None:
    window = 600
    override_settings(
        replace(server.settings, login_max_failures_account=3, login_window_seconds=window)
    )
    account = await member(server)
    assert account.email is not None
    # Three failures on the same account, typed three different ways.
    for typed in (account.login_name, account.login_name.upper(), account.email.upper()):
        assert_invalid_credentials(await login(server, typed, "wrong password x2"))
    assert_rate_limited(await login(server, account.login_name, PASSWORD), window)
    assert_rate_limited(await login(server, account.email, PASSWORD), window)


async def test_successful_login_resets_account_failures(server: Server) -> None:
    override_settings(replace(server.settings, login_max_failures_account=3))
    account = await member(server)
    for _ in range(2):
        assert_invalid_credentials(await login(server, account.login_name, "wrong password x3"))
    await sign_in(server, account.login_name)
    for _ in range(2):
        assert_invalid_credentials(await login(server, account.login_name, "wrong password x3"))
    assert await me_of(server, await sign_in(server, account.login_name)) is not None


async def test_address_throttle_across_many_accounts(server: Server) -> None:
    window = 900
    override_settings(
        replace(
            server.settings,
            login_max_failures_account=50,
            login_max_failures_address=4,
            login_window_seconds=window,
        )
    )
    account = await member(server)
    # Four failures from this client, each on a different (mostly nonexistent) account.
    for identifier in (
        unique("ghost"),
        f"{unique('ghost')}@example.com",
        unique("phantom"),
        account.login_name,
    ):
        assert_invalid_credentials(await login(server, identifier, "wrong password x4"))
    # Now every sign-in from this client is refused, even a real one with the right password.
    assert_rate_limited(await login(server, account.login_name, PASSWORD), window)
    assert_rate_limited(await login(server, unique("yetanother"), PASSWORD), window)
    assert await Session.filter(member_id=account.member_id).count() == 1
    # After the window the client may try again.
    clock.move(timedelta(seconds=window + 1))
    assert await me_of(server, await sign_in(server, account.login_name)) is not None
