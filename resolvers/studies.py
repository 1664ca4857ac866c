"""Research studies: targeting, invitations, answers, reminders, results and prize draws.

Researchers (and admins) create a study as a draft, add questions, and
launch it: launching selects the members (everyone, groups, segments, an
optional random sample with a recorded seed, fatigue rules), creates one
invitation per member, an in-app notice, and an email through the operator
path (``resolvers.outreach``). Members open, answer (partial saves), submit
once, or decline. Researchers see respondent codes and aggregates only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.community import GroupMembership, Member, MemberGroup, MemberStatus, Role
from models.discussions import Area
from models.research import (
    Answer,
    AttributeValue,
    Invitation,
    InvitationStatus,
    PrizeDraw,
    Question,
    QuestionKind,
    ResearchAttribute,
    Response,
    Reward,
    Segment,
    Study,
    StudyKind,
)
from resolvers import audit, clock, mail, outreach
from resolvers.errors import Code, UserError
from resolvers.formatting import clean_text
from resolvers.notices import notify, notify_many
from resolvers.segments import RESEARCHERS, evaluate, ids, shown_count
from subscriptions.bus import get_bus
from subscriptions.notifications import EVERYONE_CHANNEL, member_channel

log = logging.getLogger("community.studies")
# Day counts (fatigue, reminders, prize claims) are bounded: ten years at most.
MAX_DAYS = 3650

LANGS = ("fi", "sv", "en")
TEXT_MAX = 5000
ANSWER_TEXT_MAX = 5000
MAX_QUESTIONS = 100
MAX_OPTIONS = 30
PUBLISH_EACH_UP_TO = 200  # more invitees than this: one wake-up for every stream


class StudyStatus:
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"
    ARCHIVED = "archived"


def study_status(study: Study, now: datetime | None = None) -> str:
    now = now or clock.now()
    if study.archived_at is not None:
        return StudyStatus.ARCHIVED
    if study.launched_at is None:
        return StudyStatus.DRAFT
    if study.closed_at is not None or now >= study.closes_at:
        return StudyStatus.CLOSED
    if now < study.opens_at:
        return StudyStatus.SCHEDULED
    return StudyStatus.OPEN


def localized(obj: Any, name: str, language: str) -> str:
    return str(getattr(obj, f"{name}_{language}", "") or getattr(obj, f"{name}_en", ""))


def _require_researcher(member: Member) -> None:
    if member.role not in RESEARCHERS:
        raise UserError(Code.NOT_FOUND)


async def access_study(researcher: Member, study_id: int) -> Study:
    _require_researcher(researcher)
    study = await Study.get_or_none(id=study_id)
    if study is None:
        raise UserError(Code.NOT_FOUND, field="studyId")
    return study


# --- creating a study ---------------------------------------------------------------


@dataclass
class StudyData:
    titles: dict[str, str]
    descriptions: dict[str, str]
    rewards: dict[str, str]
    kind: StudyKind
    opens_at: datetime
    closes_at: datetime
    everyone: bool = False
    group_ids: list[int] = field(default_factory=list)
    segment_ids: list[int] = field(default_factory=list)
    sample_size: int | None = None
    fatigue_days: int | None = None
    max_per_month: int | None = None
    reminder_days: int = 0
    max_reminders: int = 0
    masked: bool = False


async def _check_study(data: StudyData) -> dict[str, Any]:
    for lang in LANGS:
        data.titles[lang] = clean_text(data.titles.get(lang, ""), 200, field=f"title{lang.title()}")
        for texts, name in ((data.descriptions, "description"), (data.rewards, "reward")):
            text = texts.get(lang, "")
            texts[lang] = (
                clean_text(text, TEXT_MAX, field=f"{name}{lang.title()}") if text.strip() else ""
            )
    if data.closes_at <= data.opens_at:
        raise UserError(Code.STUDY_INVALID, field="closesAt", reason="closes before it opens")
    if not data.everyone and not data.group_ids and not data.segment_ids:
        raise UserError(Code.STUDY_INVALID, field="target", reason="no target")
    if len(set(data.group_ids)) != await MemberGroup.filter(id__in=data.group_ids).count():
        raise UserError(Code.NOT_FOUND, field="groupIds")
    if len(set(data.segment_ids)) != await Segment.filter(id__in=data.segment_ids).count():
        raise UserError(Code.NOT_FOUND, field="segmentIds")
    for value, name in (
        (data.sample_size, "sampleSize"),
        (data.max_per_month, "maxPerMonth"),
    ):
        if value is not None and value < 1:
            raise UserError(Code.STUDY_INVALID, field=name, reason=f"{name} must be positive")
    for value, name in (
        (data.fatigue_days, "fatigueDays"),
        (data.reminder_days, "reminderDays"),
        (data.max_reminders, "maxReminders"),
    ):
        if value is not None and not 0 <= value <= MAX_DAYS:
            raise UserError(
                Code.STUDY_INVALID, field=name, reason=f"{name} must be 0 to {MAX_DAYS}"
            )
    return {
        "everyone": data.everyone,
        "groups": sorted(set(data.group_ids)),
        "segments": sorted(set(data.segment_ids)),
        "sample": data.sample_size,
        "fatigue_days": data.fatigue_days,
        "max_per_month": data.max_per_month,
    }


def _study_fields(data: StudyData, target: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": data.kind,
        "opens_at": data.opens_at,
        "closes_at": data.closes_at,
        "target": target,
        "reminder_days": data.reminder_days,
        "max_reminders": data.max_reminders,
        "masked": data.masked,
    }
    for lang in LANGS:
        fields[f"title_{lang}"] = data.titles[lang]
        fields[f"description_{lang}"] = data.descriptions[lang]
        fields[f"reward_{lang}"] = data.rewards[lang]
    return fields


async def _sync_area(study: Study) -> None:
    """A discussion task's area: created with the study, titled like it, masked if asked."""
    wants_area = study.kind in (StudyKind.DISCUSSION, StudyKind.BOTH)
    if wants_area and study.area_id is None:  # type: ignore[attr-defined]
        area = await Area.create(
            title_fi=study.title_fi,
            title_sv=study.title_sv,
            title_en=study.title_en,
            description_fi=study.description_fi,
            description_sv=study.description_sv,
            description_en=study.description_en,
            study_id=study.id,
            masked=study.masked,
            members_can_start_threads=False,
            created_by_id=study.created_by_id,
        )
        study.area_id = area.id  # type: ignore[attr-defined]
        await Study.filter(id=study.id).update(area_id=area.id)
    elif study.area_id is not None:  # type: ignore[attr-defined]
        await Area.filter(id=study.area_id).update(  # type: ignore[attr-defined]
            masked=study.masked,
            title_fi=study.title_fi,
            title_sv=study.title_sv,
            title_en=study.title_en,
        )


