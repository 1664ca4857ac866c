"""The membership lifecycle job (R17, R18) and new rules (R19), with a moved clock.

Covers: the inactivity warning (in-app, live on the notifications stream, and by email
in the member's language; once; never for recently active members or staff; a dry run
changes nothing), taking part after a warning cancelling it, the end of membership at
six months (personal data erased as on resignation, posts kept as "former member",
a grace week after a late warning), the retention purges (delivered mail, expired
sessions, used or expired email tokens, unverified registrations, bans after their
hold), the `community lifecycle` command, two rounds running at once, and publishing
new rules (live notice, the write gate, acceptance history, optional email).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import cli
from config import override_settings
from models.community import (
    Member,
    MemberStatus,
    Notification,
    RulesAcceptance,
    RulesVersion,
    Session,
)
from models.contacts import BannedAddress, Consent, Contact, EmailToken, OutboxMessage
from models.discussions import Post
from resolvers import clock, crypto
from resolvers.lifecycle import run_lifecycle
from subscriptions.bus import get_bus, set_bus
from tests import dbtools
from tests.conftest import Server
from tests.helpers import (
    ACCEPT_RULES,
    REQUEST_PASSWORD_RESET,
    Account,
    login,
    me_of,
    member,
    publish_rules,
    register,
    sign_in,
    staff,
    unique,
)
from tests.smtp import body_of
from tests.test_mail import TestWorker, paused_worker  # noqa: F401
from tests.test_moderation import (
    NOTIFICATIONS_SUBSCRIPTION,
    add_post,
    create_area,
    db_id,
    failed,
    posted,
    start_thread,
    thread_posts,
    wait_listeners,
    world,
    ws_client,
)
from tests.test_sanctions import acted, audits, react, signed_in_again
from tests.test_sessions import session_row
from tests.test_studies_smoke import launched_survey
from tests.test_study_participation import complete, mails

WARNING = "INACTIVITY_WARNING"
WARN_SUBJECTS = {
    "fi": "Jäsenyytesi yhteisössä on päättymässä",
    "sv": "Ditt medlemskap i gemenskapen håller på att upphöra",
    "en": "Your community membership is about to end",
}
RULES_SUBJECTS = {
    "fi": ("Yhteisön säännöt ovat muuttuneet", "versio 2"),
    "sv": ("Gemenskapens regler har ändrats", "version 2"),
    "en": ("The community rules have changed", "version 2"),
}


# ---------------------------------------------------------------- helpers


def move_days(n: float) -> None:
    clock.move(timedelta(days=n))


async def warnings_of(account: Account) -> list[Notification]:
    return await Notification.filter(member_id=account.member_id, kind=WARNING).order_by("id")


async def contact_of(member_id: int) -> Contact | None:
    return await Contact.get_or_none(member_index=crypto.member_index(member_id))


async def contact_rows(contact_id: Any) -> tuple[int, int, int]:
    """(consents, email tokens, outbox messages) of one contact."""
    return (
        await Consent.filter(contact_id=contact_id).count(),
        await EmailToken.filter(contact_id=contact_id).count(),
        await OutboxMessage.filter(contact_id=contact_id).count(),
    )


async def registers() -> tuple[Any, Any]:
    """Every row of both registers (to prove that a dry run changed nothing)."""
    return await dbtools.all_rows("community"), await dbtools.all_rows("contacts")


async def member_while_delivering(server: Server) -> Account:
    """`member()` while the test delivers the mail (the server's worker is paused)."""
    task = asyncio.create_task(member(server))
    while not task.done():
        await TestWorker(server.settings).deliver_due()
        await asyncio.sleep(0.05)
    return await task


async def outbox_of(contact_id: Any) -> list[tuple[str, str]]:
    rows = await OutboxMessage.filter(contact_id=contact_id).order_by("template")
    return [(m.template, m.status) for m in rows]


async def mails_to(server: Server, address: str, template: str, n: int) -> None:
    """Wait until `address` has `n` emails of `template`."""
    for _ in range(200):
        if len(server.smtp.sent_to(address, template)) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} {template} emails to {address}")


# ---------------------------------------------------------------- the warning


