"""Membership lifecycle and data rights over the API, with both registers checked.

Covers: locking an account on suspected misuse (sessions and websockets end, sign-in
answers ACCOUNT_LOCKED in the member's language, the emailed reset link unlocks, who
may lock and unlock, audit), the member's own data export `myData` (everything held
about them and nothing about anyone else, audited), the admins' `communityHealth`
counts, and that every way a membership ends (resignation, a ban purged after its
hold, inactivity) leaves nothing that identifies the member in any table of either
register, in the outbox, the audit log or the rendered-view cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from config import override_settings
from models.community import AuditEntry, Member, MemberStatus, Session
from models.contacts import Contact, EmailToken, OutboxMessage
from models.discussions import Thread
from models.research import AttributeValue, Invitation, Reward
from resolvers import clock, crypto
from resolvers.lifecycle import run_lifecycle
from resolvers.sanctions import purge_ended_bans
from schema import discussions as discussions_schema
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    PASSWORD,
    REQUEST_PASSWORD_RESET,
    RESET_PASSWORD,
    RESIGN,
    Account,
    assert_no_permission,
    assert_unauthenticated,
    current_rules_id,
    login,
    me_of,
    member,
    register,
    staff,
    unique,
    update_profile,
)
from tests.smtp import token_in
from tests.test_moderation import (
    NOTIFICATIONS_SUBSCRIPTION,
    THREAD_EVENTS,
    World,
    add_post,
    allow_many_posts,
    create_area,
    db_id,
    failed,
    posted,
    reported,
    start_thread,
    wait_listeners,
    world,
    ws_client,
)
from tests.test_privacy import date_forms
from tests.test_sanctions import (
    acted,
    answer,
    audits,
    closed_within_a_second,
    react,
    signed_in_again,
)
from tests.test_segments import define, set_mine
from tests.test_studies_smoke import DRAW, SAVE_ANSWERS, SUBMIT, launched_survey, ok

# ---------------------------------------------------------------- documents

LOCK_TAIL = """
  __typename
  ... on LockSuccess { locked applied member { id displayName isFormerMember } }
  ... on Error { code message }
  ... on InputError { field }
"""

LOCK = f"""
mutation Lock($id: ID!, $reason: String!) {{
  lockAccount(memberId: $id, reason: $reason) {{ {LOCK_TAIL} }}
}}
"""

UNLOCK = f"""
mutation Unlock($id: ID!, $reason: String!) {{
  unlockAccount(memberId: $id, reason: $reason) {{ {LOCK_TAIL} }}
}}
"""

MY_DATA = "{ myData }"

HEALTH = """
query Health($months: Int!) {
  communityHealth(months: $months) {
    members active30Days active90Days active180Days
    months { month joined left invitations completed responseRate }
  }
}
"""

LOCK_REASON = "Kirjautumisia oudoista paikoista, epäilty tilin kaappaus"
NEW_PASSWORD = "a fresh passphrase after the lock"

# ---------------------------------------------------------------- helpers


async def lock_call(
    server: Server, actor: Account, target: str, doc: str = LOCK, reason: str = LOCK_REASON
) -> dict[str, Any]:
    """Call lockAccount (or, with `doc=UNLOCK`, unlockAccount); the whole answer."""
    body: dict[str, Any] = await server.gql(
        doc, {"id": target, "reason": reason}, token=actor.token
    )
    return body


async def locked(server: Server, actor: Account, target: str, doc: str = LOCK) -> dict[str, Any]:
    """A successful lockAccount / unlockAccount: its LockSuccess."""
    field = "lockAccount" if doc == LOCK else "unlockAccount"
    return answer(await lock_call(server, actor, target, doc), field, "LockSuccess")


async def locked_at(account: Account) -> datetime | None:
    return (await Member.get(id=account.member_id)).locked_at


async def complete(server: Server, account: Account, study: dict[str, Any], text: str = "") -> None:
    """Answer a launched survey's required questions (and the text one if given); submit."""
    q_choice, q_nps, q_text = (q["id"] for q in study["questions"])
    answers: list[dict[str, Any]] = [
        {"questionId": q_choice, "choice": "office"},
        {"questionId": q_nps, "scale": 8},
    ]
    if text:
        answers.append({"questionId": q_text, "text": text})
    variables = {"study": study["id"], "answers": answers}
    await ok(server, SAVE_ANSWERS, variables, account.token, "saveAnswers")
    await ok(server, SUBMIT, {"study": study["id"]}, account.token, "submitAnswers")


