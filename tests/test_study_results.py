"""What researchers get out of a study, through the API, with the stored rows checked.

Covers: per-question aggregates of submitted responses only (choice counts,
the mean of a 1-5 scale, the net promoter score, open texts without author,
sorted), breakdowns by a research attribute with every count under 5
withheld, the CSV export (respondent codes only, formulas neutralised,
audited), that no researcher-visible answer names a participant, prize draws
(reproducible from the frozen list and seed, tamper-evident, winners told
privately in their own language, claims before and after the deadline,
redraws of unclaimed prizes among those who never won), and resignation
(answers stay, every link from the former member to them is cut).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models.community import AuditEntry, Notification
from models.contacts import Contact, OutboxMessage
from models.research import Answer, Invitation, InvitationStatus, PrizeDraw, Response, Reward
from resolvers import clock, crypto
from resolvers.segments import ids
from tests import dbtools
from tests.conftest import Server
from tests.helpers import NOTIFICATIONS, RESIGN, Account, member, staff
from tests.test_moderation import db_id, gid
from tests.test_studies_smoke import (
    CREATE_STUDY,
    CSV,
    LAUNCH,
    SAVE_ANSWERS,
    SET_QUESTIONS,
    SUBMIT,
    VERIFY,
    launched_survey,
    ok,
    study_input,
)

# ---------------------------------------------------------------- documents

DRAW_FIELDS = "id prizes eligibleCount eligibleHash seed drawnAt winners claimed redrawOf"

STUDY_VIEW = """
query($id: ID!) { study(id: $id) {
  id titleFi titleSv titleEn descriptionFi descriptionSv descriptionEn rewardFi rewardSv rewardEn
  kind opensAt closesAt status sampleSeed reminderDays maxReminders masked areaId
  target { everyone groupIds segmentIds sampleSize fatigueDays maxPerMonth }
  questions { id position kind text required options { value label } }
  participation { invited opened started completed declined responseRate }
  draws { DRAW } } }
""".replace("DRAW", DRAW_FIELDS)

STUDIES = "{ studies { id status draws { DRAW } } }".replace("DRAW", DRAW_FIELDS)

RESULTS = """
query($study: ID!, $by: ID) { studyResults(studyId: $study, breakdownAttributeId: $by) {
  respondents study { id status participation { invited completed } }
  questions { question { id position kind } respondents mean nps texts counts { value count }
    breakdowns { attributeValue respondents cells { value count } } } } }
"""

DRAW = """
mutation($study: ID!, $prizes: Int!, $days: Int!) {
  drawPrizes(studyId: $study, prizes: $prizes, claimDays: $days) {
  __typename ... on DrawSuccess { draw { DRAW } } ... on Error { code message } } }
""".replace("DRAW", DRAW_FIELDS)

REDRAW = """
mutation($draw: ID!, $days: Int!) { redrawUnclaimed(drawId: $draw, claimDays: $days) {
  __typename ... on DrawSuccess { draw { DRAW } } ... on Error { code message } } }
""".replace("DRAW", DRAW_FIELDS)

CLAIM = """
mutation($id: ID!) { claimReward(id: $id) {
  __typename ... on RewardSuccess { reward { id claimedAt forfeited } }
  ... on Error { code message } } }
"""

MY_REWARDS = "{ me { rewards { id studyTitle reward wonAt claimBy claimedAt forfeited } } }"

DEFINE_ATTRIBUTE = """
mutation($input: DefineAttributeInput!) { defineResearchAttribute(input: $input) {
  __typename ... on AttributeSuccess { attribute { id key } } ... on Error { code message } } }
"""

SET_ATTRIBUTES = """
mutation($values: [AttributeValueInput!]!) { setMyAttributes(values: $values) {
  __typename ... on SettingSuccess { on } ... on Error { code message } } }
