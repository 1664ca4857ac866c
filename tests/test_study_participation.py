"""Taking part in studies through the API, with real email and the stored rows checked:
launching (one invitation each, a live notice, mail in the member's language), the
member's views and R7, answers and their validation, reminders from the research job,
discussion tasks (invited members only, masked threads), and bulk mail (throttle,
the admins' outbox view, retrying failed mail).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
from strawberry.relay import GlobalID

from models.community import AuditEntry, Member, Notification
from models.contacts import OutboxMessage
from models.discussions import Area, Post, Reaction
from models.research import Answer, Invitation, InvitationStatus, Response
from resolvers import clock
from resolvers.studies import run_research_job
from tests.conftest import Server
from tests.helpers import (
    NODE,
    REQUEST_PASSWORD_RESET,
    Account,
    assert_no_permission,
    member,
    staff,
)
from tests.smtp import body_of
from tests.test_mail import TestWorker, closed_port, paused_worker  # noqa: F401
from tests.test_moderation import (
    NOTIFICATIONS_SUBSCRIPTION,
    REACT,
    START_THREAD,
    THREAD_EVENTS,
    add_post,
    ckey,
    db_id,
    posted,
    start_thread,
    thread_posts,
    wait_listeners,
    ws_client,
)
from tests.test_sanctions import acted
from tests.test_studies_smoke import (
    CREATE_STUDY,
    LAUNCH,
    MY_STUDY,
    QUESTIONS,
    SAVE_ANSWERS,
    SET_QUESTIONS,
    SUBMIT,
    launched_survey,
    ok,
    study_input,
)

BULK_WAIT = 10.0  # the suite's own mail worker has a large bulk allowance (conftest)

MY_INVITATIONS = """
query($state: InvitationState) { myInvitations(state: $state) {
  state invitedAt completedAt study { id title reward state } } }
"""
DECLINE = """
mutation($study: ID!) { declineInvitation(studyId: $study) {
  __typename ... on MemberStudySuccess { study { state submitted } }
  ... on Error { code message } ... on InputError { field } } }
"""
CLOSE = """
mutation($id: ID!) { closeStudy(id: $id) {
  __typename ... on StudySuccess { study { status } } ... on Error { code message } } }
"""
STUDY = """
query($id: ID!) { study(id: $id) { status kind masked areaId
  participation { invited opened started completed declined responseRate } } }
"""
SET_STUDY_EMAILS = """
mutation($on: Boolean!) { setStudyEmails(on: $on) {
  __typename ... on SettingSuccess { on } ... on Error { code message } } }
"""
AREAS = "{ areas { id } }"
OUTBOX = """
{ outboxStatus { pending bulkPending sending sent failed
  failedMessages { id template language attempts lastError createdOn } } }
"""
RETRY = "mutation($id: String!) { retryFailedMail(id: $id) }"


# ---------------------------------------------------------------- helpers


def sid(study: dict[str, Any]) -> int:
    return int(GlobalID.from_id(study["id"]).node_id)


async def answer(server: Server, doc: str, variables: dict[str, Any], token: str, name: str) -> Any:
    """The answer's field `name` (asserts no GraphQL errors)."""
    body = await server.gql(doc, variables, token=token)
    assert "errors" not in body, body
    return body["data"][name]


def refused(result: dict[str, Any], code: str, field: str | None = None) -> None:
    """An expected failure: NotAllowedError, or InputError naming `field`."""
    typename = "InputError" if field else "NotAllowedError"
    assert result["__typename"] == typename and result["code"] == code, result
    assert result["message"], result
    if field:
        assert result["field"] == field, result


async def quiet_member(server: Server, language: str = "FI") -> Account:
    """A member who turned study emails off (keeps the bulk mail of other tests short)."""
    account = await member(server, language)
    result = await ok(server, SET_STUDY_EMAILS, {"on": False}, account.token, "setStudyEmails")
    assert result["on"] is False
    return account


async def draft(server: Server, researcher: Account, questions: Any, **more: Any) -> Any:
    """A draft study (study_input with `more`) with `questions` if any."""
    created = await ok(
        server, CREATE_STUDY, {"input": study_input(**more)}, researcher.token, "createStudy"
    )
    if questions:
        variables = {"id": created["study"]["id"], "questions": questions}
        await ok(server, SET_QUESTIONS, variables, researcher.token, "setStudyQuestions")
    return created["study"]


async def launch(server: Server, researcher: Account, questions: Any = None, **more: Any) -> Any:
    """A launched study: the launch answer's study, with `invited`."""
    study_id = (await draft(server, researcher, questions, **more))["id"]
    launched = await ok(server, LAUNCH, {"id": study_id}, researcher.token, "launchStudy")
    return {**launched["study"], "invited": launched["invited"]}


def titled(letter: str) -> dict[str, str]:
    return {"titleFi": f"Kysely {letter}", "titleSv": f"Enkät {letter}", "titleEn": letter}