async def test_inactive_members_are_warned_once_live_and_by_email_in_their_language(
    server: Server,
) -> None:
    """After 150 days without taking part, each member gets one INACTIVITY_WARNING notice
    (live on the open notifications stream) and one email in their language naming the day
    the membership ends; a member who posted recently and staff get nothing; a dry run
    counts the members and changes no row; a second round warns nobody again."""
    people = {lang: await member(server, language=lang.upper()) for lang in ("fi", "sv", "en")}
    recent = await member(server)
    admin = await staff(server, "admin")
    moderator = await staff(server, "moderator")
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, admin, area)

    move_days(151)
    recent = await signed_in_again(server, recent)
    await posted(server, recent, thread, "Olen yhä mukana")
    fi = await signed_in_again(server, people["fi"])
    async with ws_client(server, fi.token) as ws:
        await ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"member:{fi.member_id}")
        before = await registers()
        dry = await run_lifecycle(dry_run=True)
        assert (dry.warned, dry.ended, dry.dry_run) == (3, 0, True), dry
        assert await registers() == before
        await ws.expect_silence(0.5)
        assert await OutboxMessage.filter(template="inactivity_warning").count() == 0

        started = clock.now()
        report = await run_lifecycle()
        assert (report.warned, report.ended, report.dry_run) == (3, 0, False), report
        notice = await ws.next_data("notices", "notifications")
    assert notice["kind"] == WARNING and notice["subjectId"] is None, notice

    for lang, account in people.items():
        rows = await warnings_of(account)
        assert len(rows) == 1, rows
        warned_at = (await Member.get(id=account.member_id)).inactivity_warned_at
        assert warned_at is not None and started <= warned_at <= clock.now()
        # 180 days after the last participation (the activation, 151 days ago).
        ends = (await Member.get(id=account.member_id)).activated_at
        assert ends is not None
        until = ends + timedelta(days=180)
        assert rows[0].params == {"until": until.isoformat()}
        ends_on = until.date().isoformat()
        mail = await server.smtp.wait_for(account.email or "", "inactivity_warning")
        assert mail["Subject"] == WARN_SUBJECTS[lang] and mail["Content-Language"] == lang
        assert ends_on in body_of(mail), body_of(mail)
    assert notice["position"] == (await warnings_of(fi))[0].position
    for other in (recent, admin, moderator):
        assert await warnings_of(other) == []
        assert (await Member.get(id=other.member_id)).inactivity_warned_at is None

    again = await run_lifecycle()
    assert again.warned == 0, again
    assert await Notification.filter(kind=WARNING).count() == 3
    assert await OutboxMessage.filter(template="inactivity_warning").count() == 3
    await asyncio.sleep(0.5)
    for account in people.values():
        assert len(server.smtp.sent_to(account.email or "", "inactivity_warning")) == 1


async def test_taking_part_after_the_warning_cancels_it_until_a_new_inactive_period(
    server: Server,
) -> None:
    """Warned members who then post, react or answer a study are not ended at 180 days
    from their earlier activity (a warned member who did nothing is); after another 150
    days without taking part they are warned a second time."""
    poster, reactor, answerer, idle = [await member(server) for _ in range(4)]
    move_days(151)
    assert (await run_lifecycle()).warned == 4
    admin = await staff(server, "admin")
    researcher = await staff(server, "researcher")
    area = await create_area(server, admin)
    thread, first_post = await start_thread(server, admin, area)
    poster, reactor, answerer = [
        await signed_in_again(server, a) for a in (poster, reactor, answerer)
    ]
    await posted(server, poster, thread, "Täällä ollaan")
    assert (await react(server, reactor, first_post))["__typename"] == "PostSuccess"
    await complete(server, answerer, await launched_survey(server, researcher))
    active = (poster, reactor, answerer)
    for account in active:
        row = await Member.get(id=account.member_id)
        assert row.inactivity_warned_at is not None and row.last_active_at is not None
        assert row.last_active_at > row.inactivity_warned_at

    move_days(30)  # 181 days after their activation
    report = await run_lifecycle()
    assert (report.warned, report.ended) == (0, 1), report
    assert (await Member.get(id=idle.member_id)).status == MemberStatus.RESIGNED
    for account in active:
        row = await Member.get(id=account.member_id)
        assert (row.status, row.login_name) == (MemberStatus.ACTIVE, account.login_name)
        assert len(await warnings_of(account)) == 1

    move_days(121)  # 151 days after they took part
    report = await run_lifecycle()
    assert (report.warned, report.ended) == (3, 0), report
    for account in active:
        assert len(await warnings_of(account)) == 2
        await mails(server, account, "inactivity_warning", 2)
        assert (await Member.get(id=account.member_id)).status == MemberStatus.ACTIVE


