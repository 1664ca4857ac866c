"""A study from end to end through the API: the path every research feature hangs on.

A researcher creates a survey for everyone, adds questions and launches it;
members get an in-app notice and an email, answer (partially, then submit),
and the researcher reads aggregates, the CSV (respondent codes only) and
draws a prize that re-runs to the same winner. Detailed behaviour is pinned
in the other research test files.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from models.research import Answer, Invitation, InvitationStatus, PrizeDraw, Response, Reward
from resolvers import clock
from tests.conftest import Server
from tests.helpers import Account, member, staff

STUDY_FIELDS = """
  id status kind sampleSeed areaId
  participation { invited opened started completed declined responseRate }
  questions { id position kind text required options { value label } }
"""

CREATE_STUDY = """
mutation($input: StudyInput!) { createStudy(input: $input) {
  __typename ... on StudySuccess { study { FIELDS } } ... on Error { code message }
  ... on InputError { field } } }
""".replace("FIELDS", STUDY_FIELDS)

SET_QUESTIONS = """
mutation($id: ID!, $questions: [QuestionInput!]!) {
  setStudyQuestions(id: $id, questions: $questions) {
  __typename ... on StudySuccess { study { FIELDS } } ... on Error { code message }
  ... on InputError { field } } }
""".replace("FIELDS", STUDY_FIELDS)

LAUNCH = """
mutation($id: ID!) { launchStudy(id: $id) {
  __typename ... on StudySuccess { invited study { FIELDS } } ... on Error { code message } } }
""".replace("FIELDS", STUDY_FIELDS)

MY_STUDY = """
query($id: ID!) { myStudy(id: $id) { id title reward state submitted
  questions { id kind text required } myAnswers { questionId choice choices scale text } } }
"""

SAVE_ANSWERS = """
mutation($study: ID!, $answers: [AnswerInput!]!) { saveAnswers(studyId: $study, answers: $answers) {
  __typename ... on MemberStudySuccess { study { state submitted myAnswers { questionId scale } } }
  ... on Error { code message } ... on InputError { field } } }
"""

SUBMIT = """
mutation($study: ID!) { submitAnswers(studyId: $study) {
  __typename ... on MemberStudySuccess { study { state submitted } }
  ... on Error { code message } ... on InputError { field } } }
"""

RESULTS = """
query($study: ID!) { studyResults(studyId: $study) { respondents
  questions { respondents mean nps texts counts { value count } } } }
"""

CSV = "query($study: ID!) { studyAnswersCsv(studyId: $study) }"

DRAW = """
mutation($study: ID!) { drawPrizes(studyId: $study, prizes: 1) {
  __typename ... on DrawSuccess { draw { id prizes eligibleCount eligibleHash seed winners } }
  ... on Error { code message } } }