@dataclass
class Busy:
    """A member who has done a bit of everything, and the people around them."""

    w: World
    target: Account
    bob: Account
    researcher: Account
    old_display: str
    birth: date
    post: str  # the target's post
    reply: str  # bob's reply to it
    email_index: str
    member_index: str
    texts: dict[str, str]


async def busy_member(server: Server) -> Busy:
    """A Swedish-speaking member with a renamed pseudonym, a post that bob replied to, a
    reaction, a report, a research attribute, a submitted survey with a prize won and a
    pending password-reset link; the thread rendered live for the admin."""
    allow_many_posts(server)
    w = await world(server, "Ketjun aloittajan oma teksti")
    n = unique("")
    birth = date(1957, 3, 14)
    email = f"tuuli.karhunen{n}@example.fi"
    old_display = f"Hiljainen Lumikko {n}"
    target = await member(
        server,
        "SV",
        email=email,
        birthDate=birth.isoformat(),
        loginName=f"kuura{n}",
        displayName=old_display,
    )
    renamed = await update_profile(server, target.token, displayName=f"Utuinen Lumikko {n}")
    assert renamed["__typename"] == "UpdateProfileSuccess", renamed
    target = replace(target, display_name=f"Utuinen Lumikko {n}")
    bob = await member(server)
    texts = {
        "mine": "Lumikon oma kirjoitus ketjuun",
        "bobs_reply": "Bobin vastaus lumikolle",
        "note": "Sävy on liian kärkevä",
        "my_answer": "Palvelu toimi hyvin",
        "bobs_answer": "Bobin oma salainen vastaus",
    }
    post = await posted(server, target, w.thread, texts["mine"])
    reply = await add_post(server, bob, w.thread, texts["bobs_reply"], parent=post)
    assert reply["__typename"] == "PostSuccess", reply
    assert (await react(server, target, w.post))["__typename"] == "PostSuccess"
    await reported(server, target, reply["post"]["id"], "PERSONAL_ATTACK", texts["note"])

    await define(server, w.admin, "region", "SINGLE_CHOICE", "north", "south")
    await define(server, w.admin, "household", "NUMBER", minValue=1, maxValue=12)
    for account, values in ((target, {"region": ["south"], "household": ["3"]}), (bob, {})):
        given = values or {"region": ["north"]}
        assert (await set_mine(server, account, **given))["__typename"] == "SettingSuccess"
    researcher = await staff(server, "researcher")
    study = await launched_survey(server, researcher)
    assert study["invited"] == 3, study
    await complete(server, target, study, texts["my_answer"])
    q_text = study["questions"][2]["id"]
    bobs = {"study": study["id"], "answers": [{"questionId": q_text, "text": texts["bobs_answer"]}]}
    await ok(server, SAVE_ANSWERS, bobs, bob.token, "saveAnswers")
    drawn = await ok(server, DRAW, {"study": study["id"]}, researcher.token, "drawPrizes")
    assert drawn["draw"]["eligibleCount"] == 1 and drawn["draw"]["winners"] == 1, drawn
    await server.smtp.wait_for(email, "reward_won")

    asked = await server.gql(REQUEST_PASSWORD_RESET, {"email": email})
    answer(asked, "requestPasswordReset", "Done")
    await server.smtp.wait_for(email, "reset_password")
    contact = await Contact.get(member_index=crypto.member_index(target.member_id))
    busy = Busy(
        w=w,
        target=target,
        bob=bob,
        researcher=researcher,
        old_display=old_display,
        birth=birth,
        post=post,
        reply=reply["post"]["id"],
        email_index=contact.email_index,
        member_index=contact.member_index,
        texts=texts,
    )
    await render_thread_live(server, busy)
    return busy