# ---------------------------------------------------------------- the end


async def test_a_warned_member_still_inactive_at_six_months_is_ended_and_erased(
    server: Server,
) -> None:
    """At 180 days, a month after the warning, the member is ended as on resignation:
    names and password, sessions, notices and the whole contact record (consents, tokens,
    mail) go, an audit entry says why, and their post stays as a former member's. A member
    inactive for 182 days but warned only yesterday is not ended until a week has passed;
    dry runs count the end without doing it."""
    admin = await staff(server, "admin")
    area = await create_area(server, admin)
    anna = await member(server)
    thread, anna_post = await start_thread(server, anna, area, "Annan kysymys")
    bert = await member(server)
    move_days(40)
    bert = await signed_in_again(server, bert)
    await posted(server, bert, thread, "Bertin vastaus")
    move_days(111)  # day 151
    assert (await run_lifecycle()).warned == 1
    assert len(await warnings_of(anna)) == 1 and await warnings_of(bert) == []

    move_days(30)  # day 181
    anna = await signed_in_again(server, anna)
    asked = await server.gql(REQUEST_PASSWORD_RESET, {"email": anna.email})
    assert asked["data"]["requestPasswordReset"]["__typename"] == "Done", asked
    await server.smtp.wait_for(anna.email or "", "reset_password")
    contact = await contact_of(anna.member_id)
    assert contact is not None
    consents, tokens, outbox = await contact_rows(contact.id)
    assert consents > 0 and tokens > 0 and outbox > 0
    assert await Session.filter(member_id=anna.member_id).count() == 1
    dry = await run_lifecycle(dry_run=True)
    assert (dry.warned, dry.ended) == (0, 1), dry
    assert (await Member.get(id=anna.member_id)).status == MemberStatus.ACTIVE
    assert await contact_of(anna.member_id) is not None

    report = await run_lifecycle()
    assert (report.warned, report.ended) == (0, 1), report
    row = await Member.get(id=anna.member_id)
    assert row.status == MemberStatus.RESIGNED and row.ended_at is not None
    assert (row.login_name, row.display_name, row.password_hash) == (None, None, None)
    assert await contact_of(anna.member_id) is None
    assert await contact_rows(contact.id) == (0, 0, 0)
    assert await Session.filter(member_id=anna.member_id).count() == 0
    assert await Notification.filter(member_id=anna.member_id).count() == 0
    assert await me_of(server, anna.token) is None
    failed(await login(server, anna.login_name), "NotAllowedError", "INVALID_CREDENTIALS")
    assert await audits("member.inactivity_end") == [
        ("member.inactivity_end", None, anna.member_id, "")
    ]
    admin = await signed_in_again(server, admin)
    author = (await thread_posts(server, admin, thread))[anna_post]["author"]
    assert author["id"] == anna.gid and author["isFormerMember"] is True, author
    assert author["displayName"] == "entinen jäsen", author
    assert await warnings_of(bert) == []  # 141 days since bert took part

    move_days(40)  # day 221: bert inactive for 181 days, warned only now
    assert (await run_lifecycle()).warned == 1
    move_days(1)
    assert (await run_lifecycle(dry_run=True)).ended == 0
    report = await run_lifecycle()
    assert (report.warned, report.ended) == (0, 0), report
    assert (await Member.get(id=bert.member_id)).status == MemberStatus.ACTIVE
    move_days(6)  # a week after the warning
    assert (await run_lifecycle(dry_run=True)).ended == 1
    assert (await Member.get(id=bert.member_id)).status == MemberStatus.ACTIVE
    assert (await run_lifecycle()).ended == 1
    assert (await Member.get(id=bert.member_id)).status == MemberStatus.RESIGNED
    assert await contact_of(bert.member_id) is None


