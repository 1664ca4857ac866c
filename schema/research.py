"""Research: attributes, groups, segments, studies, taking part, results, prize draws.

Researchers (and admins) see studies, aggregates and respondent codes; they
never see a member id, a display name or contact data in anything about
answers. Members see only studies they are invited to (R7).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import community as cm
from models import research as rm
from resolvers import segments, studies
from resolvers.errors import Code, UserError
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.pagination import db_id, require_id
from schema.permissions import IsAdmin, IsAuthenticated, _HasRole

FEWER_THAN_FIVE = "fewer than 5"


class IsResearcher(_HasRole):
    """Researchers and admins: studies, segments, results (pseudonyms and codes only)."""

    roles = frozenset({cm.Role.RESEARCHER, cm.Role.ADMIN})


@strawberry.enum
class AttributeKind(Enum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    NUMBER = "number"
    YEAR = "year"


@strawberry.enum
class QuestionKind(Enum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    SCALE_5 = "scale_5"
    NPS = "nps"
    TEXT = "text"


@strawberry.enum
class StudyKind(Enum):
    SURVEY = "survey"
    DISCUSSION = "discussion"
    BOTH = "both"


@strawberry.enum
class StudyStatus(Enum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"
    ARCHIVED = "archived"


@strawberry.enum(description="A member's invitation as they see it.")
class InvitationState(Enum):
    OPEN = "open"
    COMPLETED = "completed"
    DECLINED = "declined"
    EXPIRED = "expired"


@strawberry.enum
class AttributeOp(Enum):
    EQUALS = "equals"
    IN = "in"
    NOT_IN = "not_in"
    BETWEEN = "between"
    IS_SET = "is_set"
    NOT_SET = "not_set"


@strawberry.enum
class ParticipationOp(Enum):
    INVITED_TO = "invited_to"
    COMPLETED = "completed"
    NOT_COMPLETED = "not_completed"
    ACTIVE_WITHIN_DAYS = "active_within_days"


def _lang(obj: Any, name: str, language: str) -> str:
    return studies.localized(obj, name, language)


@strawberry.type
class Option:
    value: str
    label: str


def _options(options: list[dict[str, str]], language: str) -> list[Option]:
    return [Option(value=o["value"], label=o.get(language) or o.get("en", "")) for o in options]


@strawberry.type(description="A research attribute members may fill in (voluntary, coarse).")
class ResearchAttribute(relay.Node):
    id: relay.NodeID[int]
    key: str
    kind: AttributeKind
    label: str
    options: list[Option]
    min_value: int | None
    max_value: int | None
    my_values: list[str] = strawberry.field(description="My own values (empty: not given).")

    @classmethod
    def from_row(
        cls, row: rm.ResearchAttribute, language: str, mine: list[str]
    ) -> ResearchAttribute:
        return cls(
            id=row.id,
            key=row.key,
            kind=AttributeKind(row.kind.value),
            label=_lang(row, "label", language),
            options=_options(row.options, language),
            min_value=row.min_value,
            max_value=row.max_value,
            my_values=mine,
        )


@strawberry.type
class Question(relay.Node):
    id: relay.NodeID[int]
    position: int
    kind: QuestionKind
    text: str
    options: list[Option]
    required: bool

    @classmethod
    def from_row(cls, row: rm.Question, language: str) -> Question:
        return cls(
            id=row.id,
            position=row.position,
            kind=QuestionKind(row.kind.value),
            text=_lang(row, "text", language),
            options=_options(row.options, language),
            required=row.required,
        )


@strawberry.type
class StudyTarget:
    everyone: bool
    group_ids: list[relay.GlobalID]
    segment_ids: list[relay.GlobalID]
    sample_size: int | None
    fatigue_days: int | None
    max_per_month: int | None


@strawberry.type(description="Participation so far. The response rate is completed / invited.")
class Participation:
    invited: int
    opened: int
    started: int
    completed: int
    declined: int
    response_rate: float | None


@strawberry.type(description="A prize draw: reproducible from its frozen list hash and seed.")
class PrizeDraw(relay.Node):
    id: relay.NodeID[int]
    prizes: int
    eligible_count: int
    eligible_hash: str = strawberry.field(description="SHA-256 of the frozen eligible list.")
    seed: str
    drawn_at: datetime
    winners: int = strawberry.field(description="How many were drawn (never who).")
    claimed: int
    redraw_of: relay.GlobalID | None


async def _draws(study_id: int) -> list[PrizeDraw]:
    out = []
    for draw in await rm.PrizeDraw.filter(study_id=study_id).order_by("id"):
        claimed = await rm.Reward.filter(draw_id=draw.id, claimed_at__isnull=False).count()
        out.append(
            PrizeDraw(
                id=draw.id,
                prizes=draw.prizes,
                eligible_count=len(draw.eligible),
                eligible_hash=draw.eligible_hash,
                seed=draw.seed,
                drawn_at=draw.drawn_at,
                winners=len(draw.winners),
                claimed=claimed,
                redraw_of=(
                    relay.GlobalID("PrizeDraw", str(draw.redraw_of_id))
                    if draw.redraw_of_id
                    else None
                ),
            )
        )
    return out


@strawberry.type(description="A study as researchers see it.")
class Study(relay.Node):
    id: relay.NodeID[int]
    row: strawberry.Private[rm.Study]
    title_fi: str
    title_sv: str
    title_en: str
    description_fi: str
    description_sv: str
    description_en: str
    reward_fi: str
    reward_sv: str
    reward_en: str
    kind: StudyKind
    opens_at: datetime
    closes_at: datetime
    status: StudyStatus
    target: StudyTarget
    sample_seed: str | None = strawberry.field(description="Recorded at launch when sampling.")
    reminder_days: int
    max_reminders: int
    masked: bool
    area_id: relay.GlobalID | None = strawberry.field(description="The discussion task's area.")

    @strawberry.field
    async def questions(self, info: Info) -> list[Question]:
        rows = await rm.Question.filter(study_id=self.id).order_by("position")
        return [Question.from_row(r, info.context.language) for r in rows]

    @strawberry.field
    async def participation(self) -> Participation:
        counts = await studies.participation(self.row)
        invited = counts["invited"]
        return Participation(
            **counts,
            response_rate=round(counts["completed"] / invited, 4) if invited else None,
        )

    @strawberry.field
    async def draws(self) -> list[PrizeDraw]:
        return await _draws(self.id)

    @classmethod
    def from_row(cls, row: rm.Study) -> Study:
        t = row.target
        return cls(
            id=row.id,
            row=row,
            **{
                f"{name}_{lang}": getattr(row, f"{name}_{lang}")
                for name in ("title", "description", "reward")
                for lang in ("fi", "sv", "en")
            },
            kind=StudyKind(row.kind.value),
            opens_at=row.opens_at,
            closes_at=row.closes_at,
            status=StudyStatus(studies.study_status(row)),
            target=StudyTarget(
                everyone=bool(t.get("everyone")),
                group_ids=[relay.GlobalID("MemberGroup", str(g)) for g in t.get("groups") or []],
                segment_ids=[relay.GlobalID("Segment", str(s)) for s in t.get("segments") or []],
                sample_size=t.get("sample"),
                fatigue_days=t.get("fatigue_days"),
                max_per_month=t.get("max_per_month"),
            ),
            sample_seed=row.sample_seed,
            reminder_days=row.reminder_days,
            max_reminders=row.max_reminders,
            masked=row.masked,
            area_id=(
                relay.GlobalID("Area", str(row.area_id))  # type: ignore[attr-defined]
                if row.area_id  # type: ignore[attr-defined]
                else None
            ),
        )


@strawberry.type
class MyAnswer:
    question_id: relay.GlobalID
    choice: str | None = None
    choices: list[str] | None = None
    scale: int | None = None
    text: str | None = None


@strawberry.type(description="A study I am invited to, in my language.")
class MemberStudy:
    id: relay.GlobalID
    title: str
    description: str
    reward: str = strawberry.field(description="How taking part is rewarded (R8).")
    kind: StudyKind
    opens_at: datetime
    closes_at: datetime
    state: InvitationState
    area_id: relay.GlobalID | None
    questions: list[Question]
    my_answers: list[MyAnswer]
    submitted: bool


async def member_study(
    study: rm.Study, invitation: rm.Invitation, language: str, with_answers: bool
) -> MemberStudy:
    # The list of invitations shows no questions: read them only for the study itself.
    questions = (
        await rm.Question.filter(study_id=study.id).order_by("position") if with_answers else []
    )
    answers: list[MyAnswer] = []
    submitted = False
    if with_answers and invitation.response_id:  # type: ignore[attr-defined]
        response = await rm.Response.get(id=invitation.response_id)  # type: ignore[attr-defined]
        submitted = response.submitted_at is not None
        by_question = {q.id: q for q in questions}
        for answer in await rm.Answer.filter(response_id=response.id):
            question = by_question.get(answer.question_id)  # type: ignore[attr-defined]
            if question is not None:
                answers.append(
                    MyAnswer(
                        question_id=relay.GlobalID("Question", str(question.id)),
                        choice=answer.value.get("choice"),
                        choices=answer.value.get("choices"),
                        scale=answer.value.get("scale"),
                        text=answer.value.get("text"),
                    )
                )
    return MemberStudy(
        id=relay.GlobalID("Study", str(study.id)),
        title=_lang(study, "title", language),
        description=_lang(study, "description", language),
        reward=_lang(study, "reward", language),
        kind=StudyKind(study.kind.value),
        opens_at=study.opens_at,
        closes_at=study.closes_at,
        state=InvitationState(studies.invitation_state(study, invitation)),
        area_id=(
            relay.GlobalID("Area", str(study.area_id))  # type: ignore[attr-defined]
            if study.area_id  # type: ignore[attr-defined]
            else None
        ),
        questions=[Question.from_row(q, language) for q in questions] if with_answers else [],
        my_answers=answers,
        submitted=submitted,
    )


@strawberry.type
class MyInvitation:
    study: MemberStudy
    state: InvitationState
    invited_at: datetime
    completed_at: datetime | None


@strawberry.type(description="A prize I won.")
class MyReward(relay.Node):
    id: relay.NodeID[int]
    study_title: str
    reward: str
    won_at: datetime
    claim_by: datetime
    claimed_at: datetime | None
    forfeited: bool


async def my_rewards(member: cm.Member, language: str) -> list[MyReward]:
    rows = (
        await rm.Reward.filter(member_id=member.id).order_by("-id").prefetch_related("draw__study")
    )
    out = []
    for row in rows:
        study = row.draw.study
        out.append(
            MyReward(
                id=row.id,
                study_title=_lang(study, "title", language),
                reward=_lang(study, "reward", language),
                won_at=row.won_at,
                claim_by=row.claim_by,
                claimed_at=row.claimed_at,
                forfeited=row.forfeited_at is not None,
            )
        )
    return out


@strawberry.type(description="A count shown to researchers; under 5 it is withheld.")
class ResultCell:
    value: str
    count: int | None = strawberry.field(description="Null: fewer than 5 (suppressed).")


@strawberry.type
class Breakdown:
    attribute_value: str
    respondents: int | None = strawberry.field(description="Null: fewer than 5.")
    cells: list[ResultCell]


@strawberry.type
class QuestionResult:
    question: Question
    respondents: int
    counts: list[ResultCell]
    mean: float | None
    nps: float | None = strawberry.field(description="Net promoter score (NPS questions).")
    texts: list[str] = strawberry.field(description="Open answers, without author, sorted.")
    breakdowns: list[Breakdown] = strawberry.field(
        description="By the chosen research attribute; every cell under 5 is suppressed."
    )


@strawberry.type
class StudyResults:
    study: Study
    respondents: int
    questions: list[QuestionResult]


@strawberry.type(description="How many members a rule selects now.")
class SegmentCount:
    count: int | None = strawberry.field(description="Null when fewer than 5.")
    label: str = strawberry.field(description='The count, or "fewer than 5".')


@strawberry.type
class Segment(relay.Node):
    id: relay.NodeID[int]
    name: str
    rule: JSON  # type: ignore[valid-type]


@strawberry.type
class MemberGroup(relay.Node):
    id: relay.NodeID[int]
    name: str
    size: int


# --- inputs -------------------------------------------------------------------------


@strawberry.input
class OptionInput:
    value: str
    label_fi: str
    label_sv: str
    label_en: str


def _option_dicts(options: list[OptionInput]) -> list[dict[str, str]]:
    return [
        {"value": o.value, "fi": o.label_fi, "sv": o.label_sv, "en": o.label_en} for o in options
    ]


@strawberry.input
class DefineAttributeInput:
    key: str = strawberry.field(description="a-z, 0-9 and _, 2-40 characters.")
    kind: AttributeKind
    label_fi: str
    label_sv: str
    label_en: str
    options: list[OptionInput] = strawberry.field(default_factory=list)
    min_value: int | None = None
    max_value: int | None = None


@strawberry.input
class AttributeValueInput:
    key: str
    values: list[str] = strawberry.field(description="Empty: remove my value.")


@strawberry.input
class AttributeConditionInput:
    attribute_id: relay.GlobalID
    op: AttributeOp
    values: list[str] | None = None
    min: int | None = None
    max: int | None = None


@strawberry.input
class ParticipationConditionInput:
    op: ParticipationOp
    study_id: relay.GlobalID | None = None
    days: int | None = None


@strawberry.input(description="Exactly one of and, or, attribute, participation.")
class SegmentRuleInput:
    and_: list[SegmentRuleInput] | None = strawberry.field(default=None, name="and")
    or_: list[SegmentRuleInput] | None = strawberry.field(default=None, name="or")
    attribute: AttributeConditionInput | None = None
    participation: ParticipationConditionInput | None = None


def rule_dict(rule: SegmentRuleInput) -> dict[str, Any]:
    """The stored form of a rule tree (ids as database ids)."""
    given = [rule.and_, rule.or_, rule.attribute, rule.participation]
    if sum(part is not None for part in given) != 1:
        raise UserError(Code.SEGMENT_INVALID, field="rule")  # exactly one per node
    if rule.and_ is not None:
        return {"and": [rule_dict(r) for r in rule.and_]}
    if rule.or_ is not None:
        return {"or": [rule_dict(r) for r in rule.or_]}
    if rule.attribute is not None:
        a = rule.attribute
        return {
            "attribute": {
                "attribute_id": require_id(a.attribute_id, "ResearchAttribute", "rule"),
                "op": a.op.value,
                "values": a.values,
                "min": a.min,
                "max": a.max,
            }
        }
    if rule.participation is not None:
        p = rule.participation
        leaf: dict[str, Any] = {"op": p.op.value, "days": p.days}
        if p.study_id is not None:
            leaf["study_id"] = require_id(p.study_id, "Study", "rule")
        return {"participation": leaf}
    return {}


@strawberry.input
class StudyInput:
    title_fi: str
    title_sv: str
    title_en: str
    description_fi: str = ""
    description_sv: str = ""
    description_en: str = ""
    reward_fi: str = ""
    reward_sv: str = ""
    reward_en: str = ""
    kind: StudyKind
    opens_at: datetime
    closes_at: datetime
    everyone: bool = False
    group_ids: list[relay.GlobalID] = strawberry.field(default_factory=list)
    segment_ids: list[relay.GlobalID] = strawberry.field(default_factory=list)
    sample_size: int | None = strawberry.field(
        default=None, description="Invite a random sample of this many (the seed is recorded)."
    )
    fatigue_days: int | None = strawberry.field(
        default=None, description="Skip members invited to any study in the last D days."
    )
    max_per_month: int | None = strawberry.field(
        default=None, description="Skip members with this many invitations in the last 30 days."
    )
    reminder_days: int = 0
    max_reminders: int = 0
    masked: bool = strawberry.field(
        default=False, description="Discussion task: see others' posts only after posting."
    )


def study_data(input: StudyInput) -> studies.StudyData:
    return studies.StudyData(
        titles={"fi": input.title_fi, "sv": input.title_sv, "en": input.title_en},
        descriptions={
            "fi": input.description_fi,
            "sv": input.description_sv,
            "en": input.description_en,
        },
        rewards={"fi": input.reward_fi, "sv": input.reward_sv, "en": input.reward_en},
        kind=rm.StudyKind(input.kind.value),
        opens_at=input.opens_at,
        closes_at=input.closes_at,
        everyone=input.everyone,
        group_ids=[require_id(g, "MemberGroup", "groupIds") for g in input.group_ids],
        segment_ids=[require_id(s, "Segment", "segmentIds") for s in input.segment_ids],
        sample_size=input.sample_size,
        fatigue_days=input.fatigue_days,
        max_per_month=input.max_per_month,
        reminder_days=input.reminder_days,
        max_reminders=input.max_reminders,
        masked=input.masked,
    )


@strawberry.input
class QuestionInput:
    kind: QuestionKind
    text_fi: str
    text_sv: str
    text_en: str
    options: list[OptionInput] = strawberry.field(default_factory=list)
    required: bool = True


@strawberry.input(description="Set the one field that fits the question's kind.")
class AnswerInput:
    question_id: relay.GlobalID
    choice: str | None = None
    choices: list[str] | None = None
    scale: int | None = None
    text: str | None = None


# --- results of mutations -----------------------------------------------------------


@strawberry.type
class AttributeSuccess:
    attribute: ResearchAttribute


@strawberry.type
class GroupSuccess:
    group: MemberGroup
    added: int = 0


@strawberry.type
class SegmentSuccess:
    segment: Segment
    count: SegmentCount


@strawberry.type
class StudySuccess:
    study: Study
    invited: int | None = strawberry.field(default=None, description="On launch: invitations.")


@strawberry.type
class MemberStudySuccess:
    study: MemberStudy


@strawberry.type
class DrawSuccess:
    draw: PrizeDraw


@strawberry.type
class RewardSuccess:
    reward: MyReward


@strawberry.type
class SettingSuccess:
    on: bool


Failure = InputError | NotAllowedError | RateLimitedError
AttributeResult = Annotated[AttributeSuccess | Failure, strawberry.union("AttributeResult")]
GroupResult = Annotated[GroupSuccess | Failure, strawberry.union("GroupResult")]
SegmentResult = Annotated[SegmentSuccess | Failure, strawberry.union("SegmentResult")]
StudyResult = Annotated[StudySuccess | Failure, strawberry.union("StudyResult")]
MemberStudyResult = Annotated[MemberStudySuccess | Failure, strawberry.union("MemberStudyResult")]
DrawResult = Annotated[DrawSuccess | Failure, strawberry.union("DrawResult")]
RewardResult = Annotated[RewardSuccess | Failure, strawberry.union("RewardResult")]
SettingResult = Annotated[SettingSuccess | Failure, strawberry.union("SettingResult")]


def _me(info: Info) -> cm.Member:
    member = info.context.member
    assert member is not None
    return member


def _segment(row: rm.Segment) -> Segment:
    return Segment(id=row.id, name=row.name, rule=row.rule)  # type: ignore[arg-type]


def _count(n: int | None) -> SegmentCount:
    return SegmentCount(count=n, label=str(n) if n is not None else FEWER_THAN_FIVE)


async def _attribute_node(row: rm.ResearchAttribute, member: cm.Member, language: str) -> Any:
    mine = (await segments.member_attribute_values(member.id)).get(row.id, [])
    return ResearchAttribute.from_row(row, language, mine)


async def _group_node(group: cm.MemberGroup) -> MemberGroup:
    size = await cm.GroupMembership.filter(group_id=group.id).count()
    return MemberGroup(id=group.id, name=group.name, size=size)


async def _member_study_of(member: cm.Member, study_id: int, language: str) -> MemberStudy:
    study, invitation = await studies.access_invitation(member, study_id)
    return await member_study(study, invitation, language, with_answers=True)


@strawberry.type
class ResearchQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Research attributes, with my own values (members fill them in freely).",
    )
    async def research_attributes(self, info: Info) -> list[ResearchAttribute]:
        member = _me(info)
        mine = await segments.member_attribute_values(member.id)
        rows = await rm.ResearchAttribute.all().order_by("id")
        return [
            ResearchAttribute.from_row(r, info.context.language, mine.get(r.id, [])) for r in rows
        ]

    @strawberry.field(permission_classes=[IsResearcher], description="Studies, newest first.")
    async def studies(self, info: Info) -> list[Study]:
        return [Study.from_row(r) for r in await rm.Study.all().order_by("-id").limit(200)]

    @strawberry.field(permission_classes=[IsResearcher])
    async def study(self, info: Info, id: relay.GlobalID) -> Study | None:
        node_id = db_id(id.node_id) if id.type_name == "Study" else None
        row = await rm.Study.get_or_none(id=node_id) if node_id else None
        return Study.from_row(row) if row else None

    @strawberry.field(permission_classes=[IsResearcher])
    async def segments(self, info: Info) -> list[Segment]:
        rows = await rm.Segment.all().order_by("name")
        return [_segment(r) for r in rows]

    @strawberry.field(permission_classes=[IsResearcher])
    async def member_groups(self, info: Info) -> list[MemberGroup]:
        return [await _group_node(g) for g in await cm.MemberGroup.all().order_by("name")]

    @strawberry.field(
        permission_classes=[IsResearcher],
        description='How many members a rule selects now ("fewer than 5" below 5).',
    )
    async def preview_segment(self, info: Info, rule: SegmentRuleInput) -> SegmentCount:
        try:
            return _count(await segments.do_preview(_me(info), rule_dict(rule)))
        except UserError as exc:
            raise _graphql_error(exc, info) from None

    @strawberry.field(
        permission_classes=[IsResearcher],
        description="Aggregates of submitted answers; breakdown cells under 5 are suppressed.",
    )
    async def study_results(
        self,
        info: Info,
        study_id: relay.GlobalID,
        breakdown_attribute_id: relay.GlobalID | None = None,
    ) -> StudyResults:
        try:
            breakdown = (
                require_id(breakdown_attribute_id, "ResearchAttribute", "breakdownAttributeId")
                if breakdown_attribute_id is not None
                else None
            )
            study, results = await studies.study_results(
                _me(info), require_id(study_id, "Study", "studyId"), breakdown
            )
        except UserError as exc:
            raise _graphql_error(exc, info) from None
        language = info.context.language
        respondents = await rm.Response.filter(
            study_id=study.id, submitted_at__isnull=False
        ).count()
        return StudyResults(
            study=Study.from_row(study),
            respondents=respondents,
            questions=[
                QuestionResult(
                    question=Question.from_row(r.question, language),
                    respondents=r.respondents,
                    counts=[ResultCell(value=c.value, count=c.count) for c in r.counts],
                    mean=r.mean,
                    nps=r.nps,
                    texts=r.texts,
                    breakdowns=[
                        Breakdown(
                            attribute_value=b.attribute_value,
                            respondents=b.respondents,
                            cells=[ResultCell(value=c.value, count=c.count) for c in b.cells],
                        )
                        for b in r.breakdowns
                    ],
                )
                for r in results
            ],
        )

    @strawberry.field(
        permission_classes=[IsResearcher],
        description="Submitted answers as CSV, one row per respondent code (audited).",
    )
    async def study_answers_csv(self, info: Info, study_id: relay.GlobalID) -> str:
        try:
            return await studies.answers_csv(_me(info), require_id(study_id, "Study", "studyId"))
        except UserError as exc:
            raise _graphql_error(exc, info) from None

    @strawberry.field(
        permission_classes=[IsResearcher],
        description="Re-run a prize draw from its frozen list and seed: true if it matches.",
    )
    async def verify_prize_draw(self, info: Info, draw_id: relay.GlobalID) -> bool:
        try:
            return await studies.verify_draw(_me(info), require_id(draw_id, "PrizeDraw", "drawId"))
        except UserError as exc:
            raise _graphql_error(exc, info) from None

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The studies I am invited to, newest first, optionally by state.",
    )
    async def my_invitations(
        self, info: Info, state: InvitationState | None = None
    ) -> list[MyInvitation]:
        member = _me(info)
        language = info.context.language
        rows = (
            await rm.Invitation.filter(member_id=member.id)
            .order_by("-id")
            .limit(200)
            .prefetch_related("study")
        )
        out = []
        for row in rows:
            if row.study.archived_at is not None:
                continue
            current = InvitationState(studies.invitation_state(row.study, row))
            if state is not None and current != state:
                continue
            out.append(
                MyInvitation(
                    study=await member_study(row.study, row, language, with_answers=False),
                    state=current,
                    invited_at=row.invited_at,
                    completed_at=row.completed_at,
                )
            )
        return out

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="A study I am invited to, with its questions and my saved answers.",
    )
    async def my_study(self, info: Info, id: relay.GlobalID) -> MemberStudy | None:
        member = _me(info)
        try:
            study, invitation = await studies.do_open_study(member, require_id(id, "Study", "id"))
        except UserError:
            return None
        return await member_study(study, invitation, info.context.language, with_answers=True)


def _graphql_error(exc: UserError, info: Info) -> Exception:
    from graphql import GraphQLError

    return GraphQLError(
        exc.message(info.context.language),
        extensions={"code": exc.code.value, "field": exc.field},
    )


@strawberry.type
class ResearchMutation:
    @strawberry.mutation(permission_classes=[IsAdmin], description="Define a research attribute.")
    async def define_research_attribute(
        self, info: Info, input: DefineAttributeInput
    ) -> AttributeResult:
        member = _me(info)
        try:
            row = await segments.do_define_attribute(
                member,
                input.key,
                rm.AttributeKind(input.kind.value),
                {"fi": input.label_fi, "sv": input.label_sv, "en": input.label_en},
                _option_dicts(input.options),
                input.min_value,
                input.max_value,
            )
        except UserError as exc:
            return failure(exc, info)
        return AttributeSuccess(attribute=await _attribute_node(row, member, info.context.language))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Set my research attributes (voluntary; an empty list removes a value).",
    )
    async def set_my_attributes(
        self, info: Info, values: list[AttributeValueInput]
    ) -> SettingResult:
        try:
            await segments.do_set_attributes(_me(info), [(v.key, v.values) for v in values])
        except UserError as exc:
            return failure(exc, info)
        return SettingSuccess(on=True)

    @strawberry.mutation(permission_classes=[IsResearcher], description="Create a member group.")
    async def create_member_group(self, info: Info, name: str) -> GroupResult:
        try:
            group = await segments.do_create_group(_me(info), name)
        except UserError as exc:
            return failure(exc, info)
        return GroupSuccess(group=await _group_node(group))

    @strawberry.mutation(
        permission_classes=[IsResearcher],
        description=(
            "Add members to a group by pseudonym (Member ids) and/or a previous study's "
            "participants (all invited, or only those who completed)."
        ),
    )
    async def add_group_members(
        self,
        info: Info,
        group_id: relay.GlobalID,
        member_ids: list[relay.GlobalID] | None = None,
        from_study_id: relay.GlobalID | None = None,
        completed_only: bool = True,
    ) -> GroupResult:
        try:
            gid = require_id(group_id, "MemberGroup", "groupId")
            added = await segments.do_add_group_members(
                _me(info),
                gid,
                [require_id(m, "Member", "memberIds") for m in member_ids or []],
                require_id(from_study_id, "Study", "fromStudyId") if from_study_id else None,
                completed_only,
            )
        except UserError as exc:
            return failure(exc, info)
        group = await cm.MemberGroup.get(id=gid)
        return GroupSuccess(group=await _group_node(group), added=added)

    @strawberry.mutation(permission_classes=[IsResearcher], description="Save a segment rule.")
    async def save_segment(self, info: Info, name: str, rule: SegmentRuleInput) -> SegmentResult:
        member = _me(info)
        try:
            stored = rule_dict(rule)
            row = await segments.do_save_segment(member, name, stored)
            count = await segments.do_preview(member, stored)
        except UserError as exc:
            return failure(exc, info)
        return SegmentSuccess(segment=_segment(row), count=_count(count))

    @strawberry.mutation(permission_classes=[IsResearcher], description="Create a draft study.")
    async def create_study(self, info: Info, input: StudyInput) -> StudyResult:
        try:
            row = await studies.do_create_study(_me(info), study_data(input))
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(row))

    @strawberry.mutation(permission_classes=[IsResearcher], description="Change a draft study.")
    async def update_study(self, info: Info, id: relay.GlobalID, input: StudyInput) -> StudyResult:
        try:
            row = await studies.do_update_study(
                _me(info), require_id(id, "Study", "id"), study_data(input)
            )
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(row))

    @strawberry.mutation(
        permission_classes=[IsResearcher],
        description="Replace a draft study's questions (their order is kept as given).",
    )
    async def set_study_questions(
        self, info: Info, id: relay.GlobalID, questions: list[QuestionInput]
    ) -> StudyResult:
        try:
            study_id = require_id(id, "Study", "id")
            await studies.do_set_questions(
                _me(info),
                study_id,
                [
                    studies.QuestionData(
                        kind=rm.QuestionKind(q.kind.value),
                        texts={"fi": q.text_fi, "sv": q.text_sv, "en": q.text_en},
                        options=_option_dicts(q.options),
                        required=q.required,
                    )
                    for q in questions
                ],
            )
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(await rm.Study.get(id=study_id)))

    @strawberry.mutation(
        permission_classes=[IsResearcher],
        description=(
            "Launch: invite the selected members (one invitation each, never two), notify "
            "them in-app and by email in their language."
        ),
    )
    async def launch_study(self, info: Info, id: relay.GlobalID) -> StudyResult:
        try:
            row, invited = await studies.do_launch(_me(info), require_id(id, "Study", "id"))
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(row), invited=invited)

    @strawberry.mutation(permission_classes=[IsResearcher], description="Close a study now.")
    async def close_study(self, info: Info, id: relay.GlobalID) -> StudyResult:
        try:
            row = await studies.do_close_study(_me(info), require_id(id, "Study", "id"))
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(row))

    @strawberry.mutation(permission_classes=[IsResearcher], description="Archive a study.")
    async def archive_study(self, info: Info, id: relay.GlobalID) -> StudyResult:
        try:
            row = await studies.do_archive_study(_me(info), require_id(id, "Study", "id"))
        except UserError as exc:
            return failure(exc, info)
        return StudySuccess(study=Study.from_row(row))

    @strawberry.mutation(
        permission_classes=[IsResearcher],
        description=(
            "Draw prize winners among completers; the list is frozen (hash recorded) and the "
            "seed recorded. Winners are told in-app and by email; you never see who they are."
        ),
    )
    async def draw_prizes(
        self, info: Info, study_id: relay.GlobalID, prizes: int, claim_days: int = 30
    ) -> DrawResult:
        try:
            draw = await studies.do_draw_prizes(
                _me(info), require_id(study_id, "Study", "studyId"), prizes, claim_days
            )
        except UserError as exc:
            return failure(exc, info)
        return DrawSuccess(draw=next(d for d in await _draws(draw.study_id) if d.id == draw.id))  # type: ignore[attr-defined]

    @strawberry.mutation(
        permission_classes=[IsResearcher],
        description="Forfeit prizes not claimed in time and draw as many new winners.",
    )
    async def redraw_unclaimed(
        self, info: Info, draw_id: relay.GlobalID, claim_days: int = 30
    ) -> DrawResult:
        try:
            draw = await studies.do_redraw_unclaimed(
                _me(info), require_id(draw_id, "PrizeDraw", "drawId"), claim_days
            )
        except UserError as exc:
            return failure(exc, info)
        return DrawSuccess(draw=next(d for d in await _draws(draw.study_id) if d.id == draw.id))  # type: ignore[attr-defined]

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Save some answers (partial saves are fine until I submit).",
    )
    async def save_answers(
        self, info: Info, study_id: relay.GlobalID, answers: list[AnswerInput]
    ) -> MemberStudyResult:
        member = _me(info)
        try:
            sid = require_id(study_id, "Study", "studyId")
            await studies.do_save_answers(
                member,
                sid,
                [
                    (
                        require_id(a.question_id, "Question", "questionId"),
                        {
                            "choice": a.choice,
                            "choices": a.choices,
                            "scale": a.scale,
                            "text": a.text,
                        },
                    )
                    for a in answers
                ],
            )
        except UserError as exc:
            return failure(exc, info)
        return MemberStudySuccess(study=await _member_study_of(member, sid, info.context.language))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Submit my answers, once; every required question must be answered.",
    )
    async def submit_answers(self, info: Info, study_id: relay.GlobalID) -> MemberStudyResult:
        member = _me(info)
        try:
            sid = require_id(study_id, "Study", "studyId")
            await studies.do_submit(member, sid)
        except UserError as exc:
            return failure(exc, info)
        return MemberStudySuccess(study=await _member_study_of(member, sid, info.context.language))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Decline a study.")
    async def decline_invitation(self, info: Info, study_id: relay.GlobalID) -> MemberStudyResult:
        member = _me(info)
        try:
            sid = require_id(study_id, "Study", "studyId")
            await studies.do_decline(member, sid)
        except UserError as exc:
            return failure(exc, info)
        return MemberStudySuccess(study=await _member_study_of(member, sid, info.context.language))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Receive study invitations by email (in-app invitations always come).",
    )
    async def set_study_emails(self, info: Info, on: bool) -> SettingResult:
        await studies.do_set_study_emails(_me(info), on)
        return SettingSuccess(on=on)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Claim a prize I won.")
    async def claim_reward(self, info: Info, id: relay.GlobalID) -> RewardResult:
        member = _me(info)
        try:
            row = await studies.do_claim_reward(member, require_id(id, "MyReward", "id"))
        except UserError as exc:
            return failure(exc, info)
        rewards = await my_rewards(member, info.context.language)
        return RewardSuccess(reward=next(r for r in rewards if r.id == row.id))