def days(n: float) -> str:
    return (clock.now() + timedelta(days=n)).isoformat()


async def decline(server: Server, account: Account, study: dict[str, Any]) -> Any:
    return await answer(server, DECLINE, {"study": study["id"]}, account.token, "declineInvitation")


async def close(server: Server, researcher: Account, study: dict[str, Any]) -> None:
    await ok(server, CLOSE, {"id": study["id"]}, researcher.token, "closeStudy")


async def invitations(server: Server, account: Account, state: str | None = None) -> list[Any]:
    variables = {"state": state} if state else {}
    found = await answer(server, MY_INVITATIONS, variables, account.token, "myInvitations")
    return [(i["study"]["id"], i["state"]) for i in found]


async def my_study(server: Server, account: Account, study: dict[str, Any]) -> Any:
    return await answer(server, MY_STUDY, {"id": study["id"]}, account.token, "myStudy")


async def save(
    server: Server, account: Account, study: dict[str, Any], answers: list[dict[str, Any]]
) -> Any:
    variables = {"study": study["id"], "answers": answers}
    return await answer(server, SAVE_ANSWERS, variables, account.token, "saveAnswers")


async def submit(server: Server, account: Account, study: dict[str, Any]) -> Any:
    return await answer(server, SUBMIT, {"study": study["id"]}, account.token, "submitAnswers")


async def complete(server: Server, account: Account, study: dict[str, Any]) -> None:
    """Answer the required questions of QUESTIONS and submit."""
    q_choice, q_nps, _ = (q["id"] for q in study["questions"])
    given = [{"questionId": q_choice, "choice": "web"}, {"questionId": q_nps, "scale": 8}]
    assert (await save(server, account, study, given))["__typename"] == "MemberStudySuccess"
    assert (await submit(server, account, study))["study"]["state"] == "COMPLETED"


async def participation(server: Server, researcher: Account, study: dict[str, Any]) -> Any:
    """(invited, opened, started, completed, declined, responseRate) as researchers see them."""
    found = await answer(server, STUDY, {"id": study["id"]}, researcher.token, "study")
    return tuple(found["participation"].values())


async def own_thread(server: Server, account: Account, area: str) -> Any:
    """startThread's result for a new thread in `area`."""
    start = {"areaId": area, "title": "Oma", "body": "Saanko kysyä?", "clientKey": ckey()}
    return await answer(server, START_THREAD, {"input": start}, account.token, "startThread")


async def node(server: Server, account: Account, gid: str) -> Any:
    """`node(id)` as the account sees it (None: missing or not visible)."""
    return await answer(server, NODE, {"id": gid}, account.token, "node")


async def mails(server: Server, account: Account, template: str, n: int) -> list[EmailMessage]:
    """Exactly `n` emails of `template` to the member (waiting for the n-th)."""
    address = account.email or ""
    for _ in range(int(BULK_WAIT / 0.05)):
        if len(server.smtp.sent_to(address, template)) >= n:
            break
        await asyncio.sleep(0.05)
    found = server.smtp.sent_to(address, template)
    assert len(found) == n, [m["Subject"] for m in found]
    return found


async def active_since(account: Account, moment: datetime) -> bool:
    """Member.last_active_at was set at `moment` or later (taking part counts as activity)."""
    last = (await Member.get(id=account.member_id)).last_active_at
    return last is not None and last >= moment - timedelta(seconds=1)