async def do_create_study(researcher: Member, data: StudyData) -> Study:
    _require_researcher(researcher)
    target = await _check_study(data)
    async with in_transaction("community"):
        study = await Study.create(**_study_fields(data, target), created_by_id=researcher.id)
        await _sync_area(study)
        await audit.record(researcher, "study.create", study=study.id)
    return study


async def do_update_study(researcher: Member, study_id: int, data: StudyData) -> Study:
    study = await access_study(researcher, study_id)
    target = await _check_study(data)
    async with in_transaction("community"):
        study = await Study.filter(id=study.id).select_for_update().get()
        if study.launched_at is not None:
            raise UserError(Code.STUDY_NOT_DRAFT)
        study.update_from_dict(_study_fields(data, target))
        await study.save()
        await _sync_area(study)
        await audit.record(researcher, "study.update", study=study.id)
    return study


@dataclass
class QuestionData:
    kind: QuestionKind
    texts: dict[str, str]
    options: list[dict[str, str]] = field(default_factory=list)
    required: bool = True


async def do_set_questions(
    researcher: Member, study_id: int, questions: list[QuestionData]
) -> list[Question]:
    """Replace a draft study's questions; their order is fixed from here on."""
    study = await access_study(researcher, study_id)
    if len(questions) > MAX_QUESTIONS:
        raise UserError(Code.STUDY_INVALID, field="questions", reason="too many questions")
    for n, question in enumerate(questions):
        where = f"questions.{n}"
        for lang in LANGS:
            question.texts[lang] = clean_text(question.texts.get(lang, ""), TEXT_MAX, field=where)
        choice = question.kind in (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE)
        values = [o.get("value", "") for o in question.options]
        if choice and not (2 <= len(values) <= MAX_OPTIONS and len(set(values)) == len(values)):
            raise UserError(Code.STUDY_INVALID, field=where, reason="choices need 2-30 options")
        if not choice and question.options:
            raise UserError(Code.STUDY_INVALID, field=where, reason="only choices have options")
        for option in question.options:
            if not 1 <= len(option.get("value", "")) <= 40:
                raise UserError(Code.STUDY_INVALID, field=where, reason="option values")
            for lang in LANGS:
                option[lang] = clean_text(option.get(lang, ""), 500, field=where)
    async with in_transaction("community"):
        locked = await Study.filter(id=study.id).select_for_update().get()
        if locked.launched_at is not None:
            raise UserError(Code.STUDY_NOT_DRAFT)
        await Question.filter(study_id=study.id).delete()
        rows = [
            await Question.create(
                study_id=study.id,
                position=n + 1,
                kind=q.kind,
                text_fi=q.texts["fi"],
                text_sv=q.texts["sv"],
                text_en=q.texts["en"],
                options=q.options,
                required=q.required,
            )
            for n, q in enumerate(questions)
        ]
        await audit.record(researcher, "study.questions", study=study.id, count=len(rows))
    return rows