def cached_views(names: set[str]) -> list[Any]:
    """Rendered thread-event views (this worker's cache) whose post author bears a name."""
    views = list(discussions_schema._views.values())
    return [v for v in views if v.post.author.display_name in names]


async def render_thread_live(server: Server, s: Busy) -> None:
    """The admin follows the thread on a live threadEvents subscription from the start:
    the target's post arrives under their current pseudonym and is cached as a view."""
    last = (await Thread.get(id=db_id(s.w.thread, "Thread"))).last_position
    async with ws_client(server, s.w.admin.token) as ws:
        await ws.subscribe("events", THREAD_EVENTS, {"threadId": s.w.thread, "after": 0})
        events = await ws.events_until(last)
    authors = {e["post"]["id"]: e["post"]["author"]["displayName"] for e in events}
    assert authors[s.post] == s.target.display_name, events
    assert cached_views({s.target.display_name}), "the view was not cached"


async def all_outbox() -> list[tuple[str, str, str]]:
    """(recipient, subject, body) of every message in the outbox, decrypted."""
    return [
        (
            crypto.decrypt(m.recipient_ciphertext, "outbox-recipient"),
            m.subject,
            crypto.decrypt(m.body_ciphertext, "outbox-body"),
        )
        for m in await OutboxMessage.all()
    ]


async def assert_erased(server: Server, s: Busy) -> None:
    """Nothing that identifies the target is left anywhere: every table of both registers
    (email in any case, login name, both pseudonyms, birth date forms, the contact row's
    blind indexes), contacts and mail decrypted, sessions, the audit log, cached views."""
    target = s.target
    assert target.email is not None
    names = {s.old_display, target.display_name}
    identifying = [
        target.email,
        target.email.split("@", 1)[0],
        target.login_name,
        *names,
        s.email_index,
        s.member_index,
        *date_forms(s.birth),
    ]
    for name in ("community", "contacts"):
        values = await dbtools.text_values(name)
        assert values, name
        dump = "\n".join(values).casefold()
        for secret in identifying:
            found = [v for v in values if secret.casefold() in v.casefold()]
            assert secret.casefold() not in dump, (name, secret, found[:3])
    assert not await Contact.exists(birth_year=s.birth.year)
    for contact in await Contact.all():
        assert crypto.decrypt(contact.email_ciphertext, "contact-email") != target.email
    for token in await EmailToken.filter(new_email_ciphertext__isnull=False):
        assert token.new_email_ciphertext is not None
        assert crypto.decrypt(token.new_email_ciphertext, "contact-email") != target.email
    for recipient, subject, body in await all_outbox():
        assert recipient.casefold() != target.email.casefold(), subject
        for secret in identifying:
            assert secret.casefold() not in f"{subject}\n{body}".casefold(), (secret, subject)

    assert await Session.filter(member_id=target.member_id).count() == 0
    # Research data stays only unlinked: no attribute values (the birth period among
    # them), invitations or rewards point at the member any more.
    for model in (AttributeValue, Invitation, Reward):
        assert await model.filter(member_id=target.member_id).count() == 0, model
    row = await Member.get(id=target.member_id)
    assert (row.login_name, row.login_key, row.display_name, row.display_key) == (None,) * 4
    assert row.password_hash is None and row.ended_at is not None
    entries = await AuditEntry.all()
    assert any(e.target_member_id == target.member_id for e in entries), entries
    for entry in entries:
        text = f"{entry.action} {entry.reason} {json.dumps(entry.details)}".casefold()
        for secret in identifying:
            assert secret.casefold() not in text, (entry.action, secret)
    assert cached_views(names) == [], "a cached view still shows the old pseudonym"
    failed(await login(server, target.login_name), "NotAllowedError", "INVALID_CREDENTIALS")


# ---------------------------------------------------------------- 1. locking accounts