"""

DRAW_TYPE_FIELDS = '{ __type(name: "PrizeDraw") { fields { name } } }'

# ---------------------------------------------------------------- the answered study


def _option(value: str) -> dict[str, str]:
    return {"value": value, "labelFi": value, "labelSv": value, "labelEn": value}


def _question(kind: str, text: str, options: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    texts = dict.fromkeys(("textFi", "textSv", "textEn"), text)
    return {"kind": kind, **texts, "options": [_option(o) for o in options], **more}


QUESTIONS = [
    _question("SINGLE_CHOICE", "Channel", ("web", "office", "phone")),
    _question("MULTIPLE_CHOICE", "Interests", ("news", "events", "tips")),
    _question("SCALE_5", "Satisfaction"),
    _question("NPS", "Recommend"),
    _question("TEXT", "Anything else", required=False),
]


@dataclass
class Person:
    region: str
    choice: str
    choices: list[str]
    scale: int
    nps: int
    text: str | None
    submits: bool


# The last person only saves (never submits): nothing of theirs may count.
PEOPLE = [
    Person("north", "web", ["news", "tips"], 5, 10, "=SUM(A1)", True),
    Person("north", "web", ["news"], 4, 9, "+1 great", True),
    Person("north", "web", ["events", "news"], 4, 8, "-minus", True),
    Person("north", "web", ["tips"], 3, 7, "@home", True),
    Person("north", "web", ["news", "events", "tips"], 2, 6, "Zebra fine", True),
    Person("north", "office", ["events"], 1, 0, "apple", True),
    Person("south", "web", ["news"], 5, 10, None, True),
    Person("south", "phone", ["tips", "events"], 1, 0, "partial only", False),
]


@dataclass
class Answered:
    researcher: Account
    accounts: list[Account]
    study_id: str  # global id
    region_id: str  # the research attribute's global id

    @property
    def db_study(self) -> int:
        return db_id(self.study_id, "Study")


async def launch_with(server: Server, researcher: Account, questions: list[Any]) -> str:
    created = await ok(
        server, CREATE_STUDY, {"input": study_input()}, researcher.token, "createStudy"
    )
    study_id: str = created["study"]["id"]
    variables = {"id": study_id, "questions": questions}
    await ok(server, SET_QUESTIONS, variables, researcher.token, "setStudyQuestions")
    await ok(server, LAUNCH, {"id": study_id}, researcher.token, "launchStudy")
    return study_id


async def save(server: Server, study_id: str, person: Account, answers: list[Any]) -> None:
    variables = {"study": study_id, "answers": answers}
    await ok(server, SAVE_ANSWERS, variables, person.token, "saveAnswers")


async def answered_study(server: Server) -> Answered:
    """Eight members in two regions answer a five-question survey; seven submit."""
    admin = await staff(server, "admin")
    researcher = await staff(server, "researcher")
    labels = {"labelFi": "Alue", "labelSv": "Region", "labelEn": "Region"}
    options = [_option("north"), _option("south")]
    attribute = {"key": "region", "kind": "SINGLE_CHOICE", **labels, "options": options}
    defined = await ok(
        server, DEFINE_ATTRIBUTE, {"input": attribute}, admin.token, "defineResearchAttribute"
    )
    accounts = []
    for n, person in enumerate(PEOPLE):
        account = await member(server, language=("FI", "SV", "EN")[n % 3])
        values = [{"key": "region", "values": [person.region]}]
        await ok(server, SET_ATTRIBUTES, {"values": values}, account.token, "setMyAttributes")
        accounts.append(account)
    study_id = await launch_with(server, researcher, QUESTIONS)
    body = await server.gql(STUDY_VIEW, {"id": study_id}, token=researcher.token)
    qids = [q["id"] for q in body["data"]["study"]["questions"]]
    for person, account in zip(PEOPLE, accounts, strict=True):
        answers: list[dict[str, Any]] = [
            {"questionId": qids[0], "choice": person.choice},
            {"questionId": qids[1], "choices": person.choices},
            {"questionId": qids[2], "scale": person.scale},
            {"questionId": qids[3], "scale": person.nps},
        ]
        if person.text is not None:
            answers.append({"questionId": qids[4], "text": person.text})
        await save(server, study_id, account, answers)
        if person.submits:
            await ok(server, SUBMIT, {"study": study_id}, account.token, "submitAnswers")
    return Answered(researcher, accounts, study_id, defined["attribute"]["id"])


async def results(server: Server, data: Answered, by: str | None = None) -> dict[str, Any]:
    body = await server.gql(
        RESULTS, {"study": data.study_id, "by": by}, token=data.researcher.token
    )
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["studyResults"]
    return found


def counts(cells: list[dict[str, Any]]) -> dict[str, int | None]:
    return {c["value"]: c["count"] for c in cells}


async def response_of(account: Account, study: int) -> Response:
    invitation = await Invitation.get(study_id=study, member_id=account.member_id)
    return await Response.get(id=invitation.response_id)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- aggregates


async def test_aggregates_count_submitted_responses_only(server: Server) -> None:
    """Choice counts, the scale mean, the NPS (promoters 9-10 minus detractors 0-6, in
    percent, one decimal) and the sorted open texts, over submitted responses only: the
    member who only saved (choosing "phone", NPS 0 and a text) changes nothing."""
    data = await answered_study(server)
    # Stored: eight responses, one of them never submitted but with all its answers.
    assert await Response.filter(study_id=data.db_study, submitted_at__isnull=False).count() == 7
    unsubmitted = await response_of(data.accounts[-1], data.db_study)
    assert unsubmitted.submitted_at is None
    assert await Answer.filter(response_id=unsubmitted.id).count() == 5

    found = await results(server, data)
    assert found["respondents"] == 7, found
    single, multiple, scale, nps, text = found["questions"]
    assert [q["question"]["kind"] for q in found["questions"]] == [q["kind"] for q in QUESTIONS]
    assert single["respondents"] == 7
    assert counts(single["counts"]) == {"web": 6, "office": 1, "phone": 0}, single
    # Every chosen option of a multiple choice counts once.
    assert counts(multiple["counts"]) == {"news": 5, "events": 3, "tips": 3}, multiple
    assert counts(scale["counts"]) == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 2}, scale
    assert scale["mean"] == round(24 / 7, 2) == 3.43, scale
    assert scale["nps"] is None
    # 10, 9, 8, 7, 6, 0, 10: three promoters, two detractors of seven.
    assert nps["nps"] == 14.3, nps
    assert nps["mean"] == round(50 / 7, 2), nps
    assert counts(nps["counts"])["10"] == 2 and counts(nps["counts"])["0"] == 1, nps
    assert sum(c["count"] for c in nps["counts"]) == 7
    # Open texts: as written (no CSV escaping here), no author, sorted.
    written = [p.text for p in PEOPLE if p.submits and p.text is not None]
    assert text["texts"] == sorted(written), text
    assert text["respondents"] == 6 and text["counts"] == [] and text["mean"] is None
    assert "partial only" not in json.dumps(found)
    for question in found["questions"]:
        assert question["breakdowns"] == [], "no breakdown unless asked"


async def test_breakdown_withholds_every_count_under_five(server: Server) -> None:
    """By region (six northern, one southern respondent, plus a southern member who
    never submitted): the south shows no count at all, the north shows its respondents
    and the cells of five or more, and every cell under five is null."""
    data = await answered_study(server)
    found = await results(server, data, by=data.region_id)
    for question in found["questions"]:
        assert [b["attributeValue"] for b in question["breakdowns"]] == ["north", "south"]
        for group in question["breakdowns"]:
            assert group["respondents"] is None or group["respondents"] >= 5, group
            for cell in group["cells"]:
                assert cell["count"] is None or cell["count"] >= 5, (question, group)
    single, multiple, scale, nps, text = found["questions"]
    north, south = single["breakdowns"]
    assert north["respondents"] == 6
    assert counts(north["cells"]) == {"web": 5, "office": None, "phone": None}, north
    assert south["respondents"] is None
    assert counts(south["cells"]) == {"web": None, "office": None, "phone": None}, south
    # North's interests are 4, 3 and 3: all withheld although the group is large enough.
    assert counts(multiple["breakdowns"][0]["cells"]) == dict.fromkeys(("news", "events", "tips"))
    for question in (scale, nps):
        assert question["breakdowns"][0]["respondents"] == 6
        assert all(c["count"] is None for b in question["breakdowns"] for c in b["cells"])
    assert [b["respondents"] for b in text["breakdowns"]] == [6, None]
    # The totals themselves are not broken down.
    assert counts(single["counts"]) == {"web": 6, "office": 1, "phone": 0}


# ---------------------------------------------------------------- the CSV export


async def test_csv_rows_per_respondent_code_with_formulas_neutralised(server: Server) -> None:
    """One row per submitted response under its stored respondent code; choices joined
    with ";"; free text starting with =, +, - or @ gets a leading apostrophe; the
    export is written to the audit log."""
    data = await answered_study(server)
    body = await server.gql(CSV, {"study": data.study_id}, token=data.researcher.token)
    assert "errors" not in body, body
    text = body["data"]["studyAnswersCsv"]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["respondent", "submitted", "q1", "q2", "q3", "q4", "q5"]
    by_code = {row[0]: row for row in rows[1:]}
    assert len(rows) - 1 == len(by_code) == 7
    assert [row[0] for row in rows[1:]] == sorted(by_code)
    option_order = ["news", "events", "tips"]
    for person, account in zip(PEOPLE, data.accounts, strict=True):
        response = await response_of(account, data.db_study)
        if not person.submits:
            assert response.respondent_code not in by_code
            continue
        assert response.submitted_at is not None
        written = person.text or ""
        expected_text = "'" + written if written[:1] in ("=", "+", "-", "@") else written
        assert by_code[response.respondent_code] == [
            response.respondent_code,
            response.submitted_at.date().isoformat(),
            person.choice,
            ";".join(o for o in option_order if o in person.choices),
            str(person.scale),
            str(person.nps),
            expected_text,
        ]
    assert "'=SUM(A1)" in text and "'+1 great" in text and "'-minus" in text
    assert "'@home" in text and "'Zebra fine" not in text and "partial only" not in text
    audit = await AuditEntry.filter(action="study.export")
    assert len(audit) == 1, audit
    assert audit[0].actor_id == data.researcher.member_id and audit[0].actor_role == "researcher"
    assert audit[0].details == {"study": data.db_study, "rows": 7}


# ---------------------------------------------------------------- no identities


def identity_leaks(text: str, people: list[Account]) -> list[str]:
    """Anything in `text` that names one of `people`."""
    leaks = []
    for person in people:
        for value in (person.display_name, person.login_name, person.email or "", person.gid):
            if value and value.lower() in text.lower():
                leaks.append(value)
        numbers = re.findall(r"member\w{0,8}\W{0,6}(\d+)", text, flags=re.IGNORECASE)
        if str(person.member_id) in numbers:
            leaks.append(f"member {person.member_id}")
    # Any global id of a Member at all.
    for candidate in re.findall(r"[A-Za-z0-9+/]{8,}={0,2}", text):
        if candidate.startswith("TWVtYmVyOj"):  # base64 of "Member:"
            leaks.append(candidate)
    return leaks


async def test_researcher_answers_name_no_participant(server: Server) -> None:
    """The study, the study list, results (with a breakdown), the CSV, a draw, a redraw
    and the verification name nobody: no pseudonym, login name, email, member id or
    Member global id; a draw has counts only (never who won)."""
    data = await answered_study(server)
    token = data.researcher.token
    seen: list[str] = []
    drawn = await ok(
        server, DRAW, {"study": data.study_id, "prizes": 2, "days": 1}, token, "drawPrizes"
    )
    seen.append(json.dumps(drawn))
    clock.move(timedelta(days=2))
    redrawn = await ok(
        server, REDRAW, {"draw": drawn["draw"]["id"], "days": 1}, token, "redrawUnclaimed"
    )
    seen.append(json.dumps(redrawn))
    for doc, variables in (
        (STUDY_VIEW, {"id": data.study_id}),
        (STUDIES, {}),
        (RESULTS, {"study": data.study_id, "by": None}),
        (RESULTS, {"study": data.study_id, "by": data.region_id}),
        (VERIFY, {"draw": drawn["draw"]["id"]}),
        (VERIFY, {"draw": redrawn["draw"]["id"]}),
    ):
        body = await server.gql(doc, variables, token=token)
        assert "errors" not in body, body
        seen.append(json.dumps(body))
    seen.append(
        (await server.gql(CSV, {"study": data.study_id}, token=token))["data"]["studyAnswersCsv"]
    )
    study = json.loads(seen[2])["data"]["study"]
    assert study["participation"]["completed"] == 7 and len(study["draws"]) == 2
    assert study["draws"][1]["redrawOf"] == drawn["draw"]["id"]
    everything = "\n".join(seen)
    assert identity_leaks(everything, data.accounts) == []
    # The detector itself finds a name, a login name and a member id when present.
    assert identity_leaks(everything + data.accounts[0].display_name, data.accounts)
    assert identity_leaks(f'"memberId": {data.accounts[1].member_id}', data.accounts)
    assert identity_leaks(data.accounts[2].gid, data.accounts)
    # A prize draw has nothing that could say who won.
    fields = (await server.gql(DRAW_TYPE_FIELDS))["data"]["__type"]["fields"]
    assert {f["name"] for f in fields} == set(DRAW_FIELDS.split())
    assert all(isinstance(d["winners"], int) for d in study["draws"])


# ---------------------------------------------------------------- prize draws


async def complete(server: Server, study: dict[str, Any], person: Account, score: int) -> None:
    """Answer the smoke test's survey (web, the NPS score) and submit."""
    q_choice, q_nps, _ = (q["id"] for q in study["questions"])
    answers = [{"questionId": q_choice, "choice": "web"}, {"questionId": q_nps, "scale": score}]
    await save(server, study["id"], person, answers)
    await ok(server, SUBMIT, {"study": study["id"]}, person.token, "submitAnswers")


