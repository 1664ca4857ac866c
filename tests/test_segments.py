"""Research targeting over the API, with the stored rows checked.

Attributes (admins define them; members set, replace and remove their own values), every
segment operator and nested AND/OR trees (each as a preview count, under 5 withheld, and
as the exact Invitation rows of a launch targeting the saved segment), invalid rules,
static groups, overlapping targets, the reproducible random sample, the fatigue rules,
and who may do all this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models.community import GroupMembership, Member, MemberGroup
from models.research import AttributeValue, Invitation, ResearchAttribute, Segment, Study
from resolvers import clock
from resolvers.segments import ids as column
from tests.conftest import Server
from tests.helpers import (
    Account,
    assert_unauthenticated,
    member,
    sign_in,
    staff,
)
from tests.test_moderation import create_area, db_id, gid, members, start_thread
from tests.test_studies_smoke import (
    CREATE_STUDY,
    LAUNCH,
    QUESTIONS,
    SAVE_ANSWERS,
    SET_QUESTIONS,
    SUBMIT,
    ok,
    study_input,
)

# ---------------------------------------------------------------- documents

RESULT_TAIL = "... on Error { code message } ... on InputError { field }"

DEFINE = f"""
mutation($input: DefineAttributeInput!) {{ defineResearchAttribute(input: $input) {{
  __typename ... on AttributeSuccess {{ attribute {{
    id key kind label minValue maxValue options {{ value label }} myValues }} }}
  {RESULT_TAIL} }} }}
"""

SET_MINE = f"""
mutation($values: [AttributeValueInput!]!) {{ setMyAttributes(values: $values) {{
  __typename ... on SettingSuccess {{ on }} {RESULT_TAIL} }} }}
"""

ATTRIBUTES = "{ researchAttributes { id key kind myValues } }"

PREVIEW = "query($rule: SegmentRuleInput!) { previewSegment(rule: $rule) { count label } }"

SAVE_SEGMENT = f"""
mutation($name: String!, $rule: SegmentRuleInput!) {{ saveSegment(name: $name, rule: $rule) {{
  __typename ... on SegmentSuccess {{ segment {{ id name rule }} count {{ count label }} }}
  {RESULT_TAIL} }} }}
"""

SEGMENTS = "{ segments { id name rule } }"

GROUP_FIELDS = f"__typename ... on GroupSuccess {{ group {{ id name size }} added }} {RESULT_TAIL}"

CREATE_GROUP = f"""
mutation($name: String!) {{ createMemberGroup(name: $name) {{ {GROUP_FIELDS} }} }}
"""

ADD_MEMBERS = f"""
mutation($group: ID!, $ids: [ID!], $study: ID, $completedOnly: Boolean! = true) {{
  addGroupMembers(groupId: $group, memberIds: $ids, fromStudyId: $study,
                  completedOnly: $completedOnly) {{ {GROUP_FIELDS} }} }}
