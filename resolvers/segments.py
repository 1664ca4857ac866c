"""Research attributes, static groups and rule-based segments.

Admins define attributes; members fill them in voluntarily. A segment is a
tree of AND/OR conditions over attribute values and study participation,
evaluated to a set of member ids with one query per leaf. Counts shown to
researchers under :data:`MIN_COUNT` are given as "fewer than 5".
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.community import GroupMembership, Member, MemberGroup, MemberStatus, Role
from models.research import (
    AttributeKind,
    AttributeValue,
    Invitation,
    InvitationStatus,
    ResearchAttribute,
    Segment,
    Study,
)
from resolvers import audit, clock
from resolvers.errors import Code, UserError
from resolvers.formatting import clean_text

MIN_COUNT = 5  # k-anonymity: smaller counts are shown as "fewer than 5"
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
NUMBER_RE = re.compile(r"^-?[0-9]{1,9}$")  # ASCII digits only
RESEARCHERS = (Role.RESEARCHER, Role.ADMIN)
ATTRIBUTE_OPS = ("equals", "in", "not_in", "between", "is_set", "not_set")
PARTICIPATION_OPS = ("invited_to", "completed", "not_completed", "active_within_days")
MAX_DEPTH = 6
MAX_CONDITIONS = 50


async def ids(query: Any, field: str = "id") -> list[int]:
    """A column of integer ids (Tortoise types a flat values_list as tuples)."""
    values: list[Any] = await query.values_list(field, flat=True)
    return [int(v) for v in values]


def is_researcher(member: Member) -> bool:
    return member.role in RESEARCHERS


def shown_count(n: int) -> int | None:
    """A count as researchers may see it: None stands for "fewer than 5"."""
    return n if n >= MIN_COUNT else None


def _require(member: Member, roles: tuple[Role, ...]) -> None:
    if member.role not in roles:
        raise UserError(Code.NOT_FOUND)


# --- attributes ----------------------------------------------------------------------


async def do_define_attribute(
    admin: Member,
    key: str,
    kind: AttributeKind,
    labels: dict[str, str],
    options: list[dict[str, str]],
    min_value: int | None,
    max_value: int | None,
) -> ResearchAttribute:
    _require(admin, (Role.ADMIN,))
    if not KEY_RE.match(key):
        raise UserError(Code.ATTRIBUTE_INVALID, field="key")
    for lang in ("fi", "sv", "en"):
        labels[lang] = clean_text(labels.get(lang, ""), 200, field=f"label{lang.title()}")
    if kind in (AttributeKind.SINGLE_CHOICE, AttributeKind.MULTIPLE_CHOICE):
        values = [o.get("value", "") for o in options]
        if len(options) < 2 or len(set(values)) != len(values):
            raise UserError(Code.ATTRIBUTE_INVALID, field="options")
        for option in options:
            if not KEY_RE.match(option.get("value", "")):
                raise UserError(Code.ATTRIBUTE_INVALID, field="options")
            for lang in ("fi", "sv", "en"):
                option[lang] = clean_text(option.get(lang, ""), 200, field="options")
        if min_value is not None or max_value is not None:
            raise UserError(Code.ATTRIBUTE_INVALID, field="minValue")
    elif options:
        raise UserError(Code.ATTRIBUTE_INVALID, field="options")
    if min_value is not None and max_value is not None and min_value > max_value:
        raise UserError(Code.ATTRIBUTE_INVALID, field="maxValue")
    try:
        async with in_transaction("community"):
            attribute = await ResearchAttribute.create(
                key=key,
                kind=kind,
                label_fi=labels["fi"],
                label_sv=labels["sv"],
                label_en=labels["en"],
                options=options,
                min_value=min_value,
                max_value=max_value,
                created_by_id=admin.id,
            )
            await audit.record(admin, "attribute.define", attribute=key)
    except IntegrityError:
        raise UserError(Code.NAME_TAKEN, field="key") from None
    return attribute


def _check_value(attribute: ResearchAttribute, raw: list[str]) -> list[AttributeValue]:
    """Validate a member's value(s) for one attribute: rows to store (unsaved)."""
    field = attribute.key
    if attribute.kind in (AttributeKind.SINGLE_CHOICE, AttributeKind.MULTIPLE_CHOICE):
        allowed = {o["value"] for o in attribute.options}
        if any(v not in allowed for v in raw) or len(set(raw)) != len(raw):
            raise UserError(Code.ANSWER_INVALID, field=field)
        if attribute.kind == AttributeKind.SINGLE_CHOICE and len(raw) > 1:
            raise UserError(Code.ANSWER_INVALID, field=field)
        return [AttributeValue(attribute=attribute, text=v) for v in raw]
    if len(raw) > 1:
        raise UserError(Code.ANSWER_INVALID, field=field)
    rows = []
    for v in raw:
        if not NUMBER_RE.match(v):
            raise UserError(Code.ANSWER_INVALID, field=field)
        number = int(v)
        low = attribute.min_value
        high = attribute.max_value
        if attribute.kind == AttributeKind.YEAR:
            low = 1900 if low is None else low
            high = clock.now().year if high is None else high
        if (low is not None and number < low) or (high is not None and number > high):
            raise UserError(Code.ANSWER_INVALID, field=field)
        rows.append(AttributeValue(attribute=attribute, number=number))
    return rows