async def five_completers(server: Server) -> tuple[Account, list[Account], dict[str, Any]]:
    """A researcher, six members (five complete, one only saves) and the launched survey."""
    researcher = await staff(server, "researcher")
    people = [await member(server, language=lang) for lang in ("FI", "SV", "EN") * 2]
    study = await launched_survey(server, researcher)
    for n, person in enumerate(people[:5]):
        await complete(server, study, person, 5 + n)
    q_nps = study["questions"][1]["id"]
    await save(server, study["id"], people[5], [{"questionId": q_nps, "scale": 10}])
    return researcher, people, study


async def draw(
    server: Server, researcher: Account, study: dict[str, Any], prizes: int, days: int = 3
) -> dict[str, Any]:
    variables = {"study": study["id"], "prizes": prizes, "days": days}
    return dict((await ok(server, DRAW, variables, researcher.token, "drawPrizes"))["draw"])


async def verified(server: Server, researcher: Account, draw_id: str) -> bool:
    body = await server.gql(VERIFY, {"draw": draw_id}, token=researcher.token)
    assert "errors" not in body, body
    return bool(body["data"]["verifyPrizeDraw"])


async def completed_invitations(study: dict[str, Any]) -> list[int]:
    rows = Invitation.filter(
        study_id=db_id(study["id"], "Study"), status=InvitationStatus.COMPLETED
    )
    return sorted(await ids(rows))