# --- launching ----------------------------------------------------------------------


async def select_members(study: Study, seed: str | None) -> tuple[list[int], str | None]:
    """The members a launch invites: target, fatigue rules, then the random sample."""
    target = study.target
    universe = set(await ids(Member.filter(role=Role.MEMBER, status=MemberStatus.ACTIVE), "id"))
    if target.get("everyone"):
        chosen = set(universe)
    else:
        chosen = set()
        if target.get("groups"):
            chosen |= set(
                await ids(GroupMembership.filter(group_id__in=target["groups"]), "member_id")
            )
        for segment in await Segment.filter(id__in=target.get("segments") or []):
            chosen |= await evaluate(segment.rule, universe)
        chosen &= universe
    now = clock.now()
    if target.get("fatigue_days"):
        since = now - timedelta(days=int(target["fatigue_days"]))
        chosen -= set(
            await ids(
                Invitation.filter(member_id__in=list(chosen), invited_at__gte=since), "member_id"
            )
        )
    if target.get("max_per_month"):
        since = now - timedelta(days=30)
        counts: dict[int, int] = {}
        for member_id in await ids(
            Invitation.filter(member_id__in=list(chosen), invited_at__gte=since), "member_id"
        ):
            counts[member_id] = counts.get(member_id, 0) + 1
        chosen -= {m for m, n in counts.items() if n >= int(target["max_per_month"])}
    ordered = sorted(chosen)
    sample = target.get("sample")
    if sample and len(ordered) > int(sample):
        seed = seed or secrets.token_hex(16)
        ordered = sorted(random.Random(seed).sample(ordered, int(sample)))
    elif sample:
        seed = seed or secrets.token_hex(16)  # recorded even when everyone fits
    return ordered, seed


async def do_launch(researcher: Member, study_id: int) -> tuple[Study, int]:
    """Invite the selected members: one invitation each, a notice, and an email."""
    study = await access_study(researcher, study_id)
    now = clock.now()
    if study.launched_at is not None:
        raise UserError(Code.STUDY_NOT_DRAFT)
    if study.closes_at <= now:
        raise UserError(Code.STUDY_INVALID, field="closesAt", reason="it has already closed")
    if study.kind in (StudyKind.SURVEY, StudyKind.BOTH) and not await Question.exists(
        study_id=study.id
    ):
        raise UserError(Code.STUDY_INVALID, field="questions", reason="a survey needs questions")
    async with in_transaction("community"):
        study = await Study.filter(id=study.id).select_for_update().get()
        if study.launched_at is not None:
            raise UserError(Code.STUDY_NOT_DRAFT)
        members, seed = await select_members(study, None)
        study.launched_at = now
        study.sample_seed = seed
        await study.save(update_fields=["launched_at", "sample_seed"])
        # Rows in random order: invitation ids must not follow member ids (an invitation
        # whose member is later erased would otherwise be placed by its neighbours).
        shuffled = random.sample(members, len(members))
        await Invitation.bulk_create(
            [Invitation(study_id=study.id, member_id=m, invited_at=now) for m in shuffled],
            batch_size=500,
        )
        await notify_many(members, "STUDY_INVITATION", {"studyId": study.id})
        await audit.record(
            researcher, "study.launch", study=study.id, invited=len(members), seed=seed
        )
    await _wake(members)
    await queue_invitation_emails(study.id)
    return study, len(members)


async def _wake(member_ids: list[int]) -> None:
    bus = get_bus()
    if len(member_ids) > PUBLISH_EACH_UP_TO:
        await bus.publish(EVERYONE_CHANNEL, {"type": "notification"})
        return
    for member_id in member_ids:
        await bus.publish(member_channel(member_id), {"type": "notification"})


def study_global_id(study_id: int) -> str:
    """The study's GraphQL id (what `myStudy(id:)` takes), for links in mail."""
    return base64.b64encode(f"Study:{study_id}".encode()).decode()


def _mail_context(study: Study) -> Callable[[str], dict[str, Any]]:
    return lambda language: _study_mail(study, language)


def _study_mail(study: Study, language: str) -> dict[str, Any]:
    return {
        "title": localized(study, "title", language),
        "reward": localized(study, "reward", language),
        "closes": study.closes_at.strftime("%Y-%m-%d"),
        "link": mail.link(f"/studies/{study_global_id(study.id)}"),
    }