"""

# ---------------------------------------------------------------- helpers

Json = dict[str, Any]
Rule = Json  # a SegmentRuleInput


def option(value: str) -> dict[str, str]:
    return {"value": value, "labelFi": f"{value} fi", "labelSv": f"{value} sv", "labelEn": value}


def attribute_input(key: str, kind: str, options: tuple[str, ...] = (), **more: Any) -> Json:
    data = {"key": key, "kind": kind, "labelFi": key, "labelSv": key, "labelEn": key}
    return {**data, "options": [option(v) for v in options], **more}


async def define(
    server: Server, admin: Account, key: str, kind: str, *opts: str, **more: Any
) -> Any:
    """Define an attribute as `admin`; returns the attribute node."""
    variables = {"input": attribute_input(key, kind, opts, **more)}
    result = await ok(server, DEFINE, variables, admin.token, "defineResearchAttribute")
    return result["attribute"]


async def call(server: Server, doc: str, variables: Json, token: str, name: str) -> Any:
    """Run a mutation expected to answer (success or typed error); its result object."""
    body = await server.gql(doc, variables, token=token)
    assert "errors" not in body, body
    return body["data"][name]


async def error_code(server: Server, doc: str, variables: Json, token: str | None) -> str:
    """Run an operation expected to fail with a GraphQL error; its code."""
    body = await server.gql(doc, variables, token=token)
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def set_mine(server: Server, account: Account, **values: list[str]) -> Any:
    """Call setMyAttributes; returns the result object."""
    given = [{"key": k, "values": v} for k, v in values.items()]
    return await call(server, SET_MINE, {"values": given}, account.token, "setMyAttributes")


async def stored_values(member_id: int) -> dict[str, set[str]]:
    """A member's AttributeValue rows as {attribute key: values}, without the built-in
    birth period (derived at registration, pinned in test_birth_period_is_derived...)."""
    keys = dict(await ResearchAttribute.exclude(key="birth_period").values_list("id", "key"))
    out: dict[str, set[str]] = {}
    rows = await AttributeValue.filter(member_id=member_id).values_list(
        "attribute_id", "text", "number"
    )
    for attribute_id, text, number in rows:
        if attribute_id in keys:
            out.setdefault(keys[attribute_id], set()).add(text if text is not None else str(number))
    return out


def attr(attribute: str, op: str, values: list[str] | None = None, **bounds: int) -> Rule:
    """An attribute condition node (`bounds`: min, max)."""
    given = {"values": values} if values is not None else {}
    return {"attribute": {"attributeId": attribute, "op": op, **given, **bounds}}


def part(op: str, study: str | None = None, days: int | None = None) -> Rule:
    """A participation condition node."""
    given = {"studyId": study, "days": days}
    return {"participation": {"op": op, **{k: v for k, v in given.items() if v is not None}}}


def all_of(*rules: Rule) -> Rule:
    return {"and": list(rules)}


def any_of(*rules: Rule) -> Rule:
    return {"or": list(rules)}


def shown(n: int) -> Json:
    """A SegmentCount as researchers see a count of `n`."""
    return {"count": n, "label": str(n)} if n >= 5 else {"count": None, "label": "fewer than 5"}


async def preview(server: Server, researcher: Account, rule: Rule) -> Any:
    return await call(server, PREVIEW, {"rule": rule}, researcher.token, "previewSegment")


async def save_segment(server: Server, researcher: Account, name: str, rule: Rule) -> Any:
    variables = {"name": name, "rule": rule}
    return await ok(server, SAVE_SEGMENT, variables, researcher.token, "saveSegment")


async def draft(server: Server, researcher: Account, **target: Any) -> str:
    """A draft survey with the smoke test's questions and `target`; its id."""
    variables = {"input": study_input(**target)}
    created = await ok(server, CREATE_STUDY, variables, researcher.token, "createStudy")
    study_id: str = created["study"]["id"]
    questions = {"id": study_id, "questions": QUESTIONS}
    await ok(server, SET_QUESTIONS, questions, researcher.token, "setStudyQuestions")
    return study_id


async def launch(server: Server, researcher: Account, **target: Any) -> tuple[Json, set[int]]:
    """Create and launch a survey with `target`; returns (study, invited member ids from the
    Invitation rows), checking that no member got two invitations."""
    study_id = await draft(server, researcher, **target)
    launched = await ok(server, LAUNCH, {"id": study_id}, researcher.token, "launchStudy")
    invited = await column(Invitation.filter(study_id=db_id(study_id, "Study")), "member_id")
    assert len(invited) == len(set(invited)) == launched["invited"], (invited, launched)
    study: Json = launched["study"]
    return study, set(invited)


async def check_cases(
    server: Server, researcher: Account, cases: list[tuple[Rule, set[int]]], prefix: str
) -> None:
    """For each (rule, expected member ids): the preview count is shown as researchers may
    see it; saving stores the rule; a launch targeting only the saved segment invites
    exactly those members."""
    for n, (rule, expected) in enumerate(cases):
        count = await preview(server, researcher, rule)
        assert count == shown(len(expected)), (rule, count)
        saved = await save_segment(server, researcher, f"{prefix} {n}", rule)
        assert saved["count"] == count, (saved, count)
        row = await Segment.get(id=db_id(saved["segment"]["id"], "Segment"))
        assert row.name == f"{prefix} {n}" and row.rule == saved["segment"]["rule"], row.rule
        target = {"everyone": False, "segmentIds": [saved["segment"]["id"]]}
        _study, invited = await launch(server, researcher, **target)
        assert invited == expected, (rule, invited, expected)


async def create_group(server: Server, researcher: Account, name: str) -> str:
    result = await ok(server, CREATE_GROUP, {"name": name}, researcher.token, "createMemberGroup")
    assert result["group"]["size"] == 0, result
    group: str = result["group"]["id"]
    return group


async def add_members(server: Server, researcher: Account, group: str, **args: Any) -> Any:
    """Call addGroupMembers; returns the result object."""
    variables = {"group": group, **args}
    return await call(server, ADD_MEMBERS, variables, researcher.token, "addGroupMembers")


async def group_rows(group: str) -> set[int]:
    return set(
        await column(GroupMembership.filter(group_id=db_id(group, "MemberGroup")), "member_id")
    )


async def answer(server: Server, account: Account, study: Json, submit: bool) -> None:
    """Answer the smoke survey's required questions, and submit them if asked."""
    q_choice, q_nps, _text = (q["id"] for q in study["questions"])
    answers = [{"questionId": q_choice, "choice": "web"}, {"questionId": q_nps, "scale": 8}]
    variables = {"study": study["id"], "answers": answers}
    await ok(server, SAVE_ANSWERS, variables, account.token, "saveAnswers")
    if submit:
        await ok(server, SUBMIT, {"study": study["id"]}, account.token, "submitAnswers")