async def test_lock_ends_sessions_and_sockets_and_the_reset_link_unlocks(server: Server) -> None:
    """An admin's lock deletes the member's sessions, closes their websocket with 4403 within
    a second, makes sign-in answer ACCOUNT_LOCKED in the member's language (a wrong password
    still answers INVALID_CREDENTIALS), emails a reset link in their language; locking twice
    is applied false; the reset link unlocks (audited as member.unlock_by_reset)."""
    admin = await staff(server, "admin")
    anna = await member(server, "SV")
    assert anna.email is not None
    second = await login(server, anna.login_name)
    async with ws_client(server, second["token"]) as ws:
        await ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"member:{anna.member_id}")
        result = await locked(server, admin, anna.gid)
        assert await closed_within_a_second(ws) == 4403

    assert result == {
        "__typename": "LockSuccess",
        "locked": True,
        "applied": True,
        "member": {"id": anna.gid, "displayName": anna.display_name, "isFormerMember": False},
    }
    row = await Member.get(id=anna.member_id)
    assert row.locked_at is not None and row.status == MemberStatus.ACTIVE
    assert await Session.filter(member_id=anna.member_id).count() == 0
    assert [await me_of(server, t) for t in (anna.token, second["token"])] == [None, None]
    assert await audits("member.") == [
        ("member.lock", admin.member_id, anna.member_id, LOCK_REASON)
    ]

    # Only whoever knows the password is told about the lock, in the member's language.
    refused = await login(server, anna.login_name)
    failed(refused, "NotAllowedError", "ACCOUNT_LOCKED")
    wrong = await login(server, anna.login_name, "not the password at all")
    failed(wrong, "NotAllowedError", "INVALID_CREDENTIALS")
    mail = await server.smtp.wait_for(anna.email, "reset_password")
    assert mail["Content-Language"] == "sv", mail["Content-Language"]

    again = await locked(server, admin, anna.gid)
    assert (again["locked"], again["applied"]) == (True, False)
    assert len(await audits("member.lock")) == 1
    assert await OutboxMessage.filter(template="reset_password").count() == 1

    reset = {"token": token_in(mail), "newPassword": NEW_PASSWORD}
    answer(await server.gql(RESET_PASSWORD, {"input": reset}), "resetPassword", "Done")
    assert await locked_at(anna) is None
    assert (await audits("member.unlock"))[-1] == (
        "member.unlock_by_reset",
        None,
        anna.member_id,
        "",
    )
    signed_in = await login(server, anna.login_name, NEW_PASSWORD)
    assert signed_in["__typename"] == "LoginSuccess", signed_in
    assert await me_of(server, signed_in["token"]) is not None
    # Checked last: the client sent no Accept-Language, but the password proved whose
    # account it is, so the message should be in the member's language (Swedish).
    assert "Kontot är låst" in refused["message"], refused


async def test_who_may_lock_and_unlock(server: Server) -> None:
    """Members and researchers are FORBIDDEN; moderators are refused unless
    MODERATORS_LOCK_ACCOUNTS is on; admins cannot be locked; an admin's unlock is audited
    with its reason and repeating it is applied false; the member signs in again."""
    admin = await staff(server, "admin")
    other_admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    researcher = await staff(server, "researcher")
    bob = await member(server)
    carl = await member(server)

    for doc in (LOCK, UNLOCK):
        body = await lock_call(server, bob, carl.gid, doc)
        assert_no_permission(body, "FORBIDDEN")
        assert body["data"] is None, body
    researcher_answers = [await lock_call(server, researcher, carl.gid, d) for d in (LOCK, UNLOCK)]
    assert body_refused(researcher_answers[0], "lockAccount"), researcher_answers
    refused = await lock_call(server, mod, carl.gid)
    assert body_refused(refused, "lockAccount"), refused
    refused = answer(await lock_call(server, admin, other_admin.gid), "lockAccount")
    failed(refused, "NotAllowedError", "NOT_A_MEMBER")
    assert await locked_at(carl) is None and await locked_at(other_admin) is None
    assert await audits("member.") == []
    assert await me_of(server, carl.token) is not None

    override_settings(replace(server.settings, moderators_lock_accounts=True))
    by_mod = await locked(server, mod, carl.gid)
    assert (by_mod["locked"], by_mod["applied"]) == (True, True)
    refused = answer(await lock_call(server, mod, admin.gid), "lockAccount")
    failed(refused, "NotAllowedError", "NOT_A_MEMBER")
    assert await me_of(server, carl.token) is None
    override_settings(server.settings)
    assert body_refused(await lock_call(server, mod, carl.gid, UNLOCK), "unlockAccount")
    assert await locked_at(carl) is not None

    unlocked = await locked(server, admin, carl.gid, UNLOCK)
    assert (unlocked["locked"], unlocked["applied"]) == (False, True)
    twice = await locked(server, admin, carl.gid, UNLOCK)
    assert (twice["locked"], twice["applied"]) == (False, False)
    assert await locked_at(carl) is None
    assert await audits("member.") == [
        ("member.lock", mod.member_id, carl.member_id, LOCK_REASON),
        ("member.unlock", admin.member_id, carl.member_id, LOCK_REASON),
    ]
    assert (await login(server, carl.login_name))["__typename"] == "LoginSuccess"
    # Checked last: researchers are no lockers at all, refused by the schema as for
    # every moderation mutation (not told NOT_FOUND about the member).
    for body in researcher_answers:
        assert_no_permission(body, "FORBIDDEN")