async def test_a_late_warning_names_the_day_the_membership_really_ends(server: Server) -> None:
    """When the first warning comes late (the member already inactive for 200 days), the
    membership ends a week later; the date the notice and the email name must be that day,
    not a later one the member could trust and lose their membership before."""
    account = await member(server, language="EN")
    move_days(200)
    assert (await run_lifecycle()).warned == 1
    notice = (await warnings_of(account))[0]
    mail = await server.smtp.wait_for(account.email or "", "inactivity_warning")
    move_days(7)
    assert (await run_lifecycle()).ended == 1
    ended_at = (await Member.get(id=account.member_id)).ended_at
    assert ended_at is not None
    assert notice.params["until"][:10] == ended_at.date().isoformat(), notice.params
    assert ended_at.date().isoformat() in body_of(mail)


# ---------------------------------------------------------------- retention purges


async def test_delivered_mail_and_used_or_expired_tokens_are_purged(
    server: Server,
    paused_worker: None,  # noqa: F811
) -> None:
    """A used token goes at once and an expired one after its expiry; delivered mail goes
    after OUTBOX_RETENTION_DAYS while mail still waiting for delivery is kept."""
    account = await member_while_delivering(server)
    contact = await contact_of(account.member_id)
    assert contact is not None
    assert await outbox_of(contact.id) == [("verify", "sent")]
    asked = await server.gql(REQUEST_PASSWORD_RESET, {"email": account.email})
    assert asked["data"]["requestPasswordReset"]["__typename"] == "Done", asked
    assert await outbox_of(contact.id) == [("reset_password", "pending"), ("verify", "sent")]
    tokens = await EmailToken.filter(contact_id=contact.id).order_by("purpose")
    assert [(t.purpose, t.used_at is not None) for t in tokens] == [
        ("reset", False),
        ("verify", True),
    ]

    report = await run_lifecycle()
    assert (report.tokens_purged, report.mail_purged) == (1, 0), report
    assert [t.purpose for t in await EmailToken.filter(contact_id=contact.id)] == ["reset"]
    clock.move(timedelta(hours=2, minutes=1))  # the reset link has expired
    assert (await run_lifecycle()).tokens_purged == 1
    assert await EmailToken.filter(contact_id=contact.id).count() == 0

    move_days(server.settings.outbox_retention_days - 1)
    assert (await run_lifecycle()).mail_purged == 0
    move_days(2)
    dry = await run_lifecycle(dry_run=True)
    assert dry.mail_purged == 1
    assert len(await outbox_of(contact.id)) == 2
    assert (await run_lifecycle()).mail_purged == 1
    assert await outbox_of(contact.id) == [("reset_password", "pending")]
    assert await contact_of(account.member_id) is not None


async def test_expired_sessions_are_purged_and_live_ones_kept(server: Server) -> None:
    """A session idle past SESSION_IDLE_MINUTES, and one past its absolute expiry though
    used recently, are deleted by the job; sessions still live are kept."""
    account = await member(server)  # signed in: the session that will go idle
    busy = await sign_in(server, account.login_name)
    move_days(10)
    assert await me_of(server, busy) is not None
    move_days(5)
    assert await session_row(account.token) is not None
    report = await run_lifecycle()
    assert report.sessions_purged == 1, report
    assert await session_row(account.token) is None
    assert await me_of(server, busy) is not None

    for _ in range(7):  # used every ten days, until day 85
        move_days(10)
        assert await me_of(server, busy) is not None
    move_days(6)  # day 91: past the absolute limit, idle for six days
    fresh = await sign_in(server, account.login_name)
    row = await session_row(busy)
    assert row is not None and row.expires_at <= clock.now()
    assert clock.now() - row.last_seen_at < timedelta(days=7)
    assert (await run_lifecycle(dry_run=True)).sessions_purged == 1
    assert await session_row(busy) is not None
    assert (await run_lifecycle()).sessions_purged == 1
    assert await session_row(busy) is None
    assert await session_row(fresh) is not None
    assert await me_of(server, fresh) is not None