@dataclass
class Panel:
    admin: Account
    researcher: Account
    people: list[Account]
    attrs: dict[str, str]  # key -> attribute id

    def ids(self, *indices: int) -> set[int]:
        return {self.people[i].member_id for i in indices}

    def on(self, key: str, op: str, *values: str, **bounds: int) -> Rule:
        """A condition on attribute `key` (values given as arguments)."""
        return attr(self.attrs[key], op, list(values) if values else None, **bounds)


PROFILES: list[dict[str, list[str]]] = [
    {"region": ["north"], "life": ["student", "working"], "household": ["1"], "born": ["2000"]},
    {"region": ["south"], "life": ["parent", "working"], "household": ["4"], "born": ["1985"]},
    {"region": ["east"], "life": ["retired"], "household": ["2"], "born": ["1950"]},
    {"region": ["north"], "life": ["parent"], "household": ["5"]},
    {"household": ["3"], "born": ["1990"]},
    {"region": ["south"]},
]


async def define_standard(server: Server, admin: Account) -> dict[str, str]:
    """Region (single choice), life situation (multiple), household size 1-12, birth year."""
    nodes = [
        await define(server, admin, "region", "SINGLE_CHOICE", "north", "south", "east"),
        await define(
            server, admin, "life", "MULTIPLE_CHOICE", "student", "parent", "retired", "working"
        ),
        await define(server, admin, "household", "NUMBER", minValue=1, maxValue=12),
        await define(server, admin, "born", "YEAR"),
    ]
    return {n["key"]: n["id"] for n in nodes}


async def panel(server: Server) -> Panel:
    """Six members with the values in PROFILES, plus an admin and a researcher."""
    admin = await staff(server, "admin")
    researcher = await staff(server, "researcher")
    attrs = await define_standard(server, admin)
    people = await members(server, len(PROFILES))
    for person, profile in zip(people, PROFILES, strict=True):
        assert (await set_mine(server, person, **profile))["__typename"] == "SettingSuccess"
        assert await stored_values(person.member_id) == {k: set(v) for k, v in profile.items()}
    return Panel(admin, researcher, people, attrs)


# ---------------------------------------------------------------- attributes


async def test_admin_defines_attributes_of_each_kind_and_invalid_ones_store_nothing(
    server: Server,
) -> None:
    """SINGLE_CHOICE, MULTIPLE_CHOICE, NUMBER (with bounds) and YEAR are stored as given;
    bad keys, too few or duplicate options, options on a number and min > max give
    ATTRIBUTE_INVALID; a taken key NAME_TAKEN; other roles are refused; nothing is stored."""
    admin = await staff(server, "admin")
    attrs = await define_standard(server, admin)
    rows = {r.key: r for r in await ResearchAttribute.all()}
    assert set(rows) == set(attrs) == {"region", "life", "household", "born"}
    assert [o["value"] for o in rows["region"].options] == ["north", "south", "east"]
    assert rows["region"].options[0]["fi"] == "north fi"
    assert rows["life"].kind == "multiple_choice" and len(rows["life"].options) == 4
    assert (rows["household"].min_value, rows["household"].max_value) == (1, 12)
    assert rows["household"].options == [] and rows["born"].kind == "year"

    invalid = [
        (attribute_input("Bad Key", "SINGLE_CHOICE", ("a1", "b1")), "key"),
        (attribute_input("x", "NUMBER"), "key"),
        (attribute_input("one_option", "SINGLE_CHOICE", ("only",)), "options"),
        (attribute_input("no_options", "MULTIPLE_CHOICE"), "options"),
        (attribute_input("dupes", "MULTIPLE_CHOICE", ("same", "same", "other")), "options"),
        (attribute_input("bad_value", "SINGLE_CHOICE", ("ok_value", "Not OK")), "options"),
        (attribute_input("count", "NUMBER", ("one", "two")), "options"),
        (attribute_input("size", "NUMBER", minValue=5, maxValue=1), "maxValue"),
        (attribute_input("year_x", "YEAR", minValue=2000, maxValue=1990), "maxValue"),
    ]
    for data, field in invalid:
        result = await call(server, DEFINE, {"input": data}, admin.token, "defineResearchAttribute")
        assert result["__typename"] == "InputError", (data, result)
        assert (result["code"], result["field"]) == ("ATTRIBUTE_INVALID", field), (data, result)
    taken = {"input": attribute_input("region", "NUMBER")}
    assert (await call(server, DEFINE, taken, admin.token, "defineResearchAttribute"))[
        "code"
    ] == "NAME_TAKEN"

    fine = {"input": attribute_input("postcode_area", "SINGLE_CHOICE", ("a1", "b1"))}
    others = [await staff(server, "researcher"), await staff(server, "moderator")]
    for account in [*others, await member(server)]:
        assert await error_code(server, DEFINE, fine, account.token) == "FORBIDDEN"
    assert await error_code(server, DEFINE, fine, None) == "UNAUTHENTICATED"
    assert await ResearchAttribute.exclude(key="birth_period").count() == 4