async def test_draw_is_reproducible_and_tamper_evident(server: Server) -> None:
    """Two prizes among five completers: the frozen list is the sorted completed
    invitations with their SHA-256, the winners are random.Random(seed).sample(list, 2),
    verification holds, and changing the stored winners or list breaks it."""
    researcher, people, study = await five_completers(server)
    found = await draw(server, researcher, study, prizes=2)
    eligible = await completed_invitations(study)
    partial = await Invitation.get(member_id=people[5].member_id)
    assert len(eligible) == 5 and partial.id not in eligible
    digest = hashlib.sha256(",".join(str(i) for i in eligible).encode()).hexdigest()
    assert found["eligibleCount"] == 5 and found["eligibleHash"] == digest, found
    assert [found[k] for k in ("prizes", "winners", "claimed", "redrawOf")] == [2, 2, 0, None]
    row = await PrizeDraw.get(id=db_id(found["id"], "PrizeDraw"))
    assert row.seed == found["seed"] and row.eligible == eligible
    assert row.eligible_hash == digest and row.claim_days == 3
    assert row.winners == random.Random(found["seed"]).sample(eligible, 2)
    rewards = await Reward.filter(draw_id=row.id).order_by("id")
    assert [r.invitation_id for r in rewards] == row.winners
    for reward in rewards:
        invitation = await Invitation.get(id=reward.invitation_id)
        assert reward.member_id == invitation.member_id  # type: ignore[attr-defined]
        assert reward.claim_by == reward.won_at + timedelta(days=3)
    assert await verified(server, researcher, found["id"]) is True

    loser = next(i for i in eligible if i not in row.winners)
    await PrizeDraw.filter(id=row.id).update(winners=[loser, row.winners[1]])
    assert await verified(server, researcher, found["id"]) is False
    await PrizeDraw.filter(id=row.id).update(winners=list(reversed(row.winners)))
    assert await verified(server, researcher, found["id"]) is False, "drawing order counts"
    await PrizeDraw.filter(id=row.id).update(winners=row.winners)
    assert await verified(server, researcher, found["id"]) is True
    await PrizeDraw.filter(id=row.id).update(eligible=[i for i in eligible if i != loser])
    assert await verified(server, researcher, found["id"]) is False