async def test_unverified_registrations_are_erased_after_the_retention_time(
    server: Server,
) -> None:
    """A registration never verified stays (with its contact, consents, token and mail) for
    UNVERIFIED_RETENTION_DAYS; then the job erases all of it, and its login name and
    address are free again."""
    login_name = unique("odottaa")
    email = f"{login_name}@example.com"
    result = await register(server, email=email, loginName=login_name)
    assert result["__typename"] == "RegisterSuccess", result
    await server.smtp.wait_for(email, "verify")
    row = await Member.get(login_name=login_name)
    assert row.status == MemberStatus.PENDING
    contact = await contact_of(row.id)
    assert contact is not None
    rows = await contact_rows(contact.id)
    assert all(n > 0 for n in rows), rows

    move_days(server.settings.unverified_retention_days - 1)
    report = await run_lifecycle()
    assert report.unverified_purged == 0, report
    assert await Member.exists(id=row.id)
    assert await contact_rows(contact.id) == (rows[0], 0, rows[2])  # the token has expired
    move_days(1.5)
    assert (await run_lifecycle(dry_run=True)).unverified_purged == 1
    assert await Member.exists(id=row.id)
    assert (await run_lifecycle()).unverified_purged == 1
    assert not await Member.exists(id=row.id)
    assert await contact_of(row.id) is None
    assert await contact_rows(contact.id) == (0, 0, 0)
    assert (await run_lifecycle()).unverified_purged == 0

    again = await register(server, email=email, loginName=login_name)
    assert again["__typename"] == "RegisterSuccess", again
    await mails_to(server, email, "verify", 2)
    assert (await Member.get(login_name=login_name)).status == MemberStatus.PENDING


async def test_the_job_erases_a_banned_member_after_the_legal_hold(server: Server) -> None:
    """The ban's hold on the address and the banned member's contact stay until
    BAN_HOLD_DAYS have passed; then the job erases them (a dry run only counts)."""
    w = await world(server)
    bob = await member(server)
    await acted(server, w.mod, bob.gid, "BAN", "ILLEGAL_ACTIVITY", "Laitonta")
    await server.smtp.wait_for(bob.email or "", "banned")
    index = crypto.member_index(bob.member_id)
    contact = await contact_of(bob.member_id)
    assert contact is not None and await BannedAddress.exists(member_index=index)

    move_days(server.settings.ban_hold_days - 1)
    assert (await run_lifecycle()).bans_purged == 0
    assert await BannedAddress.exists(member_index=index)
    assert await contact_of(bob.member_id) is not None
    move_days(2)
    assert (await run_lifecycle(dry_run=True)).bans_purged == 1
    assert await BannedAddress.exists(member_index=index)
    assert (await run_lifecycle()).bans_purged == 1
    assert not await BannedAddress.exists(member_index=index)
    assert await contact_of(bob.member_id) is None
    assert await contact_rows(contact.id) == (0, 0, 0)
    row = await Member.get(id=bob.member_id)
    assert row.status == MemberStatus.BANNED
    assert (row.login_name, row.display_name, row.password_hash) == (None, None, None)
    assert await audits("member.ban_purged") == [("member.ban_purged", None, bob.member_id, "")]
    assert (await run_lifecycle()).bans_purged == 0


# ---------------------------------------------------------------- command line and concurrency


async def test_the_lifecycle_command_reports_what_it_did_or_would_do(server: Server) -> None:
    """`community lifecycle --dry-run` reports the counts and changes nothing; without
    --dry-run the same round is done."""
    account = await member(server)
    move_days(151)
    counts = (
        "warned 1, ended 0, bans_purged 0, mail_purged 1, sessions_purged 1, "
        "tokens_purged 1, unverified_purged 0"
    )
    server_bus = get_bus()
    try:
        before = await registers()
        said = await cli.lifecycle(server.settings, dry_run=True)
        assert await registers() == before
        done = await cli.lifecycle(server.settings, dry_run=False)
    finally:
        set_bus(server_bus)
    assert said == f"would do (dry run): {counts}"
    assert done == f"done: {counts}"
    assert len(await warnings_of(account)) == 1
    await server.smtp.wait_for(account.email or "", "inactivity_warning")


async def test_two_rounds_at_once_warn_and_end_each_member_once(server: Server) -> None:
    """Two rounds started together warn each member once (one notice, one email) and,
    later, end each membership once (one audit entry)."""
    people = [await member(server, language=lang) for lang in ("FI", "SV", "EN")]
    move_days(151)
    first, second = await asyncio.gather(run_lifecycle(), run_lifecycle())
    assert first.warned + second.warned == 3, (first, second)
    assert await OutboxMessage.filter(template="inactivity_warning").count() == 3
    for account in people:
        assert len(await warnings_of(account)) == 1
    for account in people:
        await mails(server, account, "inactivity_warning", 1)

    move_days(30)
    first, second = await asyncio.gather(run_lifecycle(), run_lifecycle())
    assert first.ended + second.ended == 3, (first, second)
    entries = await audits("member.inactivity_end")
    assert sorted(e[2] or 0 for e in entries) == sorted(p.member_id for p in people)