async def test_members_set_replace_and_remove_only_their_own_values(server: Server) -> None:
    """Valid values are stored; a wrong option, two values for a single choice, an
    out-of-range number, a future year (and a batch holding any of them) give
    ANSWER_INVALID and change nothing; an empty list removes a value; each member sees
    only their own values; staff cannot set values."""
    admin = await staff(server, "admin")
    attrs = await define_standard(server, admin)
    anna, bo = await members(server, 2)
    year = clock.now().year
    mine = {"region": ["north"], "life": ["student", "working"], "household": ["3"]}
    assert (await set_mine(server, anna, **mine, born=["1990"]))["__typename"] == "SettingSuccess"
    assert (await set_mine(server, bo, region=["south"]))["__typename"] == "SettingSuccess"
    before = {k: set(v) for k, v in mine.items()} | {"born": {"1990"}}
    assert await stored_values(anna.member_id) == before
    assert await stored_values(bo.member_id) == {"region": {"south"}}

    invalid: list[dict[str, list[str]]] = [
        {"region": ["west"]},
        {"region": ["north", "south"]},
        {"life": ["student", "student"]},
        {"life": ["student", "pilot"]},
        {"household": ["13"]},
        {"household": ["0"]},
        {"household": ["many"]},
        {"household": ["2", "3"]},
        {"born": [str(year + 1)]},
        {"born": ["1899"]},
        {"region": ["south"], "household": ["99"]},  # one bad value spoils the batch
    ]
    for values in invalid:
        result = await set_mine(server, anna, **values)
        assert result["__typename"] == "InputError", (values, result)
        assert result["code"] == "ANSWER_INVALID", (values, result)
        assert result["field"] in values, (values, result)
        assert await stored_values(anna.member_id) == before, values

    # Each member sees their own values only.
    for account, expected in ((anna, before), (bo, {"region": {"south"}})):
        body = await server.gql(ATTRIBUTES, token=account.token)
        seen = {
            a["key"]: set(a["myValues"])
            for a in body["data"]["researchAttributes"]
            if a["key"] != "birth_period"
        }
        assert seen == {key: expected.get(key, set()) for key in attrs}, seen

    # Replace one value, remove another, set this year (allowed); the rest stay.
    changed = await set_mine(server, anna, life=["parent"], household=[], born=[str(year)])
    assert changed["__typename"] == "SettingSuccess", changed
    after = {"region": {"north"}, "life": {"parent"}, "born": {str(year)}}
    assert await stored_values(anna.member_id) == after
    assert await stored_values(bo.member_id) == {"region": {"south"}}

    researcher = await staff(server, "researcher")
    refused = await set_mine(server, researcher, region=["north"])
    assert refused["__typename"] == "NotAllowedError", refused
    assert await AttributeValue.filter(member_id=researcher.member_id).count() == 0
    body = await server.gql(ATTRIBUTES, token=researcher.token)
    assert all(a["myValues"] == [] for a in body["data"]["researchAttributes"]), body
    assert_unauthenticated(await server.gql(ATTRIBUTES))


# ---------------------------------------------------------------- segment operators


async def test_attribute_operators_preview_and_invite_exactly_the_matching_members(
    server: Server,
) -> None:
    """EQUALS, IN, NOT_IN (answered, none of the values in the list), BETWEEN on numbers and
    years, IS_SET and NOT_SET: the preview count (under 5 withheld) and the Invitation rows
    of a launch targeting the saved segment match the members with those values; staff are
    never selected."""
    p = await panel(server)
    a = p.attrs
    cases: list[tuple[Rule, set[int]]] = [
        (attr(a["region"], "EQUALS", ["north"]), p.ids(0, 3)),
        (attr(a["life"], "EQUALS", ["working"]), p.ids(0, 1)),
        (attr(a["household"], "EQUALS", ["5"]), p.ids(3)),
        (attr(a["region"], "IN", ["north", "east"]), p.ids(0, 2, 3)),
        (attr(a["life"], "IN", ["retired", "student"]), p.ids(0, 2)),
        (attr(a["household"], "IN", ["1", "5"]), p.ids(0, 3)),
        (attr(a["region"], "NOT_IN", ["north"]), p.ids(1, 2, 5)),
        (attr(a["life"], "NOT_IN", ["parent"]), p.ids(0, 2)),
        (attr(a["household"], "BETWEEN", min=2, max=4), p.ids(1, 2, 4)),
        (attr(a["born"], "BETWEEN", min=1980, max=1999), p.ids(1, 4)),
        (attr(a["region"], "IS_SET"), p.ids(0, 1, 2, 3, 5)),  # five: a real count
        (attr(a["born"], "NOT_SET"), p.ids(3, 5)),
        (attr(a["life"], "NOT_SET"), p.ids(4, 5)),
    ]
    await check_cases(server, p.researcher, cases, "Segment")

    # The stored form: database ids, the operator in lower case.
    region_id = db_id(a["region"], "ResearchAttribute")
    leaf = {"attribute_id": region_id, "op": "equals", "values": ["north"]}
    assert (await Segment.get(name="Segment 0")).rule == {
        "attribute": leaf | dict.fromkeys(("min", "max"))
    }
    listed = (await server.gql(SEGMENTS, token=p.researcher.token))["data"]["segments"]
    assert len(listed) == len(cases) == await Segment.all().count()


