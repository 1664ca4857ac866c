"""Moderators' actions on members and threads, over HTTP and websockets, with the
registers checked too.

Covers: warnings (a category is required; writing is refused until the member
acknowledges; only the member can acknowledge), suspensions (an explicit end,
escalating lengths without one, expiry, UNSUSPEND), pre-moderation, bans (sessions
and open websockets end at once, login refused, the ban email in the member's
language, the legal hold on the address, re-registration refused and the purge
after the hold), who may act on whom, that moderators see pseudonyms only, and
locking and pinning threads. Every action is audited once, and repeating one is
answered `applied: false`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from models.community import AuditEntry, Member, MemberStatus, Notification, Session
from models.contacts import BannedAddress, Consent, Contact, EmailToken, OutboxMessage
from models.discussions import Post, PostStatus, Thread
from models.moderation import MemberSanction, SanctionKind
from resolvers import clock, crypto
from resolvers.sanctions import purge_ended_bans
from tests.conftest import Server
from tests.helpers import (
    PASSWORD,
    REQUEST_PASSWORD_RESET,
    RESET_PASSWORD,
    RESIGN,
    VERIFY_EMAIL,
    Account,
    assert_no_permission,
    emailed_token,
    login,
    me_of,
    member,
    register,
    sign_in,
    staff,
)
from tests.smtp import body_of
from tests.test_discussions import EDIT_POST
from tests.test_moderation import (
    MY_NOTIFICATIONS,
    NOTIFICATIONS_SUBSCRIPTION,
    REACT,
    START_THREAD,
    THREAD_EVENTS,
    TRANSPORT_WS,
    World,
    add_post,
    allow_many_posts,
    ckey,
    db_id,
    failed,
    gid,
    no_email,
    posted,
    start_thread,
    thread_posts,
    wait_listeners,
    world,
    ws_client,
)
from tests.ws import RECEIVE_SECONDS, WsClient

# ---------------------------------------------------------------- documents

SANCTION_FIELDS = "id kind category note createdAt until acknowledgedAt liftedAt"

RECORD_FIELDS = f"""
  member {{ id displayName isFormerMember staffBadge }}
  status suspendedUntil premoderated publishedPosts heldPosts removedPosts
  sanctions {{ {SANCTION_FIELDS} }}
