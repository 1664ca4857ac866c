"""The moderators' live feed (`moderationFeed`) and moderation across two workers.

Covers: what each kind of entry carries (new posts, reports without their
reporters, the hold at the third report, another moderator's decisions,
thread and member actions), positions that grow by one, resuming after a
position with no gap and no duplicate (also while posts arrive, and when
many members post at once), who may subscribe (moderators and admins only;
never an email address in an entry), the end of the stream when the
moderator's session ends, and, on PostgreSQL + Redis, a second server
process on the same databases: reports, removals and bans made there reach
the feed, the thread streams and the websockets of this worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from models.moderation import ModerationCounter, ModerationEvent
from tests.conftest import BACKEND, Server
from tests.helpers import LOGOUT, Account, me_of, member, sign_in, staff
from tests.test_moderation import (
    NOTIFICATIONS_SUBSCRIPTION,
    POST_FIELDS,
    THREAD_EVENTS,
    add_post,
    allow_many_posts,
    create_area,
    db_id,
    decided,
    posted,
    reported,
    start_thread,
    wait_listeners,
    world,
    ws_client,
)
from tests.test_two_workers import start_worker, stop_worker
from tests.ws import WsClient

FEED = f"""
subscription Feed($after: Int) {{
  moderationFeed(after: $after) {{
    __typename position kind at threadId category decision action check detail until reports
    post {{ {POST_FIELDS} }}
    member {{ id displayName isFormerMember staffBadge }}
    actor {{ id displayName isFormerMember staffBadge }}
  }}
}}
"""

MODERATE_THREAD = """
mutation ModerateThread($input: ModerateThreadInput!) {
  moderateThread(input: $input) {
    __typename
    ... on ModerateThreadSuccess { applied thread { id } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

MODERATE_MEMBER = """
mutation ModerateMember($input: ModerateMemberInput!) {
  moderateMember(input: $input) {
    __typename
    ... on ModerateMemberSuccess { applied sanction { id kind } record { status } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

two_workers = pytest.mark.skipif(
    BACKEND != "postgres", reason="two workers share a Redis bus: PostgreSQL backend only"
)


# ---------------------------------------------------------------- helpers


@asynccontextmanager
async def feed(
    server: Server, account: Account, after: int | None = None
) -> AsyncIterator[WsClient]:
    """A websocket of `account` subscribed to moderationFeed (op id "feed"), listening."""
    async with ws_client(server, account.token) as client:
        await client.subscribe("feed", FEED, {} if after is None else {"after": after})
        await wait_listeners(server, f"member:{account.member_id}")
        yield client


async def entry(client: WsClient, timeout: float = 5.0) -> dict[str, Any]:
    """The next feed entry; never holding an email address."""
    event: dict[str, Any] = await client.next_data("feed", "moderationFeed", timeout)
    assert event["__typename"] == "ModerationFeedEvent", event
    assert "@" not in json.dumps(event), event
    return event


async def entries_until(client: WsClient, position: int) -> list[dict[str, Any]]:
    """Entries received until (and including) the one at `position`."""
    out = [await entry(client)]
    while out[-1]["position"] < position:
        out.append(await entry(client))
    return out


async def moderate_thread(server: Server, account: Account, thread: str, action: str) -> None:
    body = await server.gql(
        MODERATE_THREAD, {"input": {"threadId": thread, "action": action}}, token=account.token
    )
    assert "errors" not in body, body
    result = body["data"]["moderateThread"]
    assert result["__typename"] == "ModerateThreadSuccess" and result["applied"], result


async def moderate_member(
    server: Server, account: Account, target: Account, action: str, category: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"memberId": target.gid, "action": action, "note": "Sääntörikkomus"}
    if category is not None:
        data["category"] = category
    body = await server.gql(MODERATE_MEMBER, {"input": data}, token=account.token)
    assert "errors" not in body, body
    assert "@" not in json.dumps(body), body
    result: dict[str, Any] = body["data"]["moderateMember"]
    assert result["__typename"] == "ModerateMemberSuccess" and result["applied"], result
    return result


async def stored_positions() -> list[int]:
    rows = await ModerationEvent.all().order_by("position")
    return [row.position for row in rows]


async def stream_end(client: WsClient, op_id: str = "feed") -> list[dict[str, Any]]:
    """Read until `op_id` ends (error or complete); its errors. Asserts no entry came first."""
    errors: list[dict[str, Any]] = []
    while True:
        message = await client.receive()
        assert message["id"] == op_id, message
        if message["type"] == "complete":
            return errors
        if message["type"] == "error":
            return [*errors, *message["payload"]]
        assert message["type"] == "next" and message["payload"].get("data") is None, message
        errors.extend(message["payload"]["errors"])


async def close_code(client: WsClient, seconds: float) -> int | None:
    """Wait (at most `seconds`) for the server to close the socket; its close code."""
    try:
        async with asyncio.timeout(seconds):
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await client.receive(timeout=seconds)
    except TimeoutError:
        raise AssertionError(f"the socket was not closed within {seconds} s") from None
    return client.ws.close_code


@pytest_asyncio.fixture
async def server_b(server: Server, tmp_path: Path) -> AsyncIterator[Server]:
    """Worker B: `community serve` in its own process on this run's databases and Redis.

    Answers like `server` (same helpers), but over worker B's HTTP port.
    """
    if BACKEND != "postgres":
        pytest.skip("two workers share a Redis bus: PostgreSQL backend only")
    s = server.settings
    env = dict(os.environ)
    env.update(
        COMMUNITY_ENV="test",
        COMMUNITY_DB_URL=s.community_db_url,
        CONTACTS_DB_URL=s.contacts_db_url,
        BROADCAST_URL=s.broadcast_url,
        BROADCAST_CHANNEL_PREFIX=s.channel_prefix,
        MAIL_WORKER="false",  # worker A (this process) delivers the outbox
        MAIL_DIR=str(tmp_path / "mail"),
        PUBLIC_BASE_URL=s.public_base_url,
        REPEAT_POST_MINUTES="0",
        NEW_MEMBER_LINK_POSTS="0",
        LOG_LEVEL="warning",
    )
    worker = await start_worker("B", env, tmp_path)
    try:
        yield replace(
            server, url=f"http://127.0.0.1:{worker.port}", ws_url=worker.ws_url, http=worker.http
        )
    finally:
        await stop_worker(worker)


# ---------------------------------------------------------------- what the feed shows


async def test_feed_shows_posts_reports_holds_decisions_and_actions_in_order(
    server: Server,
) -> None:
    """Every kind of entry arrives live with its fields, at positions growing by one.

    A new post (POST_ADDED with the post, its author's pseudonym and thread), two
    reports (REPORT: category and open reports, never the reporter), the third
    distinct report (POST_HELD, check "reports"), another moderator's removal
    (POST_DECISION with that moderator as actor), a thread lock (THREAD_ACTION)
    and a warning (MEMBER_ACTION). The stored log matches, and names no reporter.
    """
    w = await world(server)
    mod2 = await staff(server, "moderator")
    reporters = [await member(server, displayName=f"Ilmoittaja {c}") for c in "XYZ"]
    categories = ["MISINFORMATION", "SELLING", "OFFENSIVE"]
    async with feed(server, w.mod) as client:
        post = await posted(server, w.author, w.thread, "Uusi viesti")
        added = await entry(client)
        assert added["kind"] == "POST_ADDED" and added["position"] == 2, added
        assert added["post"]["id"] == post and added["post"]["body"] == "Uusi viesti", added
        assert added["post"]["author"]["displayName"] == w.author.display_name
        assert added["member"]["id"] == w.author.gid, added
        assert added["member"]["displayName"] == w.author.display_name, added
        assert added["threadId"] == w.thread and added["actor"] is None, added
        assert added["check"] is None and added["reports"] is None, added

        reports = []
        for reporter, category in zip(reporters, categories, strict=True):
            await reported(server, reporter, post, category, note="Katsokaa tätä")
            reports.append(await entry(client))
        for n, (got, category) in enumerate(zip(reports, categories, strict=True), start=1):
            assert got["kind"] == ("POST_HELD" if n == 3 else "REPORT"), got
            assert got["category"] == category and got["reports"] == n, got
            assert got["post"]["id"] == post and got["threadId"] == w.thread, got
            assert got["member"]["id"] == w.author.gid and got["actor"] is None, got
        assert reports[0]["check"] is None and reports[1]["check"] is None, reports
        assert reports[2]["check"] == "reports", reports[2]
        assert reports[2]["post"]["pending"] is True, reports[2]

        await decided(server, mod2, post, "REMOVE", "OFFENSIVE", "Asiaton")
        decision = await entry(client)
        assert decision["kind"] == "POST_DECISION", decision
        assert decision["decision"] == "REMOVE" and decision["category"] == "OFFENSIVE", decision
        assert decision["actor"]["id"] == mod2.gid, decision
        assert decision["actor"]["displayName"] == mod2.display_name, decision
        assert decision["actor"]["staffBadge"] == "MODERATOR", decision
        assert decision["member"]["id"] == w.author.gid and decision["post"]["id"] == post

        await moderate_thread(server, mod2, w.thread, "LOCK")
        locked = await entry(client)
        assert locked["kind"] == "THREAD_ACTION" and locked["action"] == "lock", locked
        assert locked["threadId"] == w.thread and locked["post"] is None, locked
        assert locked["actor"]["id"] == mod2.gid and locked["member"]["id"] == w.author.gid

        await moderate_member(server, mod2, w.author, "WARN", "SPAM_OR_TROLLING")
        warned = await entry(client)
        assert warned["kind"] == "MEMBER_ACTION" and warned["action"] == "warn", warned
        assert warned["category"] == "SPAM_OR_TROLLING" and warned["until"] is None, warned
        assert warned["member"]["id"] == w.author.gid, warned
        assert warned["actor"]["displayName"] == mod2.display_name, warned
        assert warned["post"] is None and warned["threadId"] is None, warned

        seen = [added, *reports, decision, locked, warned]
        assert [e["position"] for e in seen] == list(range(2, 9))
        await client.expect_silence(0.3)

    # No reporter is named anywhere in the feed, nor in the stored log.
    text = json.dumps(seen)
    for reporter in reporters:
        assert reporter.gid not in text and reporter.display_name not in text
        assert reporter.login_name not in text
    rows = await ModerationEvent.all().order_by("position")
    assert [r.position for r in rows] == list(range(1, 9))
    assert [r.kind.value for r in rows] == [
        "post_added",
        "post_added",
        "report",
        "report",
        "post_held",
        "post_decision",
        "thread_action",
        "member_action",
    ]
    reporter_ids = {r.member_id for r in reporters}
    for row in rows:
        assert row.member_id not in reporter_ids and row.actor_id not in reporter_ids, row
        assert "reporter" not in json.dumps(row.details), row.details
    assert (await ModerationCounter.get(id=1)).last_position == 8


# ---------------------------------------------------------------- resuming


async def test_resuming_after_a_position_replays_each_missed_entry_once_then_goes_live(
    server: Server,
) -> None:
    """A feed reopened with `after` gets what it missed, in order, once, then live entries.

    Posts written while it re-subscribes are neither lost nor repeated; after=0
    replays the whole log.
    """
    allow_many_posts(server)
    w = await world(server)
    reporter = await member(server)
    async with feed(server, w.mod) as client:
        first = await posted(server, w.author, w.thread, "Ensimmäinen")
        seen = await entry(client)
        assert seen["post"]["id"] == first and seen["position"] == 2, seen
    last = seen["position"]

    # While nobody listens: a post, a report, a pin, another post.
    second = await posted(server, w.author, w.thread, "Toinen")
    await reported(server, reporter, second, "SELLING")
    await moderate_thread(server, w.mod, w.thread, "PIN")
    third = await posted(server, w.author, w.thread, "Kolmas")

    async with ws_client(server, w.mod.token) as client:
        await client.subscribe("feed", FEED, {"after": last})
        # Posts racing the replay-to-live switch-over.
        racing = await asyncio.gather(
            *(posted(server, w.author, w.thread, f"Samaan aikaan {i}") for i in range(6))
        )
        got = await entries_until(client, last + 10)
        assert [e["position"] for e in got] == list(range(last + 1, last + 11))
        assert [e["kind"] for e in got[:4]] == [
            "POST_ADDED",
            "REPORT",
            "THREAD_ACTION",
            "POST_ADDED",
        ]
        assert got[0]["post"]["id"] == second and got[1]["post"]["id"] == second
        assert got[2]["action"] == "pin" and got[3]["post"]["id"] == third
        assert sorted(e["post"]["id"] for e in got[4:]) == sorted(racing)
        await wait_listeners(server, f"member:{w.mod.member_id}")
        live = await posted(server, w.author, w.thread, "Elävänä")
        after_resume = await entry(client)
        assert after_resume["position"] == last + 11 and after_resume["post"]["id"] == live
        await client.expect_silence(0.5)

    async with feed(server, w.mod, after=0) as client:
        everything = await entries_until(client, last + 11)
        assert [e["position"] for e in everything] == list(range(1, last + 12))
        assert everything[0]["kind"] == "POST_ADDED" and everything[0]["post"]["id"] == w.post
        await client.expect_silence(0.3)
    assert await stored_positions() == list(range(1, last + 12))


async def test_positions_stay_gap_free_when_many_members_write_at_once(server: Server) -> None:
    """Concurrent thread starts (the first entries) and ~20 concurrent posts by several
    members get positions 1..n with no gap; a live feed sees each once, in order."""
    allow_many_posts(server)
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    area = await create_area(server, admin)
    writers = [await member(server) for _ in range(4)]
    # The very first entries race to create the counter.
    started = await asyncio.gather(
        *(start_thread(server, m, area, f"Aloitus {i}") for i, m in enumerate(writers))
    )
    assert await stored_positions() == [1, 2, 3, 4]
    threads = [thread for thread, _ in started]

    async with feed(server, mod) as client:
        answers = await asyncio.gather(
            *(
                add_post(server, m, threads[(i + n) % 2], f"Viesti {i}-{n}")
                for i, m in enumerate(writers)
                for n in range(5)
            )
        )
        assert all(a["__typename"] == "PostSuccess" for a in answers), answers
        post_ids = [a["post"]["id"] for a in answers]
        got = await entries_until(client, 24)
        assert [e["position"] for e in got] == list(range(5, 25))
        assert all(e["kind"] == "POST_ADDED" for e in got)
        assert sorted(e["post"]["id"] for e in got) == sorted(post_ids)
        await client.expect_silence(0.3)

    assert await stored_positions() == list(range(1, 25))
    assert (await ModerationCounter.get(id=1)).last_position == 24
    async with feed(server, mod, after=0) as client:
        replayed = await entries_until(client, 24)
        assert [e["position"] for e in replayed] == list(range(1, 25))


# ---------------------------------------------------------------- who may subscribe


async def test_only_moderators_and_admins_get_the_feed_and_it_holds_no_email(
    server: Server,
) -> None:
    """A member, a researcher and an anonymous socket are refused and get no entries;
    an admin gets them, and no entry (a ban's included) holds an email address."""
    w = await world(server)
    researcher = await staff(server, "researcher")
    bystander = await member(server)
    reporter = await member(server)
    refused = {"member": w.author.token, "researcher": researcher.token, "anonymous": ""}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            who: await stack.enter_async_context(ws_client(server, token))
            for who, token in refused.items()
        }
        for who, client in clients.items():
            await client.subscribe("feed", FEED, {})
            errors = await client.refusal("feed")
            code = "UNAUTHENTICATED" if who == "anonymous" else "FORBIDDEN"
            assert [e["extensions"]["code"] for e in errors] == [code], (who, errors)
        admin_feed = await stack.enter_async_context(feed(server, w.admin))

        post = await posted(server, w.author, w.thread, "Näkyykö tämä")
        await reported(server, reporter, post, "PERSONAL_DATA")
        await decided(server, w.mod, post, "REMOVE", "PERSONAL_DATA")
        await moderate_member(server, w.mod, bystander, "BAN", "SPAM_OR_TROLLING")
        got = await entries_until(admin_feed, 5)
        assert [e["kind"] for e in got] == [
            "POST_ADDED",
            "REPORT",
            "POST_DECISION",
            "MEMBER_ACTION",
        ]
        assert got[-1]["action"] == "ban" and got[-1]["member"]["id"] == bystander.gid, got[-1]
        for client in clients.values():
            await client.expect_silence(0.2)
    assert bystander.email is not None and "@" in bystander.email


# ---------------------------------------------------------------- the session ends


async def test_the_feed_ends_when_the_moderators_session_ends(server: Server) -> None:
    """Signing out another session of the moderator leaves the feed running; signing out
    the feed's own session ends it (SESSION_ENDED or completion), with no more entries."""
    w = await world(server)
    other_session = await sign_in(server, w.mod.login_name)
    other_mod = await staff(server, "moderator")
    async with feed(server, w.mod) as client, feed(server, other_mod) as other_client:
        body = await server.gql(LOGOUT, token=other_session)
        assert body["data"]["logout"]["__typename"] == "Done", body
        await posted(server, w.author, w.thread, "Yhä auki")
        assert (await entry(client))["position"] == 2
        assert (await entry(other_client))["position"] == 2

        body = await server.gql(LOGOUT, token=w.mod.token)
        assert body["data"]["logout"]["__typename"] == "Done", body
        async with asyncio.timeout(3):
            errors = await stream_end(client)
        assert [e["extensions"]["code"] for e in errors] in ([], ["SESSION_ENDED"]), errors
        await posted(server, w.author, w.thread, "Suljettu")
        assert (await entry(other_client))["position"] == 3
        await client.expect_silence(0.3)


# ---------------------------------------------------------------- two workers


@two_workers
async def test_a_report_filed_on_another_worker_reaches_the_feed(
    server: Server, server_b: Server
) -> None:
    """A moderator's feed on worker A shows, within seconds, a post and a report made on B."""
    w = await world(server)
    reporter = await member(server)
    async with feed(server, w.mod) as client:
        post = await posted(server_b, w.author, w.thread, "Kirjoitettu B:ssä")
        added = await entry(client)
        assert added["kind"] == "POST_ADDED" and added["post"]["id"] == post, added
        assert added["post"]["body"] == "Kirjoitettu B:ssä"
        await reported(server_b, reporter, post, "SELLING")
        got = await entry(client)
        assert got["kind"] == "REPORT" and got["position"] == added["position"] + 1, got
        assert got["category"] == "SELLING" and got["reports"] == 1, got
        assert got["post"]["id"] == post and got["actor"] is None, got
        assert reporter.gid not in json.dumps(got)


@two_workers
async def test_a_removal_on_another_worker_drops_the_text_from_live_and_replayed_streams(
    server: Server, server_b: Server
) -> None:
    """A member following a thread on A sees POST_REMOVED (no text) when a moderator on B
    removes a post; neither that stream nor a replay from position 0 carries the text again."""
    w = await world(server)
    bob = await member(server)
    carol = await member(server)
    secret = "Poistettava salaisuus"
    thread_channel = f"thread:{db_id(w.thread, 'Thread')}"
    async with ws_client(server, bob.token) as bob_ws, feed(server, w.mod) as mod_feed:
        await bob_ws.subscribe("events", THREAD_EVENTS, {"threadId": w.thread})
        await wait_listeners(server, thread_channel)
        post = await posted(server, w.author, w.thread, secret)
        added = await bob_ws.next_event()
        assert added["post"]["id"] == post and added["post"]["body"] == secret, added
        assert (await entry(mod_feed))["kind"] == "POST_ADDED"

        await decided(server_b, w.mod, post, "REMOVE", "OFFENSIVE")
        removed = await bob_ws.next_event()
        assert removed["kind"] == "POST_REMOVED" and removed["post"]["id"] == post, removed
        assert removed["position"] == added["position"] + 1, removed
        assert removed["post"]["body"] is None and removed["post"]["bodyHtml"] is None, removed
        assert removed["post"]["removedByModerator"] is True, removed
        decision = await entry(mod_feed)
        assert decision["kind"] == "POST_DECISION" and decision["actor"]["id"] == w.mod.gid

        # A replay on A while the thread's feed is still open there.
        async with ws_client(server, carol.token) as carol_ws:
            await carol_ws.subscribe("events", THREAD_EVENTS, {"threadId": w.thread, "after": 0})
            replayed = await carol_ws.events_until(removed["position"])
            assert [e["position"] for e in replayed] == list(range(1, removed["position"] + 1))
            assert secret not in json.dumps(replayed), replayed
            again = [e for e in replayed if e["post"]["id"] == post]
            assert [e["kind"] for e in again] == ["POST_ADDED", "POST_REMOVED"], again
            assert all(e["post"]["body"] is None for e in again), again
            await carol_ws.expect_silence(0.3)
        await posted(server, w.author, w.thread, "Jatkoa")
        later = await bob_ws.next_event()
        assert later["position"] == removed["position"] + 1 and secret not in json.dumps(later)
        await bob_ws.expect_silence(0.3)


@two_workers
async def test_a_ban_on_another_worker_closes_the_members_socket_within_a_second(
    server: Server, server_b: Server
) -> None:
    """Banning a member on worker B closes their websocket on worker A with 4403 within
    a second; the moderator's feed on A shows the ban, and the token no longer works."""
    w = await world(server)
    victim = await member(server)
    async with ws_client(server, victim.token) as victim_ws, feed(server, w.mod) as mod_feed:
        await victim_ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await victim_ws.subscribe("events", THREAD_EVENTS, {"threadId": w.thread})
        await wait_listeners(server, f"thread:{db_id(w.thread, 'Thread')}")
        await wait_listeners(server, f"member:{victim.member_id}", 2)
        sent = time.monotonic()
        result = await moderate_member(server_b, w.mod, victim, "BAN", "ILLEGAL_ACTIVITY")
        answered = time.monotonic()
        assert result["record"]["status"] == "banned" and result["sanction"]["kind"] == "BAN"
        assert await close_code(victim_ws, 1.0) == 4403, f"sent {answered - sent:.2f} s before"
        banned = await entry(mod_feed)
        assert banned["kind"] == "MEMBER_ACTION" and banned["action"] == "ban", banned
        assert banned["member"]["id"] == victim.gid and banned["actor"]["id"] == w.mod.gid
        assert banned["category"] == "ILLEGAL_ACTIVITY", banned
    assert await me_of(server, victim.token) is None
    assert await me_of(server_b, victim.token) is None