async def stored_answers(study: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    rows = await Answer.filter(question__study_id=sid(study)).order_by("question_id")
    return [(r.question_id, r.value, r.saved_at) for r in rows]  # type: ignore[attr-defined]


async def reminders_sent(study: dict[str, Any], people: list[Account]) -> list[int]:
    rows = dict(
        await Invitation.filter(study_id=sid(study)).values_list("member_id", "reminders_sent")
    )
    return [rows[p.member_id] for p in people]


# ---------------------------------------------------------------- launching


async def test_launch_invites_once_notifies_live_and_emails_in_each_language(
    server: Server,
) -> None:
    """One invitation, notice and (wanted) email per member; a second launch adds nothing."""
    researcher = await staff(server, "researcher")
    people = [await member(server, language=lang) for lang in ("FI", "SV", "EN")]
    quiet = await quiet_member(server)
    me = "{ me { studyEmails } }"
    assert (await answer(server, me, {}, quiet.token, "me"))["studyEmails"] is False
    assert (await answer(server, me, {}, people[0].token, "me"))["studyEmails"] is True

    study = await draft(server, researcher, QUESTIONS)
    # A draft is invisible to members.
    assert await my_study(server, people[0], study) is None
    assert await invitations(server, people[0]) == []

    async with ws_client(server, people[0].token) as ws:
        await ws.subscribe("notices", NOTIFICATIONS_SUBSCRIPTION, {})
        await wait_listeners(server, f"member:{people[0].member_id}")
        launched = await ok(server, LAUNCH, {"id": study["id"]}, researcher.token, "launchStudy")
        assert launched["invited"] == 4 and launched["study"]["status"] == "OPEN", launched
        notice = await ws.next_data("notices", "notifications")
        assert notice["kind"] == "STUDY_INVITATION", notice

    everyone = [*people, quiet]
    rows = await Invitation.filter(study_id=sid(study))
    assert sorted(r.member_id for r in rows) == sorted(p.member_id for p in everyone)  # type: ignore[attr-defined]
    assert all(r.status == InvitationStatus.INVITED and r.email_queued for r in rows)
    notices = await Notification.filter(kind="STUDY_INVITATION")
    assert sorted(n.member_id for n in notices) == sorted(p.member_id for p in everyone)  # type: ignore[attr-defined]
    assert all(n.params == {"studyId": sid(study)} for n in notices)

    expected = {
        "fi": ("Kutsu tutkimukseen: Asiointikysely", "Arvomme 2 lahjakorttia"),
        "sv": ("Inbjudan till en studie: Enkät om ärenden", "Vi lottar ut 2 presentkort"),
        "en": ("Invitation to a study: Service survey", "We draw 2 gift cards"),
    }
    for person, lang in zip(people, ("fi", "sv", "en"), strict=True):
        message = await server.smtp.wait_for(person.email or "", "study_invitation", BULK_WAIT)
        subject, reward = expected[lang]
        assert message["Subject"] == subject and message["Content-Language"] == lang
        text = body_of(message)
        assert reward in text, text
        # The link names the study by the id `myStudy(id:)` takes.
        link = re.search(r"https://community\.test/studies/(\S+)", text)
        assert link and link.group(1) == study["id"], text
        assert "token" not in text.lower(), text
    # The member who turned study emails off has the notice but no email queued at all.
    outbox = await OutboxMessage.filter(template="study_invitation")
    assert sorted(m.language for m in outbox) == ["en", "fi", "sv"]
    assert all(m.bulk for m in outbox)
    assert server.smtp.sent_to(quiet.email or "", "study_invitation") == []

    # Launching again, or the research job's catch-up, invites and emails no one twice.
    again = await answer(server, LAUNCH, {"id": study["id"]}, researcher.token, "launchStudy")
    refused(again, "STUDY_NOT_DRAFT")
    assert (await run_research_job())["invitation_emails"] == 0
    assert await Invitation.filter(study_id=sid(study)).count() == 4
    assert await Notification.filter(kind="STUDY_INVITATION").count() == 4
    assert await OutboxMessage.filter(template="study_invitation").count() == 3


# ---------------------------------------------------------------- the member's views


async def test_member_views_states_filter_opening_declining_and_r7(server: Server) -> None:
    """myInvitations states and filter, myStudy opening, decline, expiry, and R7."""
    researcher = await staff(server, "researcher")
    anna, bjorn, chris, dana = [await quiet_member(server) for _ in range(4)]
    first = await launch(server, researcher, QUESTIONS)
    second = await launch(server, researcher, QUESTIONS, closesAt=days(3))
    both_open = [(second["id"], "OPEN"), (first["id"], "OPEN")]  # newest first
    assert await invitations(server, anna) == both_open

    # Opening marks the invitation opened once.
    clock.move(timedelta(minutes=5))
    opened_at = clock.now()
    view = await my_study(server, chris, first)
    assert view["state"] == "OPEN" and view["submitted"] is False, view
    row = await Invitation.get(study_id=sid(first), member_id=chris.member_id)
    assert row.status == InvitationStatus.OPENED
    assert row.opened_at is not None and abs(row.opened_at - opened_at) < timedelta(seconds=5)
    clock.move(timedelta(minutes=5))
    await my_study(server, chris, first)
    assert (await Invitation.get(id=row.id)).opened_at == row.opened_at

    await complete(server, anna, first)
    declined = await decline(server, bjorn, first)
    assert declined["study"]["state"] == "DECLINED", declined
    row = await Invitation.get(study_id=sid(first), member_id=bjorn.member_id)
    assert row.status == InvitationStatus.DECLINED and row.declined_at is not None
    # Declining after completing is refused.
    refused(await decline(server, anna, first), "ALREADY_SUBMITTED")

    assert await invitations(server, anna, "COMPLETED") == [(first["id"], "COMPLETED")]
    assert await invitations(server, anna, "OPEN") == [(second["id"], "OPEN")]
    assert await invitations(server, bjorn, "DECLINED") == [(first["id"], "DECLINED")]
    # Opened: chris by viewing, anna by answering.
    assert await participation(server, researcher, first) == (4, 2, 1, 1, 1, 0.25)

    await close(server, researcher, first)
    assert await invitations(server, chris, "EXPIRED") == [(first["id"], "EXPIRED")]
    assert await invitations(server, anna, "COMPLETED") == [(first["id"], "COMPLETED")]
    assert await invitations(server, bjorn, "DECLINED") == [(first["id"], "DECLINED")]
    # Past its closing time the second study has expired too; viewing it opens nothing.
    clock.move(timedelta(days=4))
    assert await invitations(server, dana) == [(second["id"], "EXPIRED"), (first["id"], "EXPIRED")]
    assert await invitations(server, dana, "OPEN") == []
    assert (await my_study(server, dana, second))["state"] == "EXPIRED"
    row = await Invitation.get(study_id=sid(second), member_id=dana.member_id)
    assert row.status == InvitationStatus.INVITED and row.opened_at is None

    # R7: members who were not invited, and staff (never invited), see nothing.
    outsider = await member(server)
    third = await launch(server, researcher, QUESTIONS)  # invites the outsider, not staff
    latecomer = await member(server)
    for account in (latecomer, researcher):
        assert await my_study(server, account, third) is None
        assert await invitations(server, account) == []
        given = [{"questionId": third["questions"][0]["id"], "choice": "web"}]
        refused(await save(server, account, third, given), "NOT_FOUND")
        refused(await submit(server, account, third), "NOT_FOUND")
        refused(await decline(server, account, third), "NOT_FOUND")
    assert not await Invitation.exists(member_id=researcher.member_id)
    assert await Invitation.filter(study_id=sid(third)).count() == 5
    assert await Invitation.exists(study_id=sid(third), member_id=outsider.member_id)
    assert not await Response.filter(study_id=sid(third)).exists()


async def study_reads(
    server: Server, account: Account, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """The tables of the research register read while `account` lists its invitations."""
    tables = ('"invitation"', '"study"', '"question"', '"response"', '"answer"')
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        await invitations(server, account)
    return sorted(
        table
        for record in caplog.records
        if record.name == "tortoise.db_client"
        for table in tables
        if f"FROM {table}" in record.getMessage()
    )


async def test_my_invitations_reads_as_much_for_four_studies_as_for_one(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """No query per invitation: the list read each study's questions and threw them away."""
    researcher = await staff(server, "researcher")
    anna = await quiet_member(server)
    await launch(server, researcher, QUESTIONS)
    one = await study_reads(server, anna, caplog)
    for _ in range(3):
        await launch(server, researcher, QUESTIONS)
    assert len(await invitations(server, anna)) == 4
    four = await study_reads(server, anna, caplog)
    assert one == four, (one, four)
    assert '"question"' not in one and one, one


# ---------------------------------------------------------------- answers


def question(kind: str, options: int = 0, required: bool = True) -> dict[str, Any]:
    texts = {"textFi": f"Kysymys {kind}", "textSv": f"Fråga {kind}", "textEn": kind}
    labels = [{"value": v, "labelFi": v, "labelSv": v, "labelEn": v} for v in "abc"[:options]]
    return {"kind": kind, **texts, "required": required, "options": labels}


ALL_KINDS = [
    question("SINGLE_CHOICE", 2),
    question("MULTIPLE_CHOICE", 3),
    question("SCALE_5"),
    question("NPS"),
    question("TEXT", required=False),
]

# (question position, the answer's fields): each invalid for that question's kind.
BAD_ANSWERS: list[tuple[int, dict[str, Any]]] = [
    *[(1, a) for a in ({"choice": "z"}, {"choices": ["a"]}, {"choice": "a", "text": "ja"})],
    *[(2, {"choices": c}) for c in ([], ["a", "a"], ["a", "z"])],
    (2, {"choice": "a"}),
    *[(3, a) for a in ({"scale": 0}, {"scale": 6}, {})],
    *[(4, a) for a in ({"scale": -1}, {"scale": 11}, {"scale": 5, "choice": "a"})],
    *[(5, a) for a in ({"scale": 3}, {"text": "ok", "scale": 3})],
]


async def test_every_kind_is_validated_and_a_bad_batch_stores_nothing(server: Server) -> None:
    """ANSWER_INVALID names the question; partial saves replace; submit rules; counts."""
    researcher = await staff(server, "researcher")
    anna = await quiet_member(server)
    study = await launch(server, researcher, ALL_KINDS)
    q = {n + 1: item["id"] for n, item in enumerate(study["questions"])}

    # A bad answer before anything was saved: no response, the invitation untouched.
    bad = await save(
        server, anna, study, [{"questionId": q[1], "choice": "a"}, {"questionId": q[3], "scale": 9}]
    )
    refused(bad, "ANSWER_INVALID", "question:3")
    assert not await Response.filter(study_id=sid(study)).exists()
    invitation = await Invitation.get(study_id=sid(study), member_id=anna.member_id)
    assert invitation.status == InvitationStatus.INVITED and invitation.started_at is None

    clock.move(timedelta(hours=3))
    moved = clock.now()
    first = [{"questionId": q[1], "choice": "a"}, {"questionId": q[3], "scale": 2}]
    saved = await save(server, anna, study, first)
    assert saved["study"]["state"] == "OPEN" and saved["study"]["submitted"] is False, saved
    assert await active_since(anna, moved)
    before = await stored_answers(study)
    assert [v for _, v, _ in before] == [{"choice": "a"}, {"scale": 2}]

    clock.move(timedelta(minutes=1))
    for position, fields in BAD_ANSWERS:
        batch = [{"questionId": q[1], "choice": "b"}, {"questionId": q[position], **fields}]
        result = await save(server, anna, study, batch)
        refused(result, "ANSWER_INVALID", f"question:{position}")
        assert await stored_answers(study) == before, (position, fields)

    # A partial save replaces the answers it names and keeps the others.
    await save(
        server,
        anna,
        study,
        [{"questionId": q[3], "scale": 5}, {"questionId": q[2], "choices": ["c", "a"]}],
    )
    values = {question_id: value for question_id, value, _ in await stored_answers(study)}
    q_rows = {p: int(GlobalID.from_id(g).node_id) for p, g in q.items()}
    assert values == {
        q_rows[1]: {"choice": "a"},
        q_rows[2]: {"choices": ["a", "c"]},  # kept in the question's order
        q_rows[3]: {"scale": 5},
    }
    view = await my_study(server, anna, study)
    assert {a["questionId"]: a["scale"] for a in view["myAnswers"]}[q[3]] == 5

    # Submit needs every required question; the optional text may stay blank.
    refused(await submit(server, anna, study), "ANSWER_REQUIRED", "question:4")
    await save(server, anna, study, [{"questionId": q[4], "scale": 0}])
    clock.move(timedelta(hours=1))
    moved = clock.now()
    done = await submit(server, anna, study)
    assert done["study"] == {"state": "COMPLETED", "submitted": True}, done
    assert await active_since(anna, moved)
    invitation = await Invitation.get(id=invitation.id)
    assert invitation.status == InvitationStatus.COMPLETED and invitation.completed_at
    response = await Response.get(study_id=sid(study))
    assert response.submitted_at is not None
    assert await Answer.filter(response_id=response.id).count() == 4

    # Once submitted: no second submit, no more saves, nothing changed.
    after = await stored_answers(study)
    refused(await submit(server, anna, study), "ALREADY_SUBMITTED")
    refused(
        await save(server, anna, study, [{"questionId": q[5], "text": "Myöhään"}]),
        "ALREADY_SUBMITTED",
    )
    assert await stored_answers(study) == after
    assert await participation(server, researcher, study) == (1, 1, 1, 1, 0, 1.0)


async def test_closed_scheduled_and_declined_studies_refuse_answers(server: Server) -> None:
    """STUDY_CLOSED (closed early or past its time), STUDY_NOT_OPEN, INVITATION_DECLINED."""
    researcher = await staff(server, "researcher")
    anna = await quiet_member(server)
    closed = await launch(server, researcher, QUESTIONS)
    await close(server, researcher, closed)
    soon = await launch(server, researcher, QUESTIONS, closesAt=days(1))
    scheduled = await launch(server, researcher, QUESTIONS, opensAt=days(2), closesAt=days(9))
    declined = await launch(server, researcher, QUESTIONS, closesAt=days(30))
    assert (await decline(server, anna, declined))["study"]["state"] == "DECLINED"
    found = await answer(server, STUDY, {"id": scheduled["id"]}, researcher.token, "study")
    assert found["status"] == "SCHEDULED", found

    async def refusals(study: dict[str, Any], code: str) -> None:
        given = [{"questionId": study["questions"][0]["id"], "choice": "web"}]
        refused(await save(server, anna, study, given), code)
        refused(await submit(server, anna, study), code)

    await refusals(closed, "STUDY_CLOSED")
    await refusals(scheduled, "STUDY_NOT_OPEN")
    await refusals(declined, "INVITATION_DECLINED")
    clock.move(timedelta(days=1, minutes=1))
    await refusals(soon, "STUDY_CLOSED")
    assert await Response.all().count() == 0 and await Answer.all().count() == 0
    rows = await Invitation.filter(member_id=anna.member_id)
    assert sorted(str(r.status) for r in rows) == ["declined", "invited", "invited", "invited"]


# ---------------------------------------------------------------- reminders


async def test_reminders_go_to_those_still_open_at_most_twice_and_not_after_closing(
    server: Server,
) -> None:
    """reminderDays=2, maxReminders=2: due after 2 days, once per round, none once closed."""
    researcher = await staff(server, "researcher")
    anna, bjorn, chris = [await member(server) for _ in range(3)]
    dana = await quiet_member(server)
    people = [anna, bjorn, chris, dana]
    settings = {
        "reminderDays": 2,
        "maxReminders": 2,
        "closesAt": (clock.now() + timedelta(days=30)).isoformat(),
    }
    a = await launch(server, researcher, QUESTIONS, **settings, **titled("A"))
    b = await launch(server, researcher, QUESTIONS, **settings, **titled("B"))
    await complete(server, anna, a)
    await decline(server, bjorn, a)
    await my_study(server, chris, a)

    async def job_reminds(n: int) -> None:
        assert (await run_research_job())["reminders"] == n
        assert (await run_research_job())["reminders"] == 0  # a second run at once: nothing

    await job_reminds(0)
    clock.move(timedelta(days=1))
    await job_reminds(0)
    clock.move(timedelta(days=1, minutes=1))
    await job_reminds(6)
    assert await reminders_sent(a, people) == [0, 0, 1, 1]
    assert await reminders_sent(b, people) == [1, 1, 1, 1]
    reminded = await Notification.filter(kind="STUDY_REMINDER").values_list("member_id", "params")
    assert sorted((m, p["studyId"]) for m, p in reminded) == sorted(
        [(chris.member_id, sid(a)), (dana.member_id, sid(a))]
        + [(p.member_id, sid(b)) for p in people]
    )
    for person, n in ((anna, 1), (bjorn, 1), (chris, 2)):
        await mails(server, person, "study_reminder", n)
    assert await OutboxMessage.filter(template="study_reminder").count() == 4
    subjects = sorted(m["Subject"] for m in await mails(server, chris, "study_reminder", 2))
    assert subjects == ["Muistutus: Kysely A", "Muistutus: Kysely B"]
    (to_anna,) = server.smtp.sent_to(anna.email or "", "study_reminder")
    assert to_anna["Subject"] == "Muistutus: Kysely B"
    assert f"/studies/{b['id']}\r\n" in body_of(to_anna), body_of(to_anna)

    await close(server, researcher, b)
    clock.move(timedelta(days=1))
    await job_reminds(0)  # the last reminder was a day ago
    clock.move(timedelta(days=1, minutes=1))
    await job_reminds(2)  # only A: B is closed
    assert await reminders_sent(a, people) == [0, 0, 2, 2]
    assert await reminders_sent(b, people) == [1, 1, 1, 1]
    clock.move(timedelta(days=2, minutes=1))
    await job_reminds(0)  # at most two
    clock.move(timedelta(days=30))
    await job_reminds(0)
    assert await Notification.filter(kind="STUDY_REMINDER").count() == 8
    await mails(server, chris, "study_reminder", 3)
    assert await OutboxMessage.filter(template="study_reminder").count() == 5
    assert server.smtp.sent_to(dana.email or "", "study_reminder") == []


# ---------------------------------------------------------------- discussion tasks


async def test_a_discussion_task_area_is_only_for_invited_members_while_open(
    server: Server,
) -> None:
    """The study's area: seen and written by invited members, NOT_FOUND to others."""
    researcher = await staff(server, "researcher")
    anna, bjorn, cecilia = [await quiet_member(server) for _ in range(3)]
    study = await launch(server, researcher, kind="DISCUSSION", **titled("D"))
    area = study["areaId"]
    assert area and study["invited"] == 3, study
    row = await Area.get(id=db_id(area, "Area"))
    assert row.study_id == sid(study) and not row.masked and not row.members_can_start_threads  # type: ignore[attr-defined]
    outsider = await member(server)

    assert area in [a["id"] for a in await answer(server, AREAS, {}, anna.token, "areas")]
    assert area not in [a["id"] for a in await answer(server, AREAS, {}, outsider.token, "areas")]
    assert (await node(server, anna, area))["__typename"] == "Area"
    assert await node(server, outsider, area) is None

    thread, opening = await start_thread(server, researcher, area, "Kertokaa kokemuksistanne")
    mine = await posted(server, anna, thread, "Hyvä palvelu")
    theirs = await posted(server, bjorn, thread, "Jonot ovat pitkiä")
    assert set(await thread_posts(server, anna, thread)) == {opening, mine, theirs}
    refused(await own_thread(server, anna, area), "STAFF_STARTS_THREADS")

    # Outsiders, and members who declined, get NOT_FOUND everywhere.
    await decline(server, cecilia, study)
    for account in (outsider, cecilia):
        assert await node(server, account, thread) is None
        assert await node(server, account, mine) is None
        refused(await add_post(server, account, thread, "Hei"), "NOT_FOUND")
        refused(await own_thread(server, account, area), "NOT_FOUND")
        async with ws_client(server, account.token) as ws:
            await ws.subscribe("events", THREAD_EVENTS, {"threadId": thread, "after": 0})
            errors = await ws.refusal("events")
            assert errors[0]["extensions"]["code"] == "NOT_FOUND", errors

    await close(server, researcher, study)
    refused(await add_post(server, anna, thread, "Vielä yksi"), "STUDY_CLOSED")
    refused(await add_post(server, researcher, thread, "Kiitos"), "STUDY_CLOSED")
    refused(await own_thread(server, researcher, area), "STUDY_CLOSED")
    assert await Post.filter(thread__area_id=row.id).count() == 3
    assert set(await thread_posts(server, anna, thread)) == {opening, mine, theirs}


async def test_a_masked_thread_shows_others_posts_only_after_ones_own(server: Server) -> None:
    """Masked: Thread.posts and node() hide others' posts, threadEvents holds them back."""
    researcher = await staff(server, "researcher")
    anna, bjorn = [await quiet_member(server) for _ in range(2)]
    study = await launch(server, researcher, QUESTIONS, kind="BOTH", masked=True, **titled("M"))
    found = await answer(server, STUDY, {"id": study["id"]}, researcher.token, "study")
    assert found["masked"] is True and found["kind"] == "BOTH" and found["areaId"], found
    assert (await Area.get(id=db_id(found["areaId"], "Area"))).masked
    thread, opening = await start_thread(server, researcher, found["areaId"], "Mitä mieltä olette?")
    first = await posted(server, anna, thread, "Annan ensimmäinen")

    # Bjorn has not posted: no one else's post is there for him.
    assert await thread_posts(server, bjorn, thread) == {}
    assert await node(server, bjorn, first) is None
    assert await node(server, bjorn, opening) is None
    assert (await node(server, bjorn, thread))["__typename"] == "Thread"
    # Anna has posted: she sees everything.
    assert set(await thread_posts(server, anna, thread)) == {opening, first}

    async with ws_client(server, bjorn.token) as ws:
        await ws.subscribe("events", THREAD_EVENTS, {"threadId": thread, "after": 0})
        await wait_listeners(server, f"thread:{db_id(thread, 'Thread')}")
        second = await posted(server, anna, thread, "Annan toinen")
        await ws.expect_silence(0.5)
        own = await posted(server, bjorn, thread, "Björnin oma")
        events = await ws.events_until(4)
        shown = [(e["position"], e["post"]["id"], e["post"]["body"]) for e in events]
        assert shown[1:] == [
            (2, first, "Annan ensimmäinen"),
            (3, second, "Annan toinen"),
            (4, own, "Björnin oma"),
        ]
        assert shown[0][:2] == (1, opening)
        # From now on others' posts arrive at once.
        third = await posted(server, anna, thread, "Annan kolmas")
        event = await ws.next_event()
        assert (event["position"], event["post"]["id"]) == (5, third)

    assert set(await thread_posts(server, bjorn, thread)) == {opening, first, second, own, third}
    assert (await node(server, bjorn, first))["__typename"] == "Post"


# ---------------------------------------------------------------- bulk mail


@pytest_asyncio.fixture(loop_scope="session")
async def invitees(server: Server) -> list[Account]:
    """Four members who want study emails (made before the server's worker is paused)."""
    return [await member(server) for _ in range(4)]


async def outbox(server: Server, token: str) -> dict[str, Any]:
    body = await server.gql(OUTBOX, token=token)
    assert "errors" not in body, body
    assert "@" not in json.dumps(body), body  # never an address
    status: dict[str, Any] = body["data"]["outboxStatus"]
    return status


async def request_reset(server: Server, account: Account) -> None:
    body = await server.gql(REQUEST_PASSWORD_RESET, {"email": account.email})
    assert body["data"]["requestPasswordReset"]["__typename"] == "Done", body


async def test_bulk_mail_is_throttled_per_worker_but_transactional_mail_is_not(
    server: Server,
    invitees: list[Account],
    paused_worker: None,  # noqa: F811
) -> None:
    """With MAIL_BULK_PER_MINUTE=2 a worker sends two invitations a minute; resets go at once.

    The in-process worker reads its settings when the server starts (overriding
    them later changes nothing there), so a worker made with the setting delivers.
    """
    researcher = await staff(server, "researcher")
    admin = await staff(server, "admin")
    baseline = await outbox(server, admin.token)
    study = await launched_survey(server, researcher)
    assert study["invited"] == 4
    queued = await OutboxMessage.filter(template="study_invitation")
    assert len(queued) == 4 and all(m.bulk and m.status == "pending" for m in queued)
    status = await outbox(server, admin.token)
    assert (status["pending"], status["bulkPending"]) == (4, 4), status

    worker = TestWorker(replace(server.settings, mail_bulk_per_minute=2))
    await request_reset(server, invitees[0])
    assert await worker.deliver_due() == 3
    assert len(server.smtp.sent_to(invitees[0].email or "", "reset_password")) == 1
    invited = [p for p in invitees if server.smtp.sent_to(p.email or "", "study_invitation")]
    assert len(invited) == 2
    status = await outbox(server, admin.token)
    assert (status["pending"], status["bulkPending"]) == (2, 2), status
    assert status["sent"] == baseline["sent"] + 3

    # Within the same minute: transactional mail goes, bulk mail waits.
    await request_reset(server, invitees[3])
    assert await worker.deliver_due() == 1
    assert len(server.smtp.sent_to(invitees[3].email or "", "reset_password")) == 1
    assert sum(len(server.smtp.sent_to(p.email or "", "study_invitation")) for p in invitees) == 2
    assert await OutboxMessage.filter(bulk=True, status="pending").count() == 2

    # A minute later (the worker's record of its sends aged by 60 s) the rest go.
    worker.bulk_sent = deque(t - 60 for t in worker.bulk_sent)
    assert await worker.deliver_due() == 2
    for person in invitees:
        assert len(server.smtp.sent_to(person.email or "", "study_invitation")) == 1
    status = await outbox(server, admin.token)
    assert (status["pending"], status["bulkPending"], status["failed"]) == (0, 0, 0), status


async def test_failed_study_mail_is_listed_for_admins_only_and_can_be_retried(
    server: Server,
    invitees: list[Account],
    paused_worker: None,  # noqa: F811
) -> None:
    """outboxStatus lists failures without addresses (admins only); retryFailedMail requeues."""
    researcher = await staff(server, "researcher")
    admin = await staff(server, "admin")
    await launched_survey(server, researcher)
    broken = TestWorker(replace(server.settings, smtp_port=closed_port(), mail_max_attempts=2))
    assert await broken.deliver_due() == 0
    rows = await OutboxMessage.filter(template="study_invitation")
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert await broken.deliver_due() == 0  # the retry is not due yet
    clock.move(timedelta(seconds=6))
    assert await broken.deliver_due() == 0
    rows = await OutboxMessage.filter(template="study_invitation")
    assert {(r.status, r.attempts) for r in rows} == {("failed", 2)}

    status = await outbox(server, admin.token)
    assert (status["failed"], status["pending"], status["bulkPending"]) == (4, 0, 0), status
    failed = status["failedMessages"]
    assert sorted(f["id"] for f in failed) == sorted(str(r.id) for r in rows)
    shown = {(f["template"], f["language"], f["attempts"], bool(f["lastError"])) for f in failed}
    assert shown == {("study_invitation", "fi", 2, True)}
    text = json.dumps(status)
    assert all((p.email or "") not in text for p in invitees)

    for account in (invitees[0], researcher):
        assert_no_permission(await server.gql(OUTBOX, token=account.token))
        assert_no_permission(await server.gql(RETRY, {"id": failed[0]["id"]}, token=account.token))
    assert (await OutboxMessage.get(id=failed[0]["id"])).status == "failed"

    async def retry(message_id: str) -> Any:
        return await answer(server, RETRY, {"id": message_id}, admin.token, "retryFailedMail")

    assert await retry(failed[0]["id"]) is True
    row = await OutboxMessage.get(id=failed[0]["id"])
    assert (row.status, row.attempts) == ("pending", 0)
    assert await AuditEntry.filter(action="mail.retry").count() == 1
    assert await retry(failed[0]["id"]) is False  # no longer failed
    assert await retry("not-an-id") is False

    assert await TestWorker(server.settings).deliver_due() == 1
    delivered = [p for p in invitees if server.smtp.sent_to(p.email or "", "study_invitation")]
    assert len(delivered) == 1
    status = await outbox(server, admin.token)
    assert (status["failed"], status["pending"]) == (3, 0), status
    assert failed[0]["id"] not in [f["id"] for f in status["failedMessages"]]


# ---------------------------------------------------------------- found faults


async def test_a_masked_member_cannot_read_others_posts_by_reacting_to_them(
    server: Server,
) -> None:
    """react on a post hidden by masking is NOT_FOUND, like node(postId), and stores nothing."""
    researcher = await staff(server, "researcher")
    anna, bjorn = [await quiet_member(server) for _ in range(2)]
    study = await launch(server, researcher, kind="DISCUSSION", masked=True)
    thread, _ = await start_thread(server, researcher, study["areaId"], "Kertokaa")
    hidden = await posted(server, anna, thread, "Annan salaisuus")
    assert await node(server, bjorn, hidden) is None
    variables = {"input": {"postId": hidden, "kind": "LIKE"}}
    result = await answer(server, REACT, variables, bjorn.token, "react")
    assert "Annan salaisuus" not in json.dumps(result), result
    refused(result, "NOT_FOUND")
    assert not await Reaction.exists(post_id=db_id(hidden))


async def test_a_banned_member_gets_no_study_reminder_email(server: Server) -> None:
    """A ban ends the membership: reminders, like invitation emails, go to active members only."""
    researcher = await staff(server, "researcher")
    moderator = await staff(server, "moderator")
    anna, bob = [await member(server) for _ in range(2)]
    await launch(server, researcher, QUESTIONS, reminderDays=1, maxReminders=1)
    await acted(server, moderator, bob.gid, "BAN", "OTHER")
    clock.move(timedelta(days=1, minutes=1))
    await run_research_job()
    await mails(server, anna, "study_reminder", 1)
    queued = await OutboxMessage.filter(template="study_reminder").count()
    assert queued == 1, f"{queued} reminders queued: one for the banned member"
    assert server.smtp.sent_to(bob.email or "", "study_reminder") == []