async def test_nested_and_or_trees_select_the_right_members(server: Server) -> None:
    """AND/OR trees nested several levels deep: preview counts (a real count from 5 up)
    and launched invitations both follow the set algebra."""
    p = await panel(server)
    on = p.on
    cases: list[tuple[Rule, set[int]]] = [
        (
            any_of(
                all_of(on("region", "EQUALS", "north"), on("life", "IN", "parent")),
                on("household", "BETWEEN", min=4, max=4),
            ),
            p.ids(1, 3),
        ),
        (
            all_of(
                on("region", "IS_SET"),
                any_of(on("life", "IN", "working"), on("born", "BETWEEN", min=1900, max=1960)),
            ),
            p.ids(0, 1, 2),
        ),
        (
            any_of(
                on("life", "NOT_SET"),
                on("region", "EQUALS", "east"),
                on("household", "EQUALS", "1"),
            ),
            p.ids(0, 2, 4, 5),
        ),
        (
            all_of(
                any_of(all_of(on("region", "IN", "north", "south"))),
                any_of(on("born", "NOT_SET"), on("household", "BETWEEN", min=1, max=1)),
            ),
            p.ids(0, 3, 5),
        ),
        (any_of(on("region", "IS_SET"), on("household", "IS_SET")), p.ids(0, 1, 2, 3, 4, 5)),
        (all_of(on("region", "IS_SET"), on("region", "NOT_SET")), set()),
    ]
    await check_cases(server, p.researcher, cases, "Tree")


async def test_participation_and_activity_operators(server: Server) -> None:
    """INVITED_TO, COMPLETED and NOT_COMPLETED (invited, not completed) a previous study,
    and ACTIVE_WITHIN_DAYS over members' last activity (answering, posting)."""
    admin = await staff(server, "admin")
    researcher = await staff(server, "researcher")
    people = await members(server, 6)
    ids = [p.member_id for p in people]
    group = await create_group(server, researcher, "Previous panel")
    added = await add_members(server, researcher, group, ids=[p.gid for p in people[:4]])
    assert added["added"] == 4, added
    previous, invited = await launch(server, researcher, everyone=False, groupIds=[group])
    assert invited == set(ids[:4])
    await answer(server, people[0], previous, submit=True)
    await answer(server, people[1], previous, submit=True)
    await answer(server, people[2], previous, submit=False)  # started, not submitted
    start = clock.now()
    touched = await column(Member.filter(last_active_at__isnull=False))
    assert set(touched) == set(ids[:3])

    now_cases: list[tuple[Rule, set[int]]] = [
        (part("INVITED_TO", previous["id"]), set(ids[:4])),
        (part("COMPLETED", previous["id"]), set(ids[:2])),
        (part("NOT_COMPLETED", previous["id"]), {ids[2], ids[3]}),
        (part("ACTIVE_WITHIN_DAYS", days=1), set(ids[:3])),
    ]
    await check_cases(server, researcher, now_cases, "Now")

    # Ten days on, the fifth member starts a discussion thread.
    clock.move(timedelta(days=10))
    area = await create_area(server, admin)
    await start_thread(server, people[4], area)
    last = await Member.get(id=ids[4])
    assert last.last_active_at is not None and last.last_active_at >= start + timedelta(days=10)
    later_cases: list[tuple[Rule, set[int]]] = [
        (part("ACTIVE_WITHIN_DAYS", days=3), {ids[4]}),
        (part("ACTIVE_WITHIN_DAYS", days=30), {*ids[:3], ids[4]}),
        (part("COMPLETED", previous["id"]), set(ids[:2])),  # still, after the study closed
    ]
    await check_cases(server, researcher, later_cases, "Later")