async def queue_invitation_emails(study_id: int, batch: int = 200) -> int:
    """Email the study's invitees who want study emails (at most once each)."""
    study = await Study.get(id=study_id)
    queued = 0
    while True:
        rows = (
            await Invitation.filter(study_id=study.id, email_queued=False, member_id__isnull=False)
            .order_by("id")
            .limit(batch)
        )
        if not rows:
            return queued
        batch_ids = [r.id for r in rows]
        # Claim the batch first: two workers never email the same invitation.
        claimed = await Invitation.filter(id__in=batch_ids, email_queued=False).update(
            email_queued=True
        )
        if claimed != len(batch_ids):
            continue  # another worker is on it
        invitees = [r.member_id for r in rows]  # type: ignore[attr-defined]
        wanted = await ids(
            Member.filter(id__in=invitees, study_emails=True, status=MemberStatus.ACTIVE)
        )
        queued += await outreach.email_members(
            wanted, "study_invitation", lambda lang: _study_mail(study, lang)
        )


async def do_close_study(researcher: Member, study_id: int) -> Study:
    study = await access_study(researcher, study_id)
    if study_status(study) in (StudyStatus.CLOSED, StudyStatus.ARCHIVED):
        return study
    if study.launched_at is None:
        raise UserError(Code.STUDY_NOT_OPEN)
    study.closed_at = clock.now()
    async with in_transaction("community"):
        await study.save(update_fields=["closed_at"])
        await audit.record(researcher, "study.close", study=study.id)
    return study


async def do_archive_study(researcher: Member, study_id: int) -> Study:
    study = await access_study(researcher, study_id)
    if study.archived_at is not None:
        return study
    if study_status(study) not in (StudyStatus.CLOSED, StudyStatus.DRAFT):
        raise UserError(Code.STUDY_NOT_OPEN)
    study.archived_at = clock.now()
    async with in_transaction("community"):
        await study.save(update_fields=["archived_at"])
        await audit.record(researcher, "study.archive", study=study.id)
    return study


# --- reminders (the research job) ---------------------------------------------------


async def send_reminders() -> int:
    """Remind invitees who have not completed an open study; idempotent per round."""
    now = clock.now()
    sent = 0
    for study in await Study.filter(
        launched_at__isnull=False,
        closed_at__isnull=True,
        archived_at__isnull=True,
        closes_at__gt=now,
        opens_at__lte=now,
        reminder_days__gt=0,
        max_reminders__gt=0,
    ):
        due_before = now - timedelta(days=study.reminder_days)
        rows = await Invitation.filter(
            Q(last_reminded_at__lte=due_before)
            | Q(last_reminded_at__isnull=True, invited_at__lte=due_before),
            study_id=study.id,
            member_id__isnull=False,
            member__status=MemberStatus.ACTIVE,  # not banned members in their legal hold
            status__in=(
                InvitationStatus.INVITED,
                InvitationStatus.OPENED,
                InvitationStatus.STARTED,
            ),
            reminders_sent__lt=study.max_reminders,
        )
        reminded: list[int] = []
        for row in rows:
            # Conditional on the count seen: a second worker's run skips it.
            async with in_transaction("community"):
                took = await Invitation.filter(id=row.id, reminders_sent=row.reminders_sent).update(
                    reminders_sent=row.reminders_sent + 1, last_reminded_at=now
                )
                if took:
                    await notify(row.member_id, "STUDY_REMINDER", {"studyId": study.id})  # type: ignore[attr-defined]
                    reminded.append(row.member_id)  # type: ignore[attr-defined]
        if reminded:
            await _wake(reminded)
            wanted = await ids(Member.filter(id__in=reminded, study_emails=True), "id")
            await outreach.email_members(wanted, "study_reminder", _mail_context(study))
            sent += len(reminded)
    return sent


async def run_research_job() -> dict[str, int]:
    """One round of the scheduled research work (safe to run on every worker)."""
    emails = 0
    for study_id in await ids(Study.filter(launched_at__isnull=False)):
        if await Invitation.exists(study_id=study_id, email_queued=False):
            emails += await queue_invitation_emails(study_id)
    return {"invitation_emails": emails, "reminders": await send_reminders()}


# --- members taking part ------------------------------------------------------------


async def access_invitation(member: Member, study_id: int) -> tuple[Study, Invitation]:
    """Only invited members may see or take part in a study (R7)."""
    invitation = await Invitation.get_or_none(study_id=study_id, member_id=member.id)
    if invitation is None:
        raise UserError(Code.NOT_FOUND, field="studyId")
    study = await Study.get(id=study_id)
    if study.archived_at is not None:
        raise UserError(Code.NOT_FOUND, field="studyId")
    return study, invitation