async def do_set_attributes(member: Member, pairs: list[tuple[str, list[str]]]) -> None:
    """Set (or clear, with an empty list) the member's own attribute values."""
    if member.role != Role.MEMBER:
        raise UserError(Code.NOT_FOUND)
    values = dict(pairs)
    if len(values) != len(pairs):
        raise UserError(Code.ANSWER_INVALID, field="values")  # a key given twice
    if BIRTH_PERIOD_KEY in values:
        raise UserError(Code.ANSWER_INVALID, field=BIRTH_PERIOD_KEY)  # derived, not editable
    for key in values:
        if not KEY_RE.match(key):
            raise UserError(Code.NOT_FOUND, field="values")  # no attribute has such a key
    attributes = {a.key: a for a in await ResearchAttribute.filter(key__in=list(values))}
    rows: list[AttributeValue] = []
    for key, raw in values.items():
        attribute = attributes.get(key)
        if attribute is None:
            raise UserError(Code.NOT_FOUND, field=key)
        rows.extend(_check_value(attribute, raw))
    async with in_transaction("community"):
        await AttributeValue.filter(
            member_id=member.id, attribute_id__in=[a.id for a in attributes.values()]
        ).delete()
        for row in rows:
            row.member = member
            await row.save()


async def member_attribute_values(member_id: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for attribute_id, text, number in await AttributeValue.filter(member_id=member_id).values_list(
        "attribute_id", "text", "number"
    ):
        out.setdefault(attribute_id, []).append(text if text is not None else str(number))
    return out


BIRTH_PERIOD_KEY = "birth_period"


async def record_birth_period(member: Member, birth_year: int) -> None:
    """The age band derived from the age check: the first year of the member's
    five-year birth period (1985 for 1985-1989), kept as a built-in attribute that
    segments and breakdowns can use and members cannot edit. Call inside the
    registration's community transaction."""
    attribute = await ResearchAttribute.get_or_none(key=BIRTH_PERIOD_KEY)
    if attribute is None:
        try:
            async with in_transaction("community"):  # a savepoint: a lost race is retried
                attribute = await ResearchAttribute.create(
                    key=BIRTH_PERIOD_KEY,
                    kind=AttributeKind.YEAR,
                    label_fi="Syntymävuosiväli (viisi vuotta)",
                    label_sv="Födelseårsintervall (fem år)",
                    label_en="Birth period (five years)",
                )
        except IntegrityError:
            attribute = await ResearchAttribute.get(key=BIRTH_PERIOD_KEY)
    await AttributeValue.create(member=member, attribute=attribute, number=birth_year // 5 * 5)


# --- groups --------------------------------------------------------------------------


async def do_create_group(researcher: Member, name: str) -> MemberGroup:
    _require(researcher, (*RESEARCHERS, Role.MODERATOR))
    name = clean_text(name, 100, field="name")
    try:
        async with in_transaction("community"):
            group = await MemberGroup.create(name=name, created_by_id=researcher.id)
            await audit.record(researcher, "group.create", group=group.id)
    except IntegrityError:
        raise UserError(Code.NAME_TAKEN, field="name") from None
    return group


async def do_add_group_members(
    researcher: Member,
    group_id: int,
    member_ids: list[int],
    from_study_id: int | None,
    completed_only: bool,
) -> int:
    """Add members by pseudonymous id, or a previous study's participants; returns how many
    were added (those already in the group are not added twice)."""
    _require(researcher, RESEARCHERS)
    group = await MemberGroup.get_or_none(id=group_id)
    if group is None:
        raise UserError(Code.NOT_FOUND, field="groupId")
    wanted = set(member_ids)
    if from_study_id is not None:
        if not await Study.exists(id=from_study_id):
            raise UserError(Code.NOT_FOUND, field="fromStudyId")
        query = Invitation.filter(study_id=from_study_id, member_id__isnull=False)
        if completed_only:
            query = query.filter(status=InvitationStatus.COMPLETED)
        wanted |= set(await ids(query, "member_id"))
    eligible = set(
        await Member.filter(
            id__in=list(wanted), role=Role.MEMBER, status=MemberStatus.ACTIVE
        ).values_list("id", flat=True)
    )
    if member_ids and not set(member_ids) <= eligible:
        raise UserError(Code.NOT_FOUND, field="memberIds")
    existing = set(
        await GroupMembership.filter(group_id=group.id).values_list("member_id", flat=True)
    )
    new = sorted(eligible - existing)
    async with in_transaction("community"):
        await GroupMembership.bulk_create(
            [GroupMembership(group_id=group.id, member_id=m) for m in new]
        )
        await audit.record(researcher, "group.add_members", group=group.id, added=len(new))
    return len(new)


# --- segments ------------------------------------------------------------------------


def check_rule(rule: dict[str, Any], depth: int = 0, counter: list[int] | None = None) -> None:
    """Validate a rule tree's shape (ids are checked when it is evaluated)."""
    counter = counter if counter is not None else [0]
    counter[0] += 1
    if depth > MAX_DEPTH or counter[0] > MAX_CONDITIONS:
        raise UserError(Code.SEGMENT_INVALID, field="rule")
    keys = [k for k in ("and", "or", "attribute", "participation") if rule.get(k) is not None]
    if len(keys) != 1:
        raise UserError(Code.SEGMENT_INVALID, field="rule")
    key = keys[0]
    if key in ("and", "or"):
        children = rule[key]
        if not isinstance(children, list) or not children:
            raise UserError(Code.SEGMENT_INVALID, field="rule")
        for child in children:
            check_rule(child, depth + 1, counter)
        return
    leaf = rule[key]
    ops = ATTRIBUTE_OPS if key == "attribute" else PARTICIPATION_OPS
    if leaf.get("op") not in ops:
        raise UserError(Code.SEGMENT_INVALID, field="rule")
    op = leaf["op"]
    if key == "attribute":
        if op in ("equals", "in", "not_in") and not leaf.get("values"):
            raise UserError(Code.SEGMENT_INVALID, field="rule")
        if op == "equals" and len(leaf["values"]) != 1:
            raise UserError(Code.SEGMENT_INVALID, field="rule")
        if op == "between" and (
            leaf.get("min") is None or leaf.get("max") is None or leaf["min"] > leaf["max"]
        ):
            raise UserError(Code.SEGMENT_INVALID, field="rule")
    elif op == "active_within_days":
        if not isinstance(leaf.get("days"), int) or not 0 <= leaf["days"] <= 36500:
            raise UserError(Code.SEGMENT_INVALID, field="rule")
    elif leaf.get("study_id") is None:
        raise UserError(Code.SEGMENT_INVALID, field="rule")


async def _universe() -> set[int]:
    return set(await ids(Member.filter(role=Role.MEMBER, status=MemberStatus.ACTIVE), "id"))


async def _attribute_leaf(leaf: dict[str, Any], universe: set[int]) -> set[int]:
    attribute = await ResearchAttribute.get_or_none(id=leaf.get("attribute_id"))
    if attribute is None:
        raise UserError(Code.NOT_FOUND, field="rule")
    values = AttributeValue.filter(attribute_id=attribute.id)
    op = leaf["op"]
    numeric = attribute.kind in (AttributeKind.NUMBER, AttributeKind.YEAR)

    def members(query: Any) -> Any:
        return query.values_list("member_id", flat=True)

    if op in ("equals", "in", "not_in"):
        wanted = [str(v) for v in leaf["values"]]
        if numeric:
            try:
                numbers = [int(v) for v in wanted]
            except ValueError:
                raise UserError(Code.SEGMENT_INVALID, field="rule") from None
            hit = set(await members(values.filter(number__in=numbers)))
        else:
            hit = set(await members(values.filter(text__in=wanted)))
        if op == "not_in":
            # Members who answered, and none of whose values is in the list.
            return (set(await members(values)) - hit) & universe
        return hit & universe
    if op == "between":
        if not numeric:
            raise UserError(Code.SEGMENT_INVALID, field="rule")  # choices have no order
        low, high = int(leaf["min"]), int(leaf["max"])
        return set(await members(values.filter(number__gte=low, number__lte=high))) & universe
    answered = set(await members(values)) & universe
    return answered if op == "is_set" else universe - answered


async def _participation_leaf(leaf: dict[str, Any], universe: set[int]) -> set[int]:
    op = leaf["op"]
    if op == "active_within_days":
        since = clock.now() - timedelta(days=int(leaf["days"]))
        return set(await ids(Member.filter(id__in=list(universe), last_active_at__gte=since), "id"))
    if not await Study.exists(id=leaf.get("study_id")):
        raise UserError(Code.NOT_FOUND, field="rule")
    invited = Invitation.filter(study_id=leaf["study_id"], member_id__isnull=False)
    if op == "completed":
        invited = invited.filter(status=InvitationStatus.COMPLETED)
    elif op == "not_completed":
        invited = invited.exclude(status=InvitationStatus.COMPLETED)
    return set(await ids(invited, "member_id")) & universe


async def evaluate(rule: dict[str, Any], universe: set[int] | None = None) -> set[int]:
    """The active members a rule selects."""
    universe = universe if universe is not None else await _universe()
    if rule.get("and") is not None:
        result = set(universe)
        for child in rule["and"]:
            result &= await evaluate(child, universe)
        return result
    if rule.get("or") is not None:
        result = set()
        for child in rule["or"]:
            result |= await evaluate(child, universe)
        return result
    if rule.get("attribute") is not None:
        return await _attribute_leaf(rule["attribute"], universe)
    return await _participation_leaf(rule["participation"], universe)


async def do_save_segment(researcher: Member, name: str, rule: dict[str, Any]) -> Segment:
    _require(researcher, RESEARCHERS)
    name = clean_text(name, 100, field="name")
    check_rule(rule)
    await evaluate(rule)  # unknown attributes or studies are refused now, not at launch
    try:
        async with in_transaction("community"):
            segment = await Segment.create(name=name, rule=rule, created_by_id=researcher.id)
            await audit.record(researcher, "segment.save", segment=segment.id)
    except IntegrityError:
        raise UserError(Code.NAME_TAKEN, field="name") from None
    return segment


async def do_preview(researcher: Member, rule: dict[str, Any]) -> int | None:
    """How many members a rule selects now (None: fewer than 5)."""
    _require(researcher, RESEARCHERS)
    check_rule(rule)
    return shown_count(len(await evaluate(rule)))