async def test_winners_alone_are_told_and_see_their_reward(server: Server) -> None:
    """Each winner gets a REWARD_WON notice, a reward_won email in their own language
    and sees their own reward in me.rewards; losers, the member who never submitted
    and the researcher get nothing."""
    researcher, people, study = await five_completers(server)
    await draw(server, researcher, study, prizes=2)
    rewards = {r.member_id: r for r in await Reward.all()}  # type: ignore[attr-defined]
    winners = [p for p in people if p.member_id in rewards]
    others = [p for p in people if p.member_id not in rewards]
    assert len(winners) == 2 and len(others) == 4
    assert {n.member_id for n in await Notification.filter(kind="REWARD_WON")} == set(rewards)  # type: ignore[attr-defined]
    subjects = {"FI": "Voitit palkinnon", "SV": "Du har vunnit ett pris", "EN": "You won a prize"}
    titles = {"FI": "Asiointikysely", "SV": "Enkät om ärenden", "EN": "Service survey"}
    prizes = {"FI": "Arvomme 2", "SV": "Vi lottar ut 2", "EN": "We draw 2"}
    for person in people:
        language = ("FI", "SV", "EN")[people.index(person) % 3]
        won = person in winners
        notes = await server.gql(NOTIFICATIONS, {"first": 20}, token=person.token)
        kinds = [e["node"]["kind"] for e in notes["data"]["notifications"]["edges"]]
        assert kinds.count("REWARD_WON") == (1 if won else 0), (person, kinds)
        contact = await Contact.get(member_index=crypto.member_index(person.member_id))
        queued = await OutboxMessage.filter(contact_id=contact.id, template="reward_won")
        assert len(queued) == (1 if won else 0), person
        assert all(q.language == language.lower() for q in queued)
        mine = (await server.gql(MY_REWARDS, token=person.token))["data"]["me"]["rewards"]
        if not won:
            assert mine == [], mine
            continue
        reward = rewards[person.member_id]
        assert len(mine) == 1 and mine[0]["id"] == gid("MyReward", reward.id), mine
        assert mine[0]["studyTitle"] == titles[language], mine
        assert mine[0]["reward"].startswith(prizes[language]), mine
        assert mine[0]["claimedAt"] is None and mine[0]["forfeited"] is False
        message = await server.smtp.wait_for(person.email or "", "reward_won")
        assert message["Subject"] == f"{subjects[language]}: {titles[language]}", message
        assert message["Content-Language"] == language.lower()
    for person in others:  # the winners' mail has arrived: none came to anyone else
        assert server.smtp.sent_to(person.email or "", "reward_won") == []
    assert (await server.gql(MY_REWARDS, token=researcher.token))["data"]["me"]["rewards"] == []