"""

MODERATE_MEMBER = f"""
mutation ModerateMember($input: ModerateMemberInput!) {{
  moderateMember(input: $input) {{
    __typename
    ... on ModerateMemberSuccess {{
      applied sanction {{ {SANCTION_FIELDS} }} record {{ {RECORD_FIELDS} }}
    }}
    ... on Error {{ code message }}
    ... on InputError {{ field }}
  }}
}}
"""

MODERATION_MEMBER = f"""
query ModerationMember($id: ID!) {{
  moderationMember(memberId: $id) {{ {RECORD_FIELDS} }}
}}
"""

MODERATE_THREAD = """
mutation ModerateThread($input: ModerateThreadInput!) {
  moderateThread(input: $input) {
    __typename
    ... on ModerateThreadSuccess { applied thread { id locked pinned } }
    ... on Error { code message }
  }
}
"""

ACKNOWLEDGE = f"""
mutation Acknowledge($id: ID!) {{
  acknowledgeWarning(id: $id) {{
    __typename
    ... on AcknowledgeWarningSuccess {{ warning {{ {SANCTION_FIELDS} }} }}
    ... on Error {{ code message }}
  }}
}}
"""

MY_STANDING = f"{{ me {{ suspendedUntil warnings {{ {SANCTION_FIELDS} }} }} }}"

THREAD_AND_AREA = """
query ThreadAndArea($thread: ID!, $area: ID!) {
  thread: node(id: $thread) { ... on Thread { id locked pinned } }
  area: node(id: $area) { ... on Area { pinnedThreads { id locked pinned } } }
}
"""

# ---------------------------------------------------------------- helpers


async def act(
    server: Server,
    account: Account,
    target: str,
    action: str,
    category: str | None = None,
    note: str = "",
    until: datetime | None = None,
) -> dict[str, Any]:
    """Call moderateMember; returns the whole answer (never holding an email address)."""
    data: dict[str, Any] = {"memberId": target, "action": action, "note": note}
    if category is not None:
        data["category"] = category
    if until is not None:
        data["until"] = until.isoformat()
    body = await server.gql(MODERATE_MEMBER, {"input": data}, token=account.token)
    no_email(body)
    return body


def answer(body: dict[str, Any], field: str, typename: str | None = None) -> dict[str, Any]:
    """The result object of a mutation or query (asserts no errors, and its type if given)."""
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][field]
    assert typename is None or result["__typename"] == typename, result
    return result


async def acted(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """A successful moderateMember (`act`'s arguments); returns its ModerateMemberSuccess."""
    return answer(await act(*args, **kwargs), "moderateMember", "ModerateMemberSuccess")


def refused_with(body: dict[str, Any], typename: str, code: str) -> dict[str, Any]:
    result = answer(body, "moderateMember")
    failed(result, typename, code)
    return result


async def moderate_thread(
    server: Server, account: Account, thread: str, action: str, note: str = ""
) -> dict[str, Any]:
    """Call moderateThread; returns the whole answer."""
    data = {"threadId": thread, "action": action, "note": note}
    body: dict[str, Any] = await server.gql(MODERATE_THREAD, {"input": data}, token=account.token)
    return body


async def thread_acted(*args: Any) -> dict[str, Any]:
    """A successful moderateThread (`moderate_thread`'s arguments)."""
    return answer(await moderate_thread(*args), "moderateThread", "ModerateThreadSuccess")


async def standing(server: Server, account: Account) -> dict[str, Any]:
    return answer(await server.gql(MY_STANDING, token=account.token), "me")


async def audits(prefix: str) -> list[tuple[str, int | None, int | None, str]]:
    """(action, actor, target member, reason) of the audit entries starting with `prefix`."""
    rows = await AuditEntry.filter(action__startswith=prefix).order_by("id")
    return [(a.action, a.actor_id, a.target_member_id, a.reason) for a in rows]


async def react(server: Server, account: Account, post: str) -> dict[str, Any]:
    body = await server.gql(REACT, {"input": {"postId": post, "kind": "LIKE"}}, token=account.token)
    return answer(body, "react")


async def write_refusals(server: Server, account: Account, w: World) -> set[str]:
    """Try addPost, react and startThread; the set of codes they were refused with."""
    thread = {"areaId": w.area, "title": "Uusi", "body": "Uusi ketju", "clientKey": ckey()}
    started = await server.gql(START_THREAD, {"input": thread}, token=account.token)
    results = [
        await add_post(server, account, w.thread, "Saanko kirjoittaa?"),
        await react(server, account, w.post),
        answer(started, "startThread"),
    ]
    assert all(r["__typename"] == "NotAllowedError" for r in results), results
    return {r["code"] for r in results}


async def thread_view(server: Server, account: Account, w: World) -> dict[str, Any]:
    """The thread's locked and pinned flags and its area's pinned threads."""
    variables = {"thread": w.thread, "area": w.area}
    body = await server.gql(THREAD_AND_AREA, variables, token=account.token)
    return {key: answer(body, key) for key in ("thread", "area")}


async def signed_in_again(server: Server, account: Account) -> Account:
    """The same account with a fresh session (after the clock moved past idle expiry)."""
    return replace(account, token=await sign_in(server, account.login_name))


# ---------------------------------------------------------------- warnings


async def test_warning_needs_a_category_and_blocks_writing_until_acknowledged(
    server: Server,
) -> None:
    """WARN without a category is refused; a warning is notified, blocks addPost, react and
    startThread (reading still works) until the member acknowledges it; only they can."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    target = w.author

    body = await act(server, w.mod, target.gid, "WARN", note="Ei kategoriaa")
    assert refused_with(body, "InputError", "CATEGORY_REQUIRED")["field"] == "category"
    soon = clock.now() + timedelta(days=1)
    body = await act(server, w.mod, target.gid, "WARN", "OFFENSIVE", until=soon)
    assert refused_with(body, "InputError", "INVALID_TIME")["field"] == "until"
    assert await MemberSanction.all().count() == 0
    assert await audits("member.") == []

    warned = await acted(server, w.mod, target.gid, "WARN", "OFFENSIVE", "Kielenkäyttö")
    assert warned["applied"] is True
    sanction = warned["sanction"]
    assert sanction["kind"] == "WARN" and sanction["category"] == "OFFENSIVE", sanction
    assert sanction["acknowledgedAt"] is None, sanction
    assert [s["id"] for s in warned["record"]["sanctions"]] == [sanction["id"]]
    row = await MemberSanction.get(member_id=target.member_id)
    assert (row.kind, row.category, row.note) == (SanctionKind.WARN, "offensive", "Kielenkäyttö")
    assert (row.created_by_id, row.acknowledged_at) == (w.mod.member_id, None)
    warn_audit = ("member.warn", w.mod.member_id, target.member_id, "Kielenkäyttö")
    assert await audits("member.") == [warn_audit]
    notice = await Notification.get(member_id=target.member_id)
    params = {"sanctionId": row.id, "category": "offensive"}
    assert (notice.kind, notice.params) == ("WARNING", params)
    listed = await server.gql(MY_NOTIFICATIONS, token=target.token)
    assert [e["node"]["kind"] for e in listed["data"]["notifications"]["edges"]] == ["WARNING"]

    # Writing is refused until acknowledged; reading works.
    assert await write_refusals(server, target, w) == {"WARNING_NOT_ACKNOWLEDGED"}
    assert await Post.filter(author_id=target.member_id).count() == 1
    assert w.post in await thread_posts(server, target, w.thread)
    # Other members are not affected.
    await posted(server, bob, w.thread, "Minä voin kirjoittaa")

    mine = await standing(server, target)
    assert [s["id"] for s in mine["warnings"]] == [sanction["id"]], mine
    assert mine["warnings"][0]["category"] == "OFFENSIVE" and mine["suspendedUntil"] is None
    # Nobody else has (or can acknowledge) this warning.
    assert (await standing(server, bob))["warnings"] == []
    others = await server.gql(ACKNOWLEDGE, {"id": sanction["id"]}, token=bob.token)
    failed(answer(others, "acknowledgeWarning"), "NotAllowedError", "NOT_FOUND")
    assert (await MemberSanction.get(id=row.id)).acknowledged_at is None
    still = await add_post(server, target, w.thread, "Vieläkö?")
    assert still["code"] == "WARNING_NOT_ACKNOWLEDGED", still

    acks = [await server.gql(ACKNOWLEDGE, {"id": sanction["id"]}, token=target.token)]
    done = answer(acks[0], "acknowledgeWarning", "AcknowledgeWarningSuccess")
    assert done["warning"]["id"] == sanction["id"] and done["warning"]["acknowledgedAt"]
    acks.append(await server.gql(ACKNOWLEDGE, {"id": sanction["id"]}, token=target.token))
    assert answer(acks[1], "acknowledgeWarning") == done, acks  # twice: the same answer
    assert (await MemberSanction.get(id=row.id)).acknowledged_at is not None
    assert (await standing(server, target))["warnings"][0]["acknowledgedAt"] is not None

    await posted(server, target, w.thread, "Kuitattu, jatketaan asiallisesti")
    assert (await react(server, target, w.post))["__typename"] == "PostSuccess"
    await start_thread(server, target, w.area, "Uusi aihe")


# ---------------------------------------------------------------- suspensions


async def test_suspension_until_a_time_lets_the_member_read_but_not_write(
    server: Server,
) -> None:
    """An explicit future `until` refuses writes (the message tells until when) and lifts
    when the clock passes it; a past `until` is refused; UNSUSPEND lifts one early, once."""
    allow_many_posts(server)
    w = await world(server)
    target = w.author
    until = (clock.now() + timedelta(days=2)).replace(microsecond=0)

    ago = clock.now() - timedelta(minutes=1)
    body = await act(server, w.mod, target.gid, "SUSPEND", "SELLING", until=ago)
    assert refused_with(body, "InputError", "INVALID_TIME")["field"] == "until", body
    no_category = await act(server, w.mod, target.gid, "SUSPEND", until=until)
    refused_with(no_category, "InputError", "CATEGORY_REQUIRED")
    assert await MemberSanction.all().count() == 0
    assert (await Member.get(id=target.member_id)).suspended_until is None

    suspended = await acted(server, w.mod, target.gid, "SUSPEND", "SELLING", "Mainostaa", until)
    assert suspended["applied"] is True and suspended["sanction"]["kind"] == "SUSPEND"
    assert datetime.fromisoformat(suspended["sanction"]["until"]) == until
    assert datetime.fromisoformat(suspended["record"]["suspendedUntil"]) == until
    assert (await Member.get(id=target.member_id)).suspended_until == until
    row = await MemberSanction.get(member_id=target.member_id)
    assert (row.kind, row.category, row.until) == (SanctionKind.SUSPEND, "selling", until)
    suspend_audit = ("member.suspend", w.mod.member_id, target.member_id, "Mainostaa")
    assert await audits("member.") == [suspend_audit]
    audit = await AuditEntry.get(action="member.suspend")
    assert audit.details["until"] == until.isoformat(), audit.details
    notice = await Notification.get(member_id=target.member_id)
    params = {"sanctionId": row.id, "category": "selling", "until": until.isoformat()}
    assert (notice.kind, notice.params) == ("SUSPENDED", params)

    assert await write_refusals(server, target, w) == {"SUSPENDED"}
    refusal = await add_post(server, target, w.thread, "Saanko?")
    assert until.strftime("%Y-%m-%d %H:%M") in refusal["message"], refusal
    assert w.post in await thread_posts(server, target, w.thread)
    assert datetime.fromisoformat((await standing(server, target))["suspendedUntil"]) == until

    # The time passes: writing works again.
    clock.move(timedelta(days=2, minutes=1))
    assert (await standing(server, target))["suspendedUntil"] is None
    await posted(server, target, w.thread, "Taas täällä")
    # UNSUSPEND of an ended suspension is answered, not applied.
    assert (await acted(server, w.mod, target.gid, "UNSUSPEND"))["applied"] is False
    assert [a[0] for a in await audits("member.")] == ["member.suspend"]

    # A new suspension, lifted early.
    await acted(server, w.mod, target.gid, "SUSPEND", "SELLING")
    assert (await add_post(server, target, w.thread, "Entä nyt?"))["code"] == "SUSPENDED"
    lifted = await acted(server, w.mod, target.gid, "UNSUSPEND", note="Virhe")
    assert lifted["applied"] is True and lifted["record"]["suspendedUntil"] is None
    assert (await Member.get(id=target.member_id)).suspended_until is None
    latest = await MemberSanction.filter(kind=SanctionKind.SUSPEND).order_by("-id").first()
    assert latest and latest.lifted_at and latest.lifted_by_id == w.mod.member_id
    await posted(server, target, w.thread, "Vapaana taas")
    assert (await acted(server, w.mod, target.gid, "UNSUSPEND"))["applied"] is False
    actions = [a[0] for a in await audits("member.")]
    assert actions == ["member.suspend", "member.suspend", "member.unsuspend"], actions


async def test_suspensions_without_an_end_escalate_along_the_steps(server: Server) -> None:
    """Repeated suspensions without `until` last 24 h, 72 h, 168 h, 720 h and then 720 h
    again (SUSPENSION_STEPS_HOURS), each measured on the app's clock."""
    allow_many_posts(server)
    w = await world(server)
    assert server.settings.suspension_steps_hours == (24, 72, 168, 720)
    target, mod = w.author, w.mod
    for hours in (24, 72, 168, 720, 720):
        result = await acted(server, mod, target.gid, "SUSPEND", "SPAM_OR_TROLLING")
        stored = (await Member.get(id=target.member_id)).suspended_until
        assert result["applied"] is True and stored is not None
        length = stored - clock.now()
        assert timedelta(hours=hours, minutes=-1) < length <= timedelta(hours=hours), length
        assert datetime.fromisoformat(result["sanction"]["until"]) == stored
        assert (await add_post(server, target, w.thread, "Kirjoitan"))["code"] == "SUSPENDED"
        clock.move(timedelta(hours=hours, minutes=1))
        # Sessions idle out over the longer steps: sign in again.
        mod = await signed_in_again(server, mod)
        target = await signed_in_again(server, target)
    rows = await MemberSanction.filter(member_id=target.member_id).order_by("id")
    assert [r.kind for r in rows] == [SanctionKind.SUSPEND] * 5
    lengths = [(r.until - r.created_at).total_seconds() / 3600 for r in rows]  # type: ignore[operator]
    assert [round(h) for h in lengths] == [24, 72, 168, 720, 720], lengths
    assert await Notification.filter(member_id=target.member_id, kind="SUSPENDED").count() == 5
    assert len(await audits("member.suspend")) == 5
    await posted(server, target, w.thread, "Vihdoin")


# ---------------------------------------------------------------- pre-moderation


async def test_premoderation_holds_posts_until_it_ends(server: Server) -> None:
    """PREMODERATE holds every new post of the member; repeating either action is answered
    `applied: false` with no second sanction or audit entry."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    target = w.author

    # Two moderators at once: applied once.
    both = await asyncio.gather(
        acted(server, w.mod, target.gid, "PREMODERATE", note="Tarkkailuun"),
        acted(server, w.admin, target.gid, "PREMODERATE", note="Tarkkailuun"),
    )
    assert sorted(r["applied"] for r in both) == [False, True], both
    on = next(r for r in both if r["applied"])
    assert on["record"]["premoderated"] is True and on["sanction"]["kind"] == "PREMODERATE"
    winner = w.mod if both[0]["applied"] else w.admin
    again = await acted(server, w.mod, target.gid, "PREMODERATE")
    assert again["applied"] is False and again["sanction"] is None
    assert (await Member.get(id=target.member_id)).premoderated is True
    assert await MemberSanction.filter(kind=SanctionKind.PREMODERATE).count() == 1

    held = await add_post(server, target, w.thread, "Odottaa tarkistusta")
    assert held["__typename"] == "PostSuccess" and held["post"]["pending"] is True, held
    row = await Post.get(id=db_id(held["post"]["id"]))
    assert (row.status, row.held_reason) == (PostStatus.HELD, "premoderation")
    assert held["post"]["id"] not in await thread_posts(server, bob, w.thread)
    record = await server.gql(MODERATION_MEMBER, {"id": target.gid}, token=w.mod.token)
    assert answer(record, "moderationMember")["heldPosts"] == 1, record
    # Others' posts are not held.
    assert (await add_post(server, bob, w.thread, "Näkyy heti"))["post"]["pending"] is False

    off = await acted(server, w.mod, target.gid, "END_PREMODERATION")
    assert off["applied"] is True and off["record"]["premoderated"] is False
    assert (await acted(server, w.mod, target.gid, "END_PREMODERATION"))["applied"] is False
    assert (await Member.get(id=target.member_id)).premoderated is False
    sanction = await MemberSanction.get(kind=SanctionKind.PREMODERATE)
    assert sanction.lifted_at is not None and sanction.lifted_by_id == w.mod.member_id
    assert [(a, actor, reason) for a, actor, _, reason in await audits("member.")] == [
        ("member.premoderate", winner.member_id, "Tarkkailuun"),
        ("member.end_premoderation", w.mod.member_id, ""),
    ]
    shown = await add_post(server, target, w.thread, "Taas suoraan näkyviin")
    assert shown["post"]["pending"] is False, shown
    assert shown["post"]["id"] in await thread_posts(server, bob, w.thread)


# ---------------------------------------------------------------- bans


async def closed_within_a_second(client: WsClient) -> int | None:
    async with asyncio.timeout(1.0):
        await client.ws.wait_closed()
    return client.ws.close_code


async def test_ban_ends_sessions_and_websockets_and_holds_the_address(server: Server) -> None:
    """A ban deletes the member's sessions, closes their open websockets with 4403 at once,
    refuses login, shows them as a former member, emails them in their language and keeps the
    address's blind index for BAN_HOLD_DAYS: registering it again is refused by email and a
    password reset sends nothing."""
    allow_many_posts(server)
    w = await world(server)
    carl = await member(server)
    bob = await member(server, language="SV")
    assert bob.email is not None
    bob_post = await posted(server, bob, w.thread, "Ostakaa halvalla")
    second_token = await sign_in(server, bob.login_name)
    # A reset link asked for before the ban must not revive the account after it.
    asked = await server.gql(REQUEST_PASSWORD_RESET, {"email": bob.email})
    answer(asked, "requestPasswordReset", "Done")
    reset_token = await emailed_token(server, bob.email, "reset_password")
    thread_row_id = db_id(w.thread, "Thread")

    async with (
        ws_client(server, bob.token) as notices_ws,
        ws_client(server, second_token) as events_ws,
    ):
        await notices_ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await events_ws.subscribe("events", THREAD_EVENTS, {"threadId": w.thread})
        await wait_listeners(server, f"member:{bob.member_id}")
        await wait_listeners(server, f"thread:{thread_row_id}")
        banned = await acted(server, w.mod, bob.gid, "BAN", "SPAM_OR_TROLLING", "Roskapostia")
        assert await closed_within_a_second(notices_ws) == 4403
        assert await closed_within_a_second(events_ws) == 4403

    assert banned["applied"] is True and banned["record"]["status"] == "banned"
    assert banned["sanction"]["kind"] == "BAN"
    row = await Member.get(id=bob.member_id)
    assert (row.status, row.suspended_until) == (MemberStatus.BANNED, None) and row.ended_at
    assert await Session.filter(member_id=bob.member_id).count() == 0
    assert [await me_of(server, token) for token in (bob.token, second_token)] == [None, None]
    failed(await login(server, bob.login_name), "NotAllowedError", "INVALID_CREDENTIALS")
    ban_audit = ("member.ban", w.mod.member_id, bob.member_id, "Roskapostia")
    assert await audits("member.") == [ban_audit]

    # Others see a former member on what they wrote.
    author = (await thread_posts(server, carl, w.thread))[bob_post]["author"]
    assert author["id"] == bob.gid and author["isFormerMember"] is True, author
    assert author["displayName"] == "entinen jäsen", author

    # The email, in Swedish as bob chose, names the rule and the end of the hold.
    index = crypto.email_index(bob.email)
    hold = await BannedAddress.get(email_index=index)
    assert hold.member_index == crypto.member_index(bob.member_id)
    assert hold.banned_at == clock.today()
    ahead, days = hold.hold_until - clock.now(), server.settings.ban_hold_days
    assert timedelta(days=days - 1) < ahead <= timedelta(days=days), ahead
    ban_row = await MemberSanction.get(member_id=bob.member_id, kind=SanctionKind.BAN)
    assert ban_row.until == hold.hold_until
    mail = await server.smtp.wait_for(bob.email, "banned")
    assert mail["Subject"] == "Ditt medlemskap i gemenskapen har upphört", mail["Subject"]
    assert mail["Content-Language"] == "sv"
    text = body_of(mail)
    assert "skräppost eller trollande" in text and hold.hold_until.date().isoformat() in text, text

    # Registering the address again creates no member and tells the address why.
    contacts_before = await Contact.all().count()
    verify_mails = await OutboxMessage.filter(template="verify").count()
    names = {"loginName": "bobagain", "displayName": "Uusi Bob"}
    again = await register(server, email=bob.email, language="EN", **names)
    assert again["__typename"] == "RegisterSuccess", again
    refused = await server.smtp.wait_for(bob.email, "registration_refused")
    assert refused["Subject"] == "Registration not possible" and refused["Content-Language"] == "en"
    assert hold.hold_until.date().isoformat() in body_of(refused)
    assert await Contact.all().count() == contacts_before
    assert await OutboxMessage.filter(template="verify").count() == verify_mails
    assert not await Member.exists(login_name="bobagain", password_hash__isnull=False)
    assert (await login(server, "bobagain"))["__typename"] != "LoginSuccess"

    # The earlier reset link no longer works, and a new reset sends nothing.
    new_password = {"token": reset_token, "newPassword": "violet lantern under quiet snow"}
    used = await server.gql(RESET_PASSWORD, {"input": new_password})
    failed(answer(used, "resetPassword"), "InputError", "TOKEN_INVALID")
    assert (await Member.get(id=bob.member_id)).password_hash == row.password_hash
    reset = await server.gql(REQUEST_PASSWORD_RESET, {"email": bob.email})
    answer(reset, "requestPasswordReset", "Done")
    contact = await Contact.get(email_index=index)
    assert await EmailToken.filter(contact_id=contact.id).count() == 0
    assert await OutboxMessage.filter(template="reset_password").count() == 1  # the first

    # A websocket opened with an old token is refused.
    async with connect(server.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": bob.token}}))
        async with asyncio.timeout(RECEIVE_SECONDS):
            await ws.wait_closed()
        assert ws.close_code == 4403


async def test_purge_after_the_hold_erases_the_banned_member_and_frees_the_address(
    server: Server,
) -> None:
    """Before the hold ends the purge keeps everything; after it, the contact with its
    consents, tokens and mail, and the address's hold are gone, names and password erased,
    the status stays banned, and the address can register again."""
    w = await world(server)
    bob = await member(server)
    assert bob.email is not None
    await acted(server, w.mod, bob.gid, "BAN", "ILLEGAL_ACTIVITY", "Laitonta")
    await server.smtp.wait_for(bob.email, "banned")
    contact = await Contact.get(member_index=crypto.member_index(bob.member_id))
    assert await Consent.filter(contact_id=contact.id).count() > 0
    assert await OutboxMessage.filter(contact_id=contact.id).count() > 0

    assert await purge_ended_bans() == 0
    clock.move(timedelta(days=server.settings.ban_hold_days - 1))
    assert await purge_ended_bans() == 0
    assert await BannedAddress.exists(member_index=contact.member_index)
    clock.move(timedelta(days=2))
    assert await purge_ended_bans() == 1
    assert await purge_ended_bans() == 0

    assert not await Contact.exists(id=contact.id)
    for model in (Consent, EmailToken, OutboxMessage):
        assert await model.filter(contact_id=contact.id).count() == 0, model
    assert await BannedAddress.all().count() == 0
    row = await Member.get(id=bob.member_id)
    assert row.status == MemberStatus.BANNED
    assert (row.login_name, row.display_name, row.password_hash) == (None, None, None)
    assert await Notification.filter(member_id=bob.member_id).count() == 0
    assert (await MemberSanction.get(member_id=bob.member_id)).lifted_at is not None
    purged = ("member.ban_purged", None, bob.member_id, "")
    assert (await audits("member.ban"))[1:] == [purged]

    # The address is free: it registers and verifies as a new member.
    server.smtp.clear()
    result = await register(server, email=bob.email, loginName="paluu", displayName="Paluumuuttaja")
    assert result["__typename"] == "RegisterSuccess", result
    token = await emailed_token(server, bob.email, "verify")
    answer(await server.gql(VERIFY_EMAIL, {"token": token}), "verifyEmail", "VerifyEmailSuccess")
    assert await sign_in(server, "paluu")


async def test_purge_leaves_no_mail_addressed_to_the_banned_address(server: Server) -> None:
    """After the purge nothing in the contacts register still holds the banned address,
    not even the "registration refused" mail sent to it during the hold."""
    w = await world(server)
    bob = await member(server)
    assert bob.email is not None
    await acted(server, w.mod, bob.gid, "BAN", "OTHER")
    again = await register(server, email=bob.email, loginName="bobuudestaan", displayName="Toinen")
    assert again["__typename"] == "RegisterSuccess", again
    await server.smtp.wait_for(bob.email, "registration_refused")
    clock.move(timedelta(days=server.settings.ban_hold_days + 1))
    assert await purge_ended_bans() == 1
    recipients = [
        crypto.decrypt(m.recipient_ciphertext, "outbox-recipient")
        for m in await OutboxMessage.all()
    ]
    assert bob.email not in recipients, await OutboxMessage.all().values("template", "contact_id")


# ---------------------------------------------------------------- permissions


async def test_only_moderators_act_and_only_on_active_members(server: Server) -> None:
    """Members and researchers are refused and change nothing; moderators cannot act on
    staff, resigned or banned members; unknown ids answer NOT_FOUND."""
    w = await world(server)
    researcher = await staff(server, "researcher")
    bob, carl, quitter, gone = [await member(server) for _ in range(4)]

    for account in (bob, researcher):
        for action, category in (("WARN", "OTHER"), ("BAN", "OTHER"), ("PREMODERATE", None)):
            body = await act(server, account, carl.gid, action, category)
            assert_no_permission(body, "FORBIDDEN")
            assert body["data"] is None, body
        for action in ("LOCK", "PIN"):
            body = await moderate_thread(server, account, w.thread, action)
            assert_no_permission(body, "FORBIDDEN")
        looked = await server.gql(MODERATION_MEMBER, {"id": carl.gid}, token=account.token)
        assert_no_permission(looked, "FORBIDDEN")
    assert await MemberSanction.all().count() == 0
    assert await audits("member.") == [] and await audits("thread.") == []
    row = await Member.get(id=carl.member_id)
    assert (row.status, row.premoderated) == (MemberStatus.ACTIVE, False)
    thread = await Thread.get(id=db_id(w.thread, "Thread"))
    assert (thread.locked_at, thread.pinned_at) == (None, None)
    assert await sign_in(server, carl.login_name)

    answer(await server.gql(RESIGN, {"password": PASSWORD}, token=quitter.token), "resign", "Done")
    await acted(server, w.mod, gone.gid, "BAN", "OTHER")
    other_mod = await staff(server, "moderator")
    for target in (w.admin, other_mod, w.mod, researcher, quitter, gone):
        for action, category in (("WARN", "OTHER"), ("SUSPEND", "OTHER"), ("BAN", "OTHER")):
            body = await act(server, w.mod, target.gid, action, category)
            refused_with(body, "NotAllowedError", "NOT_A_MEMBER")
    assert await MemberSanction.all().count() == 1  # gone's ban
    assert [a[0] for a in await audits("member.")] == ["member.resign", "member.ban"]
    assert (await Member.get(id=quitter.member_id)).status == MemberStatus.RESIGNED

    unknown = await act(server, w.mod, gid("Member", carl.member_id + 1000), "WARN", "OTHER")
    refused_with(unknown, "NotAllowedError", "NOT_FOUND")
    not_a_member = await act(server, w.mod, w.thread, "WARN", "OTHER")
    refused_with(not_a_member, "NotAllowedError", "NOT_FOUND")
    no_thread = await moderate_thread(server, w.mod, gid("Thread", 9999), "LOCK")
    failed(answer(no_thread, "moderateThread"), "NotAllowedError", "NOT_FOUND")


async def test_moderators_see_pseudonyms_only(server: Server) -> None:
    """The answers of moderateMember and moderationMember, sanctions included, carry the
    pseudonym and the record but no email address or birth date."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server, birthDate="1987-03-14")
    await posted(server, bob, w.thread, "Viesti")
    answers = [
        await acted(server, w.mod, bob.gid, "WARN", "PERSONAL_DATA", "Jakoi tietoja"),
        await acted(server, w.admin, bob.gid, "SUSPEND", "PERSONAL_DATA"),
        await acted(server, w.mod, bob.gid, "PREMODERATE"),
    ]
    body = await server.gql(MODERATION_MEMBER, {"id": bob.gid}, token=w.mod.token)
    record = answer(body, "moderationMember")
    assert (record["member"]["id"], record["member"]["displayName"]) == (bob.gid, bob.display_name)
    assert record["status"] == "active" and record["premoderated"] is True, record
    assert record["publishedPosts"] == 1 and record["suspendedUntil"] is not None, record
    assert [s["kind"] for s in record["sanctions"]] == ["PREMODERATE", "SUSPEND", "WARN"]
    for text in [json.dumps(body), *(json.dumps(a) for a in answers)]:
        assert "@" not in text and "1987" not in text, text
        assert bob.login_name not in text.replace(bob.display_name, ""), text

    # An unknown member answers null.
    unknown = {"id": gid("Member", bob.member_id + 1000)}
    missing = await server.gql(MODERATION_MEMBER, unknown, token=w.mod.token)
    assert missing == {"data": {"moderationMember": None}}, missing


# ---------------------------------------------------------------- threads


async def test_locking_and_pinning_threads(server: Server) -> None:
    """LOCK refuses members' posts and edits (staff still post); UNLOCK restores; PIN lists
    the thread in Area.pinnedThreads, newest pin first; repeats are answered, audited once."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    bob_post = await posted(server, bob, w.thread, "Ennen lukitusta")
    thread_row_id = db_id(w.thread, "Thread")

    locked = await thread_acted(server, w.mod, w.thread, "LOCK", "Kiista riistäytyi")
    assert locked["applied"] is True, locked
    assert locked["thread"] == {"id": w.thread, "locked": True, "pinned": False}, locked
    assert (await Thread.get(id=thread_row_id)).locked_at is not None
    again = await thread_acted(server, w.mod, w.thread, "LOCK")
    assert again["applied"] is False and again["thread"]["locked"] is True
    assert await audits("thread.") == [("thread.lock", w.mod.member_id, None, "Kiista riistäytyi")]
    assert (await AuditEntry.get(action="thread.lock")).details == {"thread": thread_row_id}

    for account in (bob, w.author):
        refusal = await add_post(server, account, w.thread, "Lukittu?")
        failed(refusal, "NotAllowedError", "THREAD_LOCKED")
    edit = {"input": {"postId": bob_post, "body": "Muokattu"}}
    failed(
        answer(await server.gql(EDIT_POST, edit, token=bob.token), "editPost"),
        "NotAllowedError",
        "THREAD_LOCKED",
    )
    assert (await Post.get(id=db_id(bob_post))).body == "Ennen lukitusta"
    staff_post = await add_post(server, w.mod, w.thread, "Moderaattori: ketju lukittu")
    assert staff_post["__typename"] == "PostSuccess", staff_post
    assert (await thread_view(server, bob, w))["thread"]["locked"] is True

    unlocked = await thread_acted(server, w.mod, w.thread, "UNLOCK")
    assert unlocked["applied"] is True and unlocked["thread"]["locked"] is False
    assert (await thread_acted(server, w.mod, w.thread, "UNLOCK"))["applied"] is False
    assert (await Thread.get(id=thread_row_id)).locked_at is None
    await posted(server, bob, w.thread, "Taas auki")

    # Pinning: listed in the area, most recently pinned first.
    other_thread, _ = await start_thread(server, bob, w.area, "Toinen ketju")
    assert (await thread_view(server, bob, w))["area"]["pinnedThreads"] == []
    pinned = await thread_acted(server, w.mod, w.thread, "PIN")
    assert pinned["applied"] is True and pinned["thread"]["pinned"] is True
    assert (await thread_acted(server, w.admin, w.thread, "PIN"))["applied"] is False
    await thread_acted(server, w.mod, other_thread, "PIN")
    view = await thread_view(server, bob, w)
    assert view["thread"]["pinned"] is True, view
    assert [t["id"] for t in view["area"]["pinnedThreads"]] == [other_thread, w.thread]
    assert all(t["pinned"] for t in view["area"]["pinnedThreads"]), view

    unpinned = await thread_acted(server, w.mod, w.thread, "UNPIN")
    assert unpinned["applied"] is True and unpinned["thread"]["pinned"] is False
    assert (await thread_acted(server, w.mod, w.thread, "UNPIN"))["applied"] is False
    view = await thread_view(server, bob, w)
    assert [t["id"] for t in view["area"]["pinnedThreads"]] == [other_thread], view
    actions = [a[0].removeprefix("thread.") for a in await audits("thread.")]
    assert actions == ["lock", "unlock", "pin", "pin", "unpin"], actions