def body_refused(body: dict[str, Any], field: str) -> bool:
    """Refused either by the schema (FORBIDDEN) or by the resolver (NotAllowedError)."""
    if body.get("errors"):
        return bool(body["errors"][0]["extensions"]["code"] == "FORBIDDEN")
    return bool(body["data"][field]["__typename"] == "NotAllowedError")


# ---------------------------------------------------------------- 2. my data (R12)


async def test_my_data_holds_everything_mine_and_nothing_of_others(server: Server) -> None:
    """myData has the member's contact data, consents, profile, research attributes, rules
    acceptance, own post, reaction, report, invitation, answers and reward with the right
    values; no other member's email, names, posts or answers; and it is audited."""
    s = await busy_member(server)
    t, bob, author = s.target, s.bob, s.w.author
    body = await server.gql(MY_DATA, token=t.token)
    assert "errors" not in body, body
    data = body["data"]["myData"]

    contact = data["contact"]
    assert (contact["email"], contact["birthYear"], contact["language"]) == (t.email, 1957, "sv")
    assert contact["verifiedOn"] is not None
    consents = {c["kind"]: c["version"] for c in contact["consents"]}
    assert consents == {"rules": "1", "privacy_notice": "1"}, contact
    profile = data["profile"]
    assert profile["memberId"] == t.member_id and profile["loginName"] == t.login_name
    assert profile["displayName"] == t.display_name and profile["language"] == "sv"
    assert profile["status"] == "active"
    attributes = data["researchAttributes"]
    # The built-in birth period (derived at registration) is theirs too.
    assert attributes.pop("birth_period", ["1955"]) == ["1955"], attributes
    assert attributes == {"region": ["south"], "household": ["3"]}
    rules_id = db_id(await current_rules_id(server), "RulesVersion")
    assert [a["rulesVersionId"] for a in data["rulesAcceptances"]] == [rules_id]
    assert [(p["id"], p["text"]) for p in data["posts"]] == [(db_id(s.post), s.texts["mine"])]
    assert [(r["postId"], r["kind"]) for r in data["reactions"]] == [(db_id(s.w.post), "like")]
    assert [(r["postId"], r["category"], r["note"]) for r in data["reportsFiled"]] == [
        (db_id(s.reply), "personal_attack", s.texts["note"])
    ]
    [invitation] = data["invitations"]
    assert (invitation["study"], invitation["status"]) == (
        "Enkät om ärenden",
        "completed",
    )  # in the member's language (sv)
    assert invitation["completedAt"] is not None
    assert sorted(json.dumps(a["answer"], sort_keys=True) for a in data["answers"]) == sorted(
        json.dumps(v, sort_keys=True)
        for v in ({"choice": "office"}, {"scale": 8}, {"text": s.texts["my_answer"]})
    )
    [reward] = data["rewards"]
    assert reward["wonAt"] is not None and reward["claimedAt"] is None
    kinds = {n["kind"] for n in data["notifications"]}
    assert {"REPLY", "STUDY_INVITATION", "REWARD_WON"} <= kinds, kinds

    dumped = json.dumps(data, ensure_ascii=False).casefold()
    others = [
        s.texts["bobs_reply"],
        s.texts["bobs_answer"],
        "Ketjun aloittajan oma teksti",
        *[x for o in (bob, author) for x in (o.email or "", o.login_name, o.display_name)],
    ]
    for other in others:
        assert other and other.casefold() not in dumped, other

    [entry] = await AuditEntry.filter(action="member.data_export")
    assert (entry.actor_id, entry.target_member_id) == (t.member_id, t.member_id)