async def test_two_rounds_at_once_erase_a_ban_once(server: Server) -> None:
    """Two rounds started together after a ban's hold erase the banned member once:
    one `member.ban_purged` audit entry and a count of one between them."""
    moderator = await staff(server, "moderator")
    bob = await member(server)
    await acted(server, moderator, bob.gid, "BAN", "OTHER")
    move_days(server.settings.ban_hold_days + 1)  # nobody else to warn: both reach the purge
    first, second = await asyncio.gather(run_lifecycle(), run_lifecycle())
    assert await audits("member.ban_purged") == [("member.ban_purged", None, bob.member_id, "")]
    assert first.bans_purged + second.bans_purged == 1, (first, second)


# ---------------------------------------------------------------- new rules


async def test_new_rules_notify_members_live_gate_writing_and_email_when_enabled(
    server: Server,
) -> None:
    """Publishing rules v2 notifies every member live (RULES_CHANGED), staff not; members
    cannot post until they accept v2, and both acceptances are kept. With
    RULES_CHANGE_EMAIL on each member gets the email in their language; with it off
    (v3) the notice comes but no email."""
    admin = await staff(server, "admin")
    people = [await member(server, language=lang) for lang in ("FI", "SV", "EN")]
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, admin, area)
    v1_id = (await RulesVersion.get(version=1)).id

    override_settings(replace(server.settings, rules_change_email=True))
    async with ws_client(server, people[0].token) as ws:
        await ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"member:{people[0].member_id}")
        v2 = await publish_rules(server, admin, 2)
        notice = await ws.next_data("notices", "notifications")
    assert notice["kind"] == "RULES_CHANGED" and notice["subjectId"] == v2["id"], notice
    v2_id = db_id(v2["id"], "RulesVersion")
    assert await Notification.filter(member_id=admin.member_id).count() == 0

    for account, lang in zip(people, ("fi", "sv", "en"), strict=True):
        rows = await Notification.filter(member_id=account.member_id)
        assert [(r.kind, r.params) for r in rows] == [("RULES_CHANGED", {"rulesVersionId": v2_id})]
        mail = await server.smtp.wait_for(account.email or "", "rules_changed")
        subject, version = RULES_SUBJECTS[lang]
        assert mail["Subject"] == subject and mail["Content-Language"] == lang
        assert version in body_of(mail) and "https://community.test/rules" in body_of(mail)

        refused = await add_post(server, account, thread, "Saanko kirjoittaa?")
        failed(refused, "NotAllowedError", "RULES_NOT_ACCEPTED")
        accepted = await server.gql(ACCEPT_RULES, {"versionId": v2["id"]}, token=account.token)
        assert accepted["data"]["acceptRules"]["__typename"] == "AcceptRulesSuccess", accepted
        await posted(server, account, thread, f"Hyväksytty {lang}")
        history = await RulesAcceptance.filter(member_id=account.member_id).order_by("id")
        assert [r.rules_id for r in history] == [v1_id, v2_id]  # type: ignore[attr-defined]
    assert await Post.filter(author_id__in=[p.member_id for p in people]).count() == 3

    override_settings(server.settings)  # RULES_CHANGE_EMAIL off
    v3 = await publish_rules(server, admin, 3)
    v3_id = db_id(v3["id"], "RulesVersion")
    for account in people:
        rows = await Notification.filter(member_id=account.member_id).order_by("id")
        assert [r.params["rulesVersionId"] for r in rows] == [v2_id, v3_id]
    failed(
        await add_post(server, people[1], thread, "Entä nyt?"),
        "NotAllowedError",
        "RULES_NOT_ACCEPTED",
    )
    assert await OutboxMessage.filter(template="rules_changed").count() == 3
    await asyncio.sleep(0.5)
    for account in people:
        assert len(server.smtp.sent_to(account.email or "", "rules_changed")) == 1