async def test_claims_expire_and_redraw_goes_to_those_who_never_won(server: Server) -> None:
    """A winner claims in time; the other misses the deadline (CLAIM_EXPIRED). A redraw
    before the deadline is refused; after it, the unclaimed prize is forfeited and one
    new winner is drawn among the completers who never won, as a draw of its own."""
    researcher, people, study = await five_completers(server)
    first = await draw(server, researcher, study, prizes=2, days=3)
    first_row = await PrizeDraw.get(id=db_id(first["id"], "PrizeDraw"))
    by_member = {p.member_id: p for p in people}
    prompt, late = [await Reward.get(invitation_id=i) for i in first_row.winners]
    claimer = by_member[prompt.member_id]  # type: ignore[attr-defined]
    sleeper = by_member[late.member_id]  # type: ignore[attr-defined]
    # Nobody claims another's prize.
    stolen = await server.gql(CLAIM, {"id": gid("MyReward", prompt.id)}, token=sleeper.token)
    assert stolen["data"]["claimReward"]["code"] == "NOT_FOUND", stolen
    claimed = await ok(
        server, CLAIM, {"id": gid("MyReward", prompt.id)}, claimer.token, "claimReward"
    )
    assert claimed["reward"]["claimedAt"] is not None and not claimed["reward"]["forfeited"]
    await prompt.refresh_from_db()
    assert prompt.claimed_at is not None

    early = await server.gql(REDRAW, {"draw": first["id"], "days": 3}, token=researcher.token)
    assert early["data"]["redrawUnclaimed"]["code"] == "NO_ELIGIBLE", early
    assert await PrizeDraw.all().count() == 1
    assert await Reward.filter(forfeited_at__isnull=False).count() == 0

    clock.move(timedelta(days=3, hours=1))
    expired = await server.gql(CLAIM, {"id": gid("MyReward", late.id)}, token=sleeper.token)
    assert expired["data"]["claimReward"]["code"] == "CLAIM_EXPIRED", expired
    await late.refresh_from_db()
    assert late.claimed_at is None
    again = await ok(
        server, CLAIM, {"id": gid("MyReward", prompt.id)}, claimer.token, "claimReward"
    )
    assert again["reward"]["claimedAt"] == claimed["reward"]["claimedAt"]

    redrawn = await ok(
        server, REDRAW, {"draw": first["id"], "days": 3}, researcher.token, "redrawUnclaimed"
    )
    second = redrawn["draw"]
    assert second["redrawOf"] == first["id"] and second["id"] != first["id"]
    assert second["prizes"] == 1 and second["winners"] == 1 and second["eligibleCount"] == 3
    await late.refresh_from_db()
    await prompt.refresh_from_db()
    assert late.forfeited_at is not None and prompt.forfeited_at is None
    second_row = await PrizeDraw.get(id=db_id(second["id"], "PrizeDraw"))
    never_won = [i for i in await completed_invitations(study) if i not in first_row.winners]
    assert second_row.redraw_of_id == first_row.id
    assert second_row.eligible == never_won and len(never_won) == 3
    assert second_row.winners == random.Random(second_row.seed).sample(never_won, 1)
    new_reward = await Reward.get(draw_id=second_row.id)
    assert new_reward.invitation_id == second_row.winners[0]
    assert new_reward.invitation_id not in first_row.winners
    newcomer = by_member[new_reward.member_id]  # type: ignore[attr-defined]
    assert await Notification.filter(member_id=newcomer.member_id, kind="REWARD_WON").count() == 1
    assert await Notification.filter(member_id=sleeper.member_id, kind="REWARD_WON").count() == 1
    assert await verified(server, researcher, second["id"]) is True
    lost = (await server.gql(MY_REWARDS, token=sleeper.token))["data"]["me"]["rewards"]
    assert [(r["forfeited"], r["claimedAt"]) for r in lost] == [(True, None)]
    view = await server.gql(STUDY_VIEW, {"id": study["id"]}, token=researcher.token)
    draws = view["data"]["study"]["draws"]
    assert [(d["claimed"], d["redrawOf"]) for d in draws] == [(1, None), (0, first["id"])]