def invitation_state(study: Study, invitation: Invitation) -> str:
    """open, completed, declined or expired, as the member sees it."""
    if invitation.status == InvitationStatus.COMPLETED:
        return "completed"
    if invitation.status == InvitationStatus.DECLINED:
        return "declined"
    if study_status(study) in (StudyStatus.CLOSED, StudyStatus.ARCHIVED):
        return "expired"
    return "open"


async def do_open_study(member: Member, study_id: int) -> tuple[Study, Invitation]:
    study, invitation = await access_invitation(member, study_id)
    if invitation.status == InvitationStatus.INVITED and study_status(study) == StudyStatus.OPEN:
        await Invitation.filter(id=invitation.id, status=InvitationStatus.INVITED).update(
            status=InvitationStatus.OPENED, opened_at=clock.now()
        )
        await invitation.refresh_from_db()
        await _touch(member)  # accepting an invitation counts as taking part
    return study, invitation


def _check_writable(study: Study, invitation: Invitation) -> None:
    status = study_status(study)
    if status == StudyStatus.SCHEDULED:
        raise UserError(Code.STUDY_NOT_OPEN)
    if status != StudyStatus.OPEN:
        raise UserError(Code.STUDY_CLOSED)
    if invitation.status == InvitationStatus.COMPLETED:
        raise UserError(Code.ALREADY_SUBMITTED)
    if invitation.status == InvitationStatus.DECLINED:
        raise UserError(Code.INVITATION_DECLINED)


def check_answer(question: Question, value: dict[str, Any]) -> dict[str, Any]:
    """A validated answer for the question, or ANSWER_INVALID naming the question."""
    where = f"question:{question.position}"
    keys = {k for k, v in value.items() if v is not None}
    options = [o["value"] for o in question.options]
    if question.kind == QuestionKind.SINGLE_CHOICE:
        if keys != {"choice"} or value["choice"] not in options:
            raise UserError(Code.ANSWER_INVALID, field=where)
        return {"choice": value["choice"]}
    if question.kind == QuestionKind.MULTIPLE_CHOICE:
        choices = value.get("choices")
        if keys != {"choices"} or not choices or len(set(choices)) != len(choices):
            raise UserError(Code.ANSWER_INVALID, field=where)
        if any(c not in options for c in choices):
            raise UserError(Code.ANSWER_INVALID, field=where)
        return {"choices": [o for o in options if o in choices]}  # in the question's order
    if question.kind in (QuestionKind.SCALE_5, QuestionKind.NPS):
        low, high = (1, 5) if question.kind == QuestionKind.SCALE_5 else (0, 10)
        scale = value.get("scale")
        if keys != {"scale"} or not isinstance(scale, int) or not low <= scale <= high:
            raise UserError(Code.ANSWER_INVALID, field=where)
        return {"scale": scale}
    if keys != {"text"} or not isinstance(value["text"], str):
        raise UserError(Code.ANSWER_INVALID, field=where)
    return {"text": clean_text(value["text"], ANSWER_TEXT_MAX, field=where)}


async def _touch(member: Member) -> None:
    await Member.filter(id=member.id).update(last_active_at=clock.now())


async def do_save_answers(
    member: Member, study_id: int, answers: list[tuple[int, dict[str, Any]]]
) -> Response:
    """Save (or replace) some answers; all are validated before any is stored."""
    study, invitation = await access_invitation(member, study_id)
    _check_writable(study, invitation)
    questions = {q.id: q for q in await Question.filter(study_id=study.id)}
    checked = []
    for question_id, value in answers:
        question = questions.get(question_id)
        if question is None:
            raise UserError(Code.NOT_FOUND, field="questionId")
        checked.append((question, check_answer(question, value)))
    now = clock.now()
    async with in_transaction("community"):
        invitation = await Invitation.filter(id=invitation.id).select_for_update().get()
        _check_writable(study, invitation)
        response = await _response_of(study, invitation)
        for question, value in checked:
            updated = await Answer.filter(response_id=response.id, question_id=question.id).update(
                value=value, saved_at=now
            )
            if not updated:
                await Answer.create(response=response, question=question, value=value, saved_at=now)
        if invitation.status in (InvitationStatus.INVITED, InvitationStatus.OPENED):
            invitation.status = InvitationStatus.STARTED
            invitation.started_at = now
            invitation.opened_at = invitation.opened_at or now
            await invitation.save(update_fields=["status", "started_at", "opened_at"])
    await _touch(member)
    return response