async def test_invalid_rules_are_refused_and_nothing_is_stored(server: Server) -> None:
    """Empty nodes, empty AND/OR lists, EQUALS with two values, BETWEEN without a bound,
    missing days or study, unknown or wrong-type ids and too deep trees are refused by
    both previewSegment and saveSegment; no Segment row is stored."""
    researcher = await staff(server, "researcher")
    a = await define_standard(server, await staff(server, "admin"))
    north = attr(a["region"], "EQUALS", ["north"])
    too_deep: dict[str, Any] = north
    for _ in range(8):
        too_deep = {"and": [too_deep]}
    invalid = [
        ({}, "SEGMENT_INVALID"),
        ({"and": []}, "SEGMENT_INVALID"),
        ({"or": []}, "SEGMENT_INVALID"),
        ({"and": [north, {"or": []}]}, "SEGMENT_INVALID"),
        (attr(a["region"], "EQUALS", ["north", "south"]), "SEGMENT_INVALID"),
        (attr(a["region"], "EQUALS"), "SEGMENT_INVALID"),
        (attr(a["region"], "IN", []), "SEGMENT_INVALID"),
        (attr(a["household"], "BETWEEN", min=1), "SEGMENT_INVALID"),
        (attr(a["household"], "BETWEEN", max=3), "SEGMENT_INVALID"),
        (attr(a["household"], "IN", ["three"]), "SEGMENT_INVALID"),
        (part("ACTIVE_WITHIN_DAYS"), "SEGMENT_INVALID"),
        (part("ACTIVE_WITHIN_DAYS", days=-1), "SEGMENT_INVALID"),
        (part("COMPLETED"), "SEGMENT_INVALID"),
        (too_deep, "SEGMENT_INVALID"),
        (attr(gid("ResearchAttribute", 999999), "IS_SET"), "NOT_FOUND"),
        (attr(gid("Segment", 1), "IS_SET"), "NOT_FOUND"),
        ({"or": [north, part("INVITED_TO", gid("Study", 999999))]}, "NOT_FOUND"),
    ]
    token = researcher.token
    for n, (rule, code) in enumerate(invalid):
        assert await error_code(server, PREVIEW, {"rule": rule}, token) == code, rule
        variables = {"name": f"Bad {n}", "rule": rule}
        result = await call(server, SAVE_SEGMENT, variables, token, "saveSegment")
        assert result["__typename"] in ("InputError", "NotAllowedError"), (rule, result)
        assert result["code"] == code, (rule, result)
    assert await Segment.all().count() == 0


async def test_a_rule_node_with_two_keys_is_refused(server: Server) -> None:
    """A node must hold exactly one of and / or / attribute / participation: one holding
    two is refused (SEGMENT_INVALID) rather than silently cut down to one of them."""
    researcher = await staff(server, "researcher")
    attrs = await define_standard(server, await staff(server, "admin"))
    north = attr(attrs["region"], "EQUALS", ["north"])
    south = attr(attrs["region"], "EQUALS", ["south"])
    two_keys = [
        {**north, **part("ACTIVE_WITHIN_DAYS", days=3)},
        {"and": [south], **north},
        {"or": [south], "and": [north]},
    ]
    for n, rule in enumerate(two_keys):
        variables = {"name": f"Two {n}", "rule": rule}
        result = await call(server, SAVE_SEGMENT, variables, researcher.token, "saveSegment")
        assert result["__typename"] == "InputError", (rule, result)
        assert result["code"] == "SEGMENT_INVALID", (rule, result)
        code = await error_code(server, PREVIEW, {"rule": rule}, researcher.token)
        assert code == "SEGMENT_INVALID", rule
    assert await Segment.all().count() == 0


# ---------------------------------------------------------------- groups and overlaps