async def test_draw_without_completers_is_refused(server: Server) -> None:
    """NO_ELIGIBLE when nobody completed (a partial save is not a completion), and a
    redraw with nobody left who has not won already; no draw row is written."""
    researcher = await staff(server, "researcher")
    saver, finisher = await member(server), await member(server)
    study = await launched_survey(server, researcher)
    q_nps = study["questions"][1]["id"]
    await save(server, study["id"], saver, [{"questionId": q_nps, "scale": 7}])
    variables = {"study": study["id"], "prizes": 1, "days": 3}
    refused = await server.gql(DRAW, variables, token=researcher.token)
    assert refused["data"]["drawPrizes"]["code"] == "NO_ELIGIBLE", refused
    assert await PrizeDraw.all().count() == 0 and await Reward.all().count() == 0

    await complete(server, study, finisher, 9)
    only = await draw(server, researcher, study, prizes=1, days=3)
    assert only["eligibleCount"] == 1
    clock.move(timedelta(days=4))
    nobody = await server.gql(REDRAW, {"draw": only["id"], "days": 3}, token=researcher.token)
    assert nobody["data"]["redrawUnclaimed"]["code"] == "NO_ELIGIBLE", nobody
    assert await PrizeDraw.all().count() == 1 and await Reward.all().count() == 1


async def test_a_refused_redraw_does_not_lose_the_prize(server: Server) -> None:
    """The only winner lets the prize expire; a redraw is refused (nobody else has
    completed yet). When another member then completes, the unclaimed prize can still
    be redrawn and goes to them: the refused redraw must not have used it up."""
    researcher = await staff(server, "researcher")
    first, second = await member(server), await member(server)
    study = await launched_survey(server, researcher)
    await complete(server, study, first, 10)
    only = await draw(server, researcher, study, prizes=1, days=3)
    clock.move(timedelta(days=4))  # the study is still open (it closes after 7 days)
    nobody = await server.gql(REDRAW, {"draw": only["id"], "days": 3}, token=researcher.token)
    assert nobody["data"]["redrawUnclaimed"]["code"] == "NO_ELIGIBLE", nobody

    await complete(server, study, second, 8)
    body = await server.gql(REDRAW, {"draw": only["id"], "days": 3}, token=researcher.token)
    redrawn = body["data"]["redrawUnclaimed"]
    assert redrawn["__typename"] == "DrawSuccess", (redrawn, await Reward.all().values())
    assert redrawn["draw"]["winners"] == 1 and redrawn["draw"]["eligibleCount"] == 1
    assert await Reward.filter(member_id=second.member_id).count() == 1