async def test_my_data_needs_a_signed_in_caller(server: Server) -> None:
    """Anonymous callers get UNAUTHENTICATED and nothing is audited."""
    await member(server)
    body = await server.gql(MY_DATA)
    assert_unauthenticated(body)
    assert body.get("data") is None, body
    assert await AuditEntry.filter(action="member.data_export").count() == 0


# ---------------------------------------------------------------- 3. community health


def month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def health(server: Server, admin: Account, months: int = 12) -> dict[str, Any]:
    body = await server.gql(HEALTH, {"months": months}, token=admin.token)
    result: dict[str, Any] = answer(body, "communityHealth")
    return result


async def test_community_health_counts_activity_joins_leaves_and_responses(
    server: Server,
) -> None:
    """Over 150 days: six members join, one completes the first survey and posts, one posts
    at day 100, one is banned at day 100, one posts and another resigns at day 150, a
    seventh joins and a second survey goes out. Active counts, members (staff and ended
    memberships excluded) and the months' joins, leaves, invitations and rates follow."""
    allow_many_posts(server)
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    researcher = await staff(server, "researcher")
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, admin, area)
    a, b, c, _never_active, e, g = [await member(server) for _ in range(6)]
    never_verified = await register(server)  # pending: neither joined nor a member
    assert never_verified["__typename"] == "RegisterSuccess", never_verified
    t0 = clock.now()
    first = await launched_survey(server, researcher)
    assert first["invited"] == 6, first
    await complete(server, a, first)
    await posted(server, a, thread, "Ensimmäinen päivä")

    clock.move(timedelta(days=100))
    t1 = clock.now()
    b, g, mod = [await signed_in_again(server, x) for x in (b, g, mod)]
    await posted(server, b, thread, "Sata päivää myöhemmin")
    await posted(server, g, thread, "Ostakaa halvalla")
    await acted(server, mod, g.gid, "BAN", "SELLING", "Myyntiä")

    clock.move(timedelta(days=50))
    now = clock.now()
    c, e, admin, researcher = [await signed_in_again(server, x) for x in (c, e, admin, researcher)]
    await posted(server, c, thread, "Tänään")
    answer(await server.gql(RESIGN, {"password": PASSWORD}, token=e.token), "resign", "Done")
    await member(server)
    second = await launched_survey(server, researcher)
    assert second["invited"] == 5, second
    await complete(server, c, second)

    report = await health(server, admin)
    assert (report["members"], report["active30Days"]) == (5, 1), report
    assert (report["active90Days"], report["active180Days"]) == (2, 3), report
    months = report["months"]
    assert len(months) == 12 and months[0]["month"] == month(now), months
    listed = [m["month"] for m in months]
    assert listed == sorted(listed, reverse=True) and len(set(listed)) == 12
    expected = {
        month(t0): {"joined": 6, "left": 0, "invitations": 6, "completed": 1},
        month(t1): {"joined": 0, "left": 1, "invitations": 0, "completed": 0},
        month(now): {"joined": 1, "left": 1, "invitations": 5, "completed": 1},
    }
    assert len(expected) == 3
    zero = {"joined": 0, "left": 0, "invitations": 0, "completed": 0}
    for row in months:
        counts = {k: row[k] for k in zero}
        assert counts == expected.get(row["month"], zero), row
    rates = {m["month"]: m["responseRate"] for m in months}
    assert rates[month(t0)] == round(1 / 6, 4) and rates[month(now)] == 0.2, rates
    assert rates[month(t1)] is None

    # A shorter window lists fewer months (day 0 falls out); out of range means 12.
    short = (await health(server, admin, 3))["months"]
    assert [m["month"] for m in short] == listed[:3]
    assert sum(m["joined"] for m in short) == 1 and sum(m["left"] for m in short) == 2
    assert len((await health(server, admin, 99))["months"]) == 12