async def _response_of(study: Study, invitation: Invitation) -> Response:
    if invitation.response_id is not None:  # type: ignore[attr-defined]
        return await Response.get(id=invitation.response_id)  # type: ignore[attr-defined]
    for _ in range(5):
        code = secrets.token_hex(5).upper()
        try:
            async with in_transaction("community"):  # a savepoint: a taken code is retried
                response = await Response.create(study=study, respondent_code=code)
        except IntegrityError:
            continue
        invitation.response_id = response.id  # type: ignore[attr-defined]
        await invitation.save(update_fields=["response_id"])
        return response
    raise RuntimeError("no free respondent code")


async def do_submit(member: Member, study_id: int) -> Response:
    """Submit once: every required question must have an answer."""
    study, invitation = await access_invitation(member, study_id)
    _check_writable(study, invitation)
    now = clock.now()
    async with in_transaction("community"):
        invitation = await Invitation.filter(id=invitation.id).select_for_update().get()
        _check_writable(study, invitation)
        response = await _response_of(study, invitation)
        answered = set(await ids(Answer.filter(response_id=response.id), "question_id"))
        for question in await Question.filter(study_id=study.id, required=True).order_by(
            "position"
        ):
            if question.id not in answered:
                raise UserError(Code.ANSWER_REQUIRED, field=f"question:{question.position}")
        response.submitted_at = now
        await response.save(update_fields=["submitted_at"])
        invitation.status = InvitationStatus.COMPLETED
        invitation.completed_at = now
        invitation.started_at = invitation.started_at or now
        invitation.opened_at = invitation.opened_at or now
        await invitation.save(update_fields=["status", "completed_at", "started_at", "opened_at"])
    await _touch(member)
    return response


async def do_decline(member: Member, study_id: int) -> Invitation:
    study, invitation = await access_invitation(member, study_id)
    if invitation.status == InvitationStatus.COMPLETED:
        raise UserError(Code.ALREADY_SUBMITTED)
    if invitation.status != InvitationStatus.DECLINED and study_status(study) in (
        StudyStatus.CLOSED,
        StudyStatus.ARCHIVED,
    ):
        raise UserError(Code.STUDY_CLOSED)  # an expired invitation stays expired
    if invitation.status != InvitationStatus.DECLINED:
        await Invitation.filter(id=invitation.id).update(
            status=InvitationStatus.DECLINED, declined_at=clock.now()
        )
        await invitation.refresh_from_db()
    return invitation


async def do_set_study_emails(member: Member, on: bool) -> None:
    await Member.filter(id=member.id).update(study_emails=on)
    member.study_emails = on


async def check_area_writable(area: Area) -> None:
    """A study's discussion area takes posts only while the study is open."""
    study_id = getattr(area, "study_id", None)
    if study_id is None:
        return
    study = await Study.get_or_none(id=study_id)
    if study is None:
        return
    status = study_status(study)
    if status in (StudyStatus.DRAFT, StudyStatus.SCHEDULED):
        raise UserError(Code.STUDY_NOT_OPEN)
    if status != StudyStatus.OPEN:
        raise UserError(Code.STUDY_CLOSED)


# --- researchers' figures ----------------------------------------------------------


async def participation(study: Study) -> dict[str, int]:
    """Invited, opened, started, completed, declined (each a stage reached)."""
    counts = dict.fromkeys(("invited", "opened", "started", "completed", "declined"), 0)
    for status, opened, started in await Invitation.filter(study_id=study.id).values_list(
        "status", "opened_at", "started_at"
    ):
        counts["invited"] += 1
        counts["opened"] += opened is not None
        counts["started"] += started is not None
        counts["completed"] += status == InvitationStatus.COMPLETED
        counts["declined"] += status == InvitationStatus.DECLINED
    return counts


@dataclass
class Cell:
    value: str  # the answer option, or a scale point as text
    count: int | None  # None: suppressed (fewer than 5)


@dataclass
class Breakdown:
    attribute_value: str
    respondents: int | None
    cells: list[Cell]


@dataclass
class QuestionResult:
    question: Question
    respondents: int
    counts: list[Cell]
    mean: float | None
    nps: float | None
    texts: list[str]
    breakdowns: list[Breakdown]


async def _submitted(study: Study) -> list[Response]:
    return await Response.filter(study_id=study.id, submitted_at__isnull=False).order_by("id")


def _points(question: Question) -> list[str]:
    if question.kind in (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE):
        return [o["value"] for o in question.options]
    if question.kind == QuestionKind.SCALE_5:
        return [str(n) for n in range(1, 6)]
    if question.kind == QuestionKind.NPS:
        return [str(n) for n in range(0, 11)]
    return []


def _answer_points(value: dict[str, Any]) -> list[str]:
    if "choice" in value:
        return [str(value["choice"])]
    if "choices" in value:
        return [str(c) for c in value["choices"]]
    if "scale" in value:
        return [str(value["scale"])]
    return []