# ---------------------------------------------------------------- resignation


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value
    except ValueError:
        return value


async def linking_rows(
    response: Response, invitation_id: int, reward_id: int, member_id: int
) -> list[str]:
    """Rows of the community register that hold both something of the response (its id,
    code, invitation or reward) and the member's id."""
    found = []
    for table, rows in (await dbtools.all_rows("community")).items():
        for row in rows:
            values = {k: _json(v) for k, v in row.items()}
            blobs = json.dumps(values, default=str)
            answer_side = (
                (table == "response" and row["id"] == response.id)
                or (table == "invitation" and row["id"] == invitation_id)
                or (table == "reward" and row["id"] == reward_id)
                or row.get("response_id") == response.id
                or row.get("invitation_id") == invitation_id
                or row.get("reward_id") == reward_id
                or response.respondent_code in blobs
                or re.search(rf'"(rewardId|reward)": {reward_id}\b', blobs) is not None
                or re.search(rf'"(invitationId|invitation)": {invitation_id}\b', blobs) is not None
            )
            member_side = (
                (table == "member" and row["id"] == member_id)
                or any(("member" in k or "actor" in k) and v == member_id for k, v in row.items())
                or re.search(rf'"(memberId|member)": {member_id}\b', blobs) is not None
            )
            if answer_side and member_side:
                found.append(f"{table}:{row.get('id')}")
    return found


async def test_resignation_keeps_answers_and_cuts_every_link(server: Server) -> None:
    """A member who answered and won resigns: Answer and Response rows stay, their
    invitation and reward lose the member id, results and CSV are unchanged, the draw
    still verifies, and no community row holds both the response and the member."""
    researcher = await staff(server, "researcher")
    people = [await member(server) for _ in range(3)]
    study = await launched_survey(server, researcher)
    leaver = people[1]
    q_text = study["questions"][2]["id"]
    await save(server, study["id"], leaver, [{"questionId": q_text, "text": "Leaving soon"}])
    for n, person in enumerate(people):
        await complete(server, study, person, 4 + 3 * n)
    found = await draw(server, researcher, study, prizes=3)  # everyone wins
    study_db = db_id(study["id"], "Study")
    response = await response_of(leaver, study_db)
    invitation = await Invitation.get(member_id=leaver.member_id)
    reward = await Reward.get(member_id=leaver.member_id)
    assert reward.invitation_id == invitation.id
    before = [
        await server.gql(doc, {"study": study["id"]}, token=researcher.token)
        for doc in (RESULTS, CSV)
    ]
    answers_before = sorted(
        await Answer.filter(response_id=response.id).values_list("question_id", "value")
    )
    # Before: the invitation, the reward and the win notice tie the two together.
    linked = await linking_rows(response, invitation.id, reward.id, leaver.member_id)
    assert {r.split(":")[0] for r in linked} >= {"invitation", "reward", "notification"}, linked

    resigned = await server.gql(RESIGN, {"password": leaver.password}, token=leaver.token)
    assert resigned["data"]["resign"]["__typename"] == "Done", resigned

    assert await Response.filter(study_id=study_db).count() == 3
    await response.refresh_from_db()
    assert response.submitted_at is not None
    answers_after = sorted(
        await Answer.filter(response_id=response.id).values_list("question_id", "value")
    )
    assert answers_after == answers_before and len(answers_after) == 3
    await invitation.refresh_from_db()
    await reward.refresh_from_db()
    assert invitation.member_id is None  # type: ignore[attr-defined]
    assert invitation.response_id == response.id  # type: ignore[attr-defined]
    assert invitation.status == InvitationStatus.COMPLETED
    assert reward.member_id is None  # type: ignore[attr-defined]
    assert await Invitation.filter(member_id__isnull=False).count() == 2
    assert await Reward.filter(member_id__isnull=False).count() == 2

    after = [
        await server.gql(doc, {"study": study["id"]}, token=researcher.token)
        for doc in (RESULTS, CSV)
    ]
    assert after == before and "errors" not in after[0]
    assert "Leaving soon" in after[1]["data"]["studyAnswersCsv"]
    assert await verified(server, researcher, found["id"]) is True
    assert await linking_rows(response, invitation.id, reward.id, leaver.member_id) == []