async def test_community_health_is_for_admins_only(server: Server) -> None:
    """Members, moderators and researchers are FORBIDDEN; anonymous callers UNAUTHENTICATED."""
    callers = [await member(server), *[await staff(server, r) for r in ("moderator", "researcher")]]
    for caller in callers:
        body = await server.gql(HEALTH, {"months": 12}, token=caller.token)
        assert_no_permission(body, "FORBIDDEN")
        assert body.get("data") is None, body
    assert_unauthenticated(await server.gql(HEALTH, {"months": 12}))


# ---------------------------------------------------------------- 4. nothing left after the end


async def test_resignation_leaves_nothing_that_identifies_the_member(server: Server) -> None:
    """After `resign`, no table of either register, no mail, session, audit entry or cached
    view holds the member's email, names, birth date or blind indexes."""
    s = await busy_member(server)
    body = await server.gql(RESIGN, {"password": PASSWORD}, token=s.target.token)
    answer(body, "resign", "Done")
    assert (await Member.get(id=s.target.member_id)).status == MemberStatus.RESIGNED
    assert ("member.resign", s.target.member_id, s.target.member_id, "") in await audits("member.")
    await assert_erased(server, s)


async def test_purged_ban_leaves_nothing_that_identifies_the_member(server: Server) -> None:
    """A ban keeps the address's hold; the purge after BAN_HOLD_DAYS (moved clock) then
    leaves nothing that identifies the member anywhere."""
    s = await busy_member(server)
    assert s.target.email is not None
    await acted(server, s.w.mod, s.target.gid, "BAN", "PERSONAL_ATTACK", "Henkilöön menevää")
    await server.smtp.wait_for(s.target.email, "banned")
    assert await purge_ended_bans() == 0
    clock.move(timedelta(days=server.settings.ban_hold_days + 1))
    assert await purge_ended_bans() == 1
    assert (await Member.get(id=s.target.member_id)).status == MemberStatus.BANNED
    assert [a[0] for a in await audits("member.ban")] == ["member.ban", "member.ban_purged"]
    await assert_erased(server, s)


async def test_inactivity_end_leaves_nothing_that_identifies_the_member(server: Server) -> None:
    """run_lifecycle warns the inactive after INACTIVITY_WARN_DAYS (by email too); those who
    take part again stay; at INACTIVITY_END_DAYS the target's membership ends and nothing
    that identifies them is left anywhere."""
    s = await busy_member(server)
    assert s.target.email is not None
    settings = server.settings
    clock.move(timedelta(days=settings.inactivity_warn_days + 1))
    first = await run_lifecycle()
    assert (first.warned, first.ended) == (3, 0), first
    await server.smtp.wait_for(s.target.email, "inactivity_warning")
    for other in (s.w.author, s.bob):
        await posted(server, await signed_in_again(server, other), s.w.thread, "Olen yhä täällä")

    clock.move(timedelta(days=settings.inactivity_end_days - settings.inactivity_warn_days))
    second = await run_lifecycle()
    assert second.ended == 1, second
    assert (await Member.get(id=s.target.member_id)).status == MemberStatus.RESIGNED
    for other in (s.w.author, s.bob):
        assert (await Member.get(id=other.member_id)).status == MemberStatus.ACTIVE
    entries = await audits("member.inactivity_end")
    assert entries == [("member.inactivity_end", None, s.target.member_id, "")]
    await assert_erased(server, s)