async def study_results(
    researcher: Member, study_id: int, breakdown_attribute_id: int | None
) -> tuple[Study, list[QuestionResult]]:
    """Per-question aggregates of submitted responses; breakdown cells under 5 suppressed."""
    study = await access_study(researcher, study_id)
    responses = await _submitted(study)
    response_ids = [r.id for r in responses]
    answers: dict[int, dict[int, dict[str, Any]]] = {}  # question -> response -> value
    for question_id, response_id, value in await Answer.filter(
        response_id__in=response_ids
    ).values_list("question_id", "response_id", "value"):
        answers.setdefault(question_id, {})[response_id] = value  # type: ignore[assignment]
    groups: dict[str, set[int]] = {}
    if breakdown_attribute_id is not None:
        attribute = await ResearchAttribute.get_or_none(id=breakdown_attribute_id)
        if attribute is None:
            raise UserError(Code.NOT_FOUND, field="breakdownAttributeId")
        # Respondent -> member only inside this function: researchers get counts.
        members = dict(
            await Invitation.filter(
                response_id__in=response_ids, member_id__isnull=False
            ).values_list("member_id", "response_id")
        )
        for member_id, text, number in await AttributeValue.filter(
            attribute_id=attribute.id, member_id__in=list(members)
        ).values_list("member_id", "text", "number"):
            key = text if text is not None else str(number)
            groups.setdefault(key, set()).add(members[member_id])
    results = []
    for question in await Question.filter(study_id=study.id).order_by("position"):
        given = answers.get(question.id, {})
        points = _points(question)
        tally = dict.fromkeys(points, 0)
        for value in given.values():
            for point in _answer_points(value):
                tally[point] = tally.get(point, 0) + 1
        scales = [v["scale"] for v in given.values() if "scale" in v]
        mean = sum(scales) / len(scales) if scales else None
        nps = None
        if question.kind == QuestionKind.NPS and scales:
            promoters = sum(1 for s in scales if s >= 9)
            detractors = sum(1 for s in scales if s <= 6)
            nps = round(100 * (promoters - detractors) / len(scales), 1)
        texts = sorted(str(v["text"]) for v in given.values() if "text" in v)
        breakdowns = []
        for key in sorted(groups):
            members_here = groups[key] & set(given)
            cell_tally = dict.fromkeys(points, 0)
            for response_id in members_here:
                for point in _answer_points(given[response_id]):
                    cell_tally[point] = cell_tally.get(point, 0) + 1
            breakdowns.append(
                Breakdown(
                    attribute_value=key,
                    respondents=shown_count(len(members_here)),
                    cells=[Cell(p, shown_count(n)) for p, n in cell_tally.items()],
                )
            )
        results.append(
            QuestionResult(
                question=question,
                respondents=len(given),
                counts=[Cell(p, n) for p, n in tally.items()],
                mean=round(mean, 2) if mean is not None else None,
                nps=nps,
                texts=texts,
                breakdowns=breakdowns,
            )
        )
    return study, results


async def answers_csv(researcher: Member, study_id: int) -> str:
    """Submitted answers as CSV: one row per respondent code, one column per question."""
    study = await access_study(researcher, study_id)
    questions = await Question.filter(study_id=study.id).order_by("position")
    responses = await _submitted(study)
    values: dict[tuple[int, int], dict[str, Any]] = {
        (r, q): v
        for r, q, v in await Answer.filter(response_id__in=[r.id for r in responses]).values_list(
            "response_id", "question_id", "value"
        )
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["respondent", "submitted", *[f"q{q.position}" for q in questions]])
    for response in sorted(responses, key=lambda r: r.respondent_code):
        row = [response.respondent_code, response.submitted_at.date().isoformat()]  # type: ignore[union-attr]
        for question in questions:
            value = values.get((response.id, question.id), {})
            if "text" in value:
                row.append(_csv_safe(str(value["text"])))
            else:
                row.append(";".join(_answer_points(value)))
        writer.writerow(row)
    await audit.record(researcher, "study.export", study=study.id, rows=len(responses))
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- prize draws --------------------------------------------------------------------


def eligible_hash(invitation_ids: list[int]) -> str:
    return hashlib.sha256(",".join(str(i) for i in invitation_ids).encode()).hexdigest()


def draw_winners(eligible: list[int], seed: str, prizes: int) -> list[int]:
    """The reproducible draw: the same list and seed always give the same winners."""
    return random.Random(seed).sample(eligible, min(prizes, len(eligible)))