"""

VERIFY = "query($draw: ID!) { verifyPrizeDraw(drawId: $draw) }"


def study_input(**more: Any) -> dict[str, Any]:
    now = clock.now()
    data: dict[str, Any] = {
        "titleFi": "Asiointikysely",
        "titleSv": "Enkät om ärenden",
        "titleEn": "Service survey",
        "rewardFi": "Arvomme 2 lahjakorttia",
        "rewardSv": "Vi lottar ut 2 presentkort",
        "rewardEn": "We draw 2 gift cards",
        "kind": "SURVEY",
        "opensAt": (now - timedelta(minutes=1)).isoformat(),
        "closesAt": (now + timedelta(days=7)).isoformat(),
        "everyone": True,
    }
    data.update(more)
    return data


QUESTIONS = [
    {
        "kind": "SINGLE_CHOICE",
        "textFi": "Miten asioit?",
        "textSv": "Hur sköter du ärenden?",
        "textEn": "How do you do business with us?",
        "options": [
            {"value": "web", "labelFi": "Verkossa", "labelSv": "På nätet", "labelEn": "Online"},
            {
                "value": "office",
                "labelFi": "Toimistossa",
                "labelSv": "På kontor",
                "labelEn": "Office",
            },
        ],
    },
    {
        "kind": "NPS",
        "textFi": "Suosittelisitko?",
        "textSv": "Rekommendera?",
        "textEn": "Recommend?",
    },
    {
        "kind": "TEXT",
        "textFi": "Terveiset",
        "textSv": "Hälsningar",
        "textEn": "Anything else",
        "required": False,
    },
]


async def ok(server: Server, doc: str, variables: dict[str, Any], token: str, name: str) -> Any:
    body = await server.gql(doc, variables, token=token)
    assert "errors" not in body, body
    result = body["data"][name]
    assert result["__typename"].endswith("Success"), result
    return result


async def launched_survey(server: Server, researcher: Account) -> dict[str, Any]:
    created = await ok(
        server, CREATE_STUDY, {"input": study_input()}, researcher.token, "createStudy"
    )
    study_id = created["study"]["id"]
    await ok(
        server,
        SET_QUESTIONS,
        {"id": study_id, "questions": QUESTIONS},
        researcher.token,
        "setStudyQuestions",
    )
    launched = await ok(server, LAUNCH, {"id": study_id}, researcher.token, "launchStudy")
    study: dict[str, Any] = launched["study"]
    study["invited"] = launched["invited"]
    return study


async def test_a_survey_from_launch_to_results_and_draw(server: Server) -> None:
    researcher = await staff(server, "researcher")
    people = [await member(server, language=lang) for lang in ("FI", "SV", "EN")]
    study = await launched_survey(server, researcher)
    assert study["invited"] == 3 and study["status"] == "OPEN", study
    assert await Invitation.filter(status=InvitationStatus.INVITED).count() == 3
    # Each member is emailed in their own language, with a link to sign in (no token).
    for person, subject in zip(people, ("Kutsu", "Inbjudan", "Invitation"), strict=True):
        message = await server.smtp.wait_for(person.email or "", "study_invitation")
        assert message["Subject"].startswith(subject), message["Subject"]
        assert "/studies/" in message.get_content() and "token" not in message.get_content()

    questions = study["questions"]
    q_choice, q_nps, q_text = (q["id"] for q in questions)
    anna, bjorn, chris = people
    view = (await server.gql(MY_STUDY, {"id": study["id"]}, token=anna.token))["data"]["myStudy"]
    assert view["title"] == "Asiointikysely" and view["state"] == "OPEN", view

    # A partial save, then the rest, then submit.
    saved = await ok(
        server,
        SAVE_ANSWERS,
        {"study": study["id"], "answers": [{"questionId": q_nps, "scale": 9}]},
        anna.token,
        "saveAnswers",
    )
    assert saved["study"]["submitted"] is False
    refused = (await server.gql(SUBMIT, {"study": study["id"]}, token=anna.token))["data"]
    assert refused["submitAnswers"]["code"] == "ANSWER_REQUIRED", refused
    await ok(
        server,
        SAVE_ANSWERS,
        {
            "study": study["id"],
            "answers": [
                {"questionId": q_choice, "choice": "web"},
                {"questionId": q_text, "text": "Kiitos"},
            ],
        },
        anna.token,
        "saveAnswers",
    )
    submitted = await ok(server, SUBMIT, {"study": study["id"]}, anna.token, "submitAnswers")
    assert submitted["study"] == {"state": "COMPLETED", "submitted": True}
    again = (await server.gql(SUBMIT, {"study": study["id"]}, token=anna.token))["data"]
    assert again["submitAnswers"]["code"] == "ALREADY_SUBMITTED", again

    for person, score in ((bjorn, 3), (chris, 10)):
        await ok(
            server,
            SAVE_ANSWERS,
            {
                "study": study["id"],
                "answers": [
                    {"questionId": q_choice, "choice": "office"},
                    {"questionId": q_nps, "scale": score},
                ],
            },
            person.token,
            "saveAnswers",
        )
        await ok(server, SUBMIT, {"study": study["id"]}, person.token, "submitAnswers")
    assert await Response.filter(submitted_at__isnull=False).count() == 3
    assert await Answer.all().count() == 7

    results = (await server.gql(RESULTS, {"study": study["id"]}, token=researcher.token))["data"]
    first, nps, text = results["studyResults"]["questions"]
    assert {c["value"]: c["count"] for c in first["counts"]} == {"web": 1, "office": 2}
    # Promoters 9 and 10, one detractor (3): (2 - 1) / 3.
    assert nps["nps"] == 33.3 and nps["mean"] == round(22 / 3, 2), nps
    assert text["texts"] == ["Kiitos"]

    exported = (await server.gql(CSV, {"study": study["id"]}, token=researcher.token))["data"]
    rows = list(csv.reader(io.StringIO(exported["studyAnswersCsv"])))
    assert rows[0] == ["respondent", "submitted", "q1", "q2", "q3"]
    codes = {r.respondent_code for r in await Response.all()}
    assert {r[0] for r in rows[1:]} == codes
    for person in people:
        assert person.display_name not in exported["studyAnswersCsv"]

    drawn = await ok(server, DRAW, {"study": study["id"]}, researcher.token, "drawPrizes")
    assert drawn["draw"]["eligibleCount"] == 3 and drawn["draw"]["winners"] == 1
    verified = await server.gql(VERIFY, {"draw": drawn["draw"]["id"]}, token=researcher.token)
    assert verified["data"]["verifyPrizeDraw"] is True, verified
    draw = await PrizeDraw.get()
    reward = await Reward.get()
    assert reward.invitation_id == draw.winners[0]


ATTRIBUTES = "{ researchAttributes { id key kind myValues } }"
SET_MINE = """
mutation($values: [AttributeValueInput!]!) { setMyAttributes(values: $values) {
  __typename ... on Error { code } ... on InputError { field } } }
"""
PREVIEW = """
query($rule: SegmentRuleInput!) { previewSegment(rule: $rule) { count label } }
"""


async def test_the_age_band_is_derived_from_the_age_check(server: Server) -> None:
    """Registration keeps only the five-year birth period in the community register,
    as a built-in attribute that members see but cannot edit and researchers can use."""
    from models.research import AttributeValue, ResearchAttribute

    people = [await member(server, birthDate=f"{year}-03-01") for year in (1990, 1991, 1994, 1995)]
    researcher = await staff(server, "researcher")
    attribute = await ResearchAttribute.get(key="birth_period")
    stored = {
        v.member_id: v.number  # type: ignore[attr-defined]
        for v in await AttributeValue.filter(attribute_id=attribute.id)
    }
    assert stored == {
        p.member_id: period for p, period in zip(people, (1990, 1990, 1990, 1995), strict=True)
    }
    body = await server.gql(ATTRIBUTES, token=people[0].token)
    mine = {a["key"]: a["myValues"] for a in body["data"]["researchAttributes"]}
    assert mine["birth_period"] == ["1990"], mine
    refused = await server.gql(
        SET_MINE, {"values": [{"key": "birth_period", "values": ["2000"]}]}, token=people[0].token
    )
    assert refused["data"]["setMyAttributes"]["code"] == "ANSWER_INVALID", refused
    rule = {
        "attribute": {
            "attributeId": body["data"]["researchAttributes"][0]["id"],
            "op": "BETWEEN",
            "min": 1985,
            "max": 1990,
        }
    }
    preview = await server.gql(PREVIEW, {"rule": rule}, token=researcher.token)
    assert preview["data"]["previewSegment"] == {"count": None, "label": "fewer than 5"}, preview