async def test_groups_by_member_ids_and_from_a_previous_study(server: Server) -> None:
    """addGroupMembers adds members once each, by Member id or from a previous study (its
    completers, or everyone invited); staff, unknown ids, groups and studies are refused
    and nothing is added."""
    researcher = await staff(server, "researcher")
    admin = await staff(server, "admin")
    people = await members(server, 4)
    ids = [p.member_id for p in people]
    group = await create_group(server, researcher, "Panel A")
    dup = await server.gql(CREATE_GROUP, {"name": "Panel A"}, token=researcher.token)
    assert dup["data"]["createMemberGroup"]["code"] == "NAME_TAKEN", dup
    assert await MemberGroup.all().count() == 1

    first = await add_members(server, researcher, group, ids=[people[0].gid, people[1].gid])
    assert (first["added"], first["group"]["size"]) == (2, 2), first
    again = await add_members(server, researcher, group, ids=[people[1].gid, people[2].gid])
    assert (again["added"], again["group"]["size"]) == (1, 3), again
    twice = await add_members(server, researcher, group, ids=[people[2].gid, people[2].gid])
    assert (twice["added"], twice["group"]["size"]) == (0, 3), twice
    assert await group_rows(group) == set(ids[:3])

    refused: list[Json] = [
        {"ids": [people[3].gid, researcher.gid]},
        {"ids": [people[3].gid, admin.gid]},
        {"ids": [gid("Member", 999999)]},
        {"ids": [people[3].gid, gid("Segment", ids[3])]},
        {"study": gid("Study", 999999)},
    ]
    for args in refused:
        result = await add_members(server, researcher, group, **args)
        assert result["__typename"] in ("InputError", "NotAllowedError"), (args, result)
        assert result["code"] == "NOT_FOUND", (args, result)
    unknown = await add_members(server, researcher, gid("MemberGroup", 999999), ids=[people[3].gid])
    assert unknown["code"] == "NOT_FOUND", unknown
    assert await group_rows(group) == set(ids[:3])
    assert await GroupMembership.all().count() == 3

    # From a previous study: it invited the group (three members); one completed.
    study, invited = await launch(server, researcher, everyone=False, groupIds=[group])
    assert invited == set(ids[:3])
    await answer(server, people[0], study, submit=True)
    await answer(server, people[1], study, submit=False)
    completers = await create_group(server, researcher, "Completers")
    result = await add_members(server, researcher, completers, study=study["id"])
    assert result["added"] == 1 and await group_rows(completers) == {ids[0]}, result
    everyone = await create_group(server, researcher, "All invited")
    result = await add_members(server, researcher, everyone, study=study["id"], completedOnly=False)
    assert result["added"] == 3 and await group_rows(everyone) == set(ids[:3]), result
    # Both ways at once, with overlap: only the new ones are added.
    result = await add_members(
        server,
        researcher,
        completers,
        ids=[people[0].gid, people[3].gid],
        study=study["id"],
        completedOnly=False,
    )
    assert result["added"] == 3 and result["group"]["size"] == 4, result
    assert await group_rows(completers) == set(ids)


async def test_overlapping_groups_and_segment_invite_each_member_once(server: Server) -> None:
    """A study targeting two overlapping groups and an overlapping segment invites the
    union, each member with exactly one Invitation row."""
    p = await panel(server)
    first = await create_group(server, p.researcher, "First")
    second = await create_group(server, p.researcher, "Second")
    await add_members(server, p.researcher, first, ids=[m.gid for m in p.people[0:3]])
    await add_members(server, p.researcher, second, ids=[m.gid for m in p.people[1:4]])
    south = attr(p.attrs["region"], "EQUALS", ["south"])  # members 1 and 5
    segment = (await save_segment(server, p.researcher, "South", south))["segment"]["id"]
    target = {"groupIds": [first, second], "segmentIds": [segment]}
    study, invited = await launch(server, p.researcher, everyone=False, **target)
    assert invited == p.ids(0, 1, 2, 3, 5)
    study_id = db_id(study["id"], "Study")
    assert await Invitation.filter(study_id=study_id).count() == 5
    assert study["participation"]["invited"] == 5
    groups = sorted(db_id(g, "MemberGroup") for g in (first, second))
    assert (await Study.get(id=study_id)).target["groups"] == groups


# ---------------------------------------------------------------- sample and fatigue


async def test_random_sample_is_exact_recorded_and_reproducible(server: Server) -> None:
    """sampleSize N below the eligible count invites exactly N; the seed is stored on the
    study and exposed as sampleSeed, and re-running the documented draw over the sorted
    eligible ids gives the same set. A sample larger than the eligible invites everyone
    (seed still recorded); no sample, no seed."""
    p = await panel(server)
    everyone = sorted(p.ids(0, 1, 2, 3, 4, 5))

    study, invited = await launch(server, p.researcher, everyone=True, sampleSize=3)
    row = await Study.get(id=db_id(study["id"], "Study"))
    assert len(invited) == 3 and invited <= set(everyone)
    assert row.sample_seed and study["sampleSeed"] == row.sample_seed
    assert invited == set(random.Random(row.sample_seed).sample(everyone, 3))

    # Sampling within a segment draws from the segment's members, sorted.
    saved = await save_segment(
        server, p.researcher, "Set region", attr(p.attrs["region"], "IS_SET")
    )
    eligible = sorted(p.ids(0, 1, 2, 3, 5))
    study, invited = await launch(
        server, p.researcher, everyone=False, segmentIds=[saved["segment"]["id"]], sampleSize=2
    )
    seed = study["sampleSeed"]
    assert seed and (await Study.get(id=db_id(study["id"], "Study"))).sample_seed == seed
    assert len(invited) == 2 and invited == set(random.Random(seed).sample(eligible, 2))

    study, invited = await launch(server, p.researcher, everyone=True, sampleSize=10)
    assert invited == set(everyone) and study["sampleSeed"], study
    study, invited = await launch(server, p.researcher, everyone=True)
    assert invited == set(everyone) and study["sampleSeed"] is None, study
    assert (await Study.get(id=db_id(study["id"], "Study"))).sample_seed is None