async def do_draw_prizes(
    researcher: Member,
    study_id: int,
    prizes: int,
    claim_days: int,
    redraw_of: int | None = None,
    forfeit: list[int] | None = None,
) -> PrizeDraw:
    """Draw winners among completers (or, for a redraw, among those not drawn before).

    ``forfeit``: the rewards a redraw replaces, forfeited in the same transaction
    as the new draw, so a refused redraw leaves them as they were.
    """
    study = await access_study(researcher, study_id)
    if prizes < 1 or not 1 <= claim_days <= MAX_DAYS:
        raise UserError(
            Code.STUDY_INVALID, field="prizes", reason=f"at least one prize, 1 to {MAX_DAYS} days"
        )
    completers = sorted(
        await ids(
            Invitation.filter(
                study_id=study.id, status=InvitationStatus.COMPLETED, member_id__isnull=False
            )
        )
    )
    if redraw_of is not None:
        drawn = {i for d in await PrizeDraw.filter(study_id=study.id) for i in d.winners}
        completers = [i for i in completers if i not in drawn]
    if not completers:
        raise UserError(Code.NO_ELIGIBLE)
    seed = secrets.token_hex(16)
    winners = draw_winners(completers, seed, prizes)
    now = clock.now()
    async with in_transaction("community"):
        if forfeit:
            taken = await Reward.filter(id__in=forfeit, forfeited_at__isnull=True).update(
                forfeited_at=now
            )
            if taken != len(forfeit):
                raise UserError(Code.NO_ELIGIBLE)  # a concurrent redraw took them
        draw = await PrizeDraw.create(
            study=study,
            redraw_of_id=redraw_of,
            prizes=prizes,
            eligible=completers,
            eligible_hash=eligible_hash(completers),
            seed=seed,
            winners=winners,
            claim_days=claim_days,
            drawn_at=now,
            drawn_by_id=researcher.id,
        )
        owners = dict(await Invitation.filter(id__in=winners).values_list("id", "member_id"))
        for invitation_id in winners:
            reward = await Reward.create(
                draw=draw,
                member_id=owners[invitation_id],
                invitation_id=invitation_id,
                won_at=now,
                claim_by=now + timedelta(days=claim_days),
            )
            await notify(
                owners[invitation_id], "REWARD_WON", {"studyId": study.id, "rewardId": reward.id}
            )
        await audit.record(
            researcher,
            "study.draw",
            study=study.id,
            draw=draw.id,
            prizes=prizes,
            eligible=len(completers),
            eligible_hash=draw.eligible_hash,
            seed=seed,
        )
    member_ids = [int(owners[i]) for i in winners]
    await _wake(member_ids)
    await outreach.email_members(
        member_ids, "reward_won", lambda lang: _study_mail(study, lang), bulk=False
    )
    return draw


async def do_redraw_unclaimed(researcher: Member, draw_id: int, claim_days: int) -> PrizeDraw:
    """Forfeit prizes not claimed in time and draw as many new winners."""
    _require_researcher(researcher)
    draw = await PrizeDraw.get_or_none(id=draw_id)
    if draw is None:
        raise UserError(Code.NOT_FOUND, field="drawId")
    expired = await ids(
        Reward.filter(
            draw_id=draw.id,
            claimed_at__isnull=True,
            forfeited_at__isnull=True,
            claim_by__lte=clock.now(),
        )
    )
    if not expired:
        raise UserError(Code.NO_ELIGIBLE)
    return await do_draw_prizes(
        researcher,
        draw.study_id,  # type: ignore[attr-defined]
        len(expired),
        claim_days,
        redraw_of=draw.id,
        forfeit=expired,
    )


async def verify_draw(researcher: Member, draw_id: int) -> bool:
    """Re-run a draw from its frozen list and seed: True when it gives the same winners."""
    _require_researcher(researcher)
    draw = await PrizeDraw.get_or_none(id=draw_id)
    if draw is None:
        raise UserError(Code.NOT_FOUND, field="drawId")
    return eligible_hash(draw.eligible) == draw.eligible_hash and draw_winners(
        draw.eligible, draw.seed, draw.prizes
    ) == list(draw.winners)


async def do_claim_reward(member: Member, reward_id: int) -> Reward:
    reward = await Reward.get_or_none(id=reward_id, member_id=member.id)
    if reward is None:
        raise UserError(Code.NOT_FOUND, field="rewardId")
    if reward.claimed_at is not None:
        return reward
    if reward.forfeited_at is not None or reward.claim_by <= clock.now():
        raise UserError(Code.CLAIM_EXPIRED)
    await Reward.filter(id=reward.id, claimed_at__isnull=True).update(claimed_at=clock.now())
    await reward.refresh_from_db()
    return reward


async def forget_member(member_id: int) -> None:
    """The membership ended: cut the links from the member to their invitations and
    rewards (inside the caller's transaction). Answers stay, unlinkable."""
    await Invitation.filter(member_id=member_id).update(member_id=None)
    await Reward.filter(member_id=member_id).update(member_id=None)