async def test_fatigue_days_skip_recently_invited_members_until_the_window_passes(
    server: Server,
) -> None:
    """fatigueDays D skips members invited to any study in the last D days; once the clock
    has moved past D days they are invited again."""
    researcher = await staff(server, "researcher")
    people = await members(server, 4)
    ids = [p.member_id for p in people]
    group = await create_group(server, researcher, "Recent")
    await add_members(server, researcher, group, ids=[p.gid for p in people[:2]])
    _study, invited = await launch(server, researcher, everyone=False, groupIds=[group])
    assert invited == set(ids[:2])

    _study, invited = await launch(server, researcher, everyone=True, fatigueDays=7)
    assert invited == set(ids[2:])  # the first two were invited today
    clock.move(timedelta(days=6))
    study, invited = await launch(server, researcher, everyone=True, fatigueDays=7)
    assert invited == set() and study["participation"]["invited"] == 0
    _study, invited = await launch(server, researcher, everyone=True, fatigueDays=5)
    assert invited == set(ids)  # six days ago is outside five days
    clock.move(timedelta(days=2))
    _study, invited = await launch(server, researcher, everyone=True, fatigueDays=7)
    assert invited == set()  # invited two days ago
    clock.move(timedelta(days=6))
    _study, invited = await launch(server, researcher, everyone=True, fatigueDays=7)
    assert invited == set(ids)  # the last invitations are eight days old


async def test_max_per_month_caps_invitations_in_the_last_30_days(server: Server) -> None:
    """maxPerMonth M skips members who already have M invitations from the last 30 days;
    invitations older than 30 days no longer count."""
    researcher = await staff(server, "researcher")
    people = await members(server, 4)
    ids = [p.member_id for p in people]
    pair = await create_group(server, researcher, "Pair")
    single = await create_group(server, researcher, "Single")
    await add_members(server, researcher, pair, ids=[people[0].gid, people[1].gid])
    await add_members(server, researcher, single, ids=[people[0].gid])
    await launch(server, researcher, everyone=False, groupIds=[pair])
    await launch(server, researcher, everyone=False, groupIds=[single])
    # Invitations so far: m0 two, m1 one, m2 and m3 none.
    _study, invited = await launch(server, researcher, everyone=True, maxPerMonth=2)
    assert invited == set(ids[1:])
    # Now m0, m1 two each; m2, m3 one each.
    clock.move(timedelta(days=20))
    researcher.token = await sign_in(server, researcher.login_name)  # idle sessions end
    _study, invited = await launch(server, researcher, everyone=True, maxPerMonth=2)
    assert invited == set(ids[2:])
    # Eleven days later the first day's invitations are 31 days old: m2, m3 have one.
    clock.move(timedelta(days=11))
    _study, invited = await launch(server, researcher, everyone=True, maxPerMonth=1)
    assert invited == set(ids[:2])
    assert await Invitation.filter(member_id=ids[0]).count() == 3


# ---------------------------------------------------------------- permissions


async def test_members_and_moderators_cannot_segment_group_or_run_studies(server: Server) -> None:
    """previewSegment, saveSegment, segments, createMemberGroup, addGroupMembers, createStudy
    and launchStudy are FORBIDDEN to members and moderators (UNAUTHENTICATED when signed
    out); nothing is stored and the researcher's draft stays unlaunched."""
    admin = await staff(server, "admin")
    researcher = await staff(server, "researcher")
    attrs = await define_standard(server, admin)
    person = await member(server)
    await set_mine(server, person, region=["north"])
    rule = attr(attrs["region"], "EQUALS", ["north"])
    study_id = await draft(server, researcher)
    group = await create_group(server, researcher, "Kept")

    calls: list[tuple[str, Json]] = [
        (PREVIEW, {"rule": rule}),
        (SAVE_SEGMENT, {"name": "Nope", "rule": rule}),
        (SEGMENTS, {}),
        (CREATE_GROUP, {"name": "Nope"}),
        (ADD_MEMBERS, {"group": group, "ids": [person.gid]}),
        (CREATE_STUDY, {"input": study_input()}),
        (LAUNCH, {"id": study_id}),
    ]
    moderator = await staff(server, "moderator")
    for account in (person, moderator):
        for doc, variables in calls:
            assert await error_code(server, doc, variables, account.token) == "FORBIDDEN", doc
    for doc, variables in calls:
        assert await error_code(server, doc, variables, None) == "UNAUTHENTICATED", doc

    assert await Segment.all().count() == 0
    assert await MemberGroup.all().count() == 1 and await GroupMembership.all().count() == 0
    assert await Study.all().count() == 1 and await Invitation.all().count() == 0
    assert (await Study.get(id=db_id(study_id, "Study"))).launched_at is None
    # Admins, like researchers, may preview.
    assert await preview(server, admin, rule) == shown(1)
