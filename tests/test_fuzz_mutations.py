"""Property-based fuzzing of every mutation of the schema, over HTTP, as real clients send.

The mutations and their argument types come from ``schema.graphql`` (which
``test_schema_sdl`` keeps equal to the code, and ``test_the_fuzzed_mutations_are_the_served
_ones`` checks against the running server's introspection), so a new mutation is fuzzed
without anyone listing it here. For each mutation a hypothesis strategy is built from the
argument types: input objects recursively (required fields always, optional ones
sometimes), enums, Int (huge and negative too), Boolean, ID (global ids of objects that
exist, enumerated ids of every type, garbage base64, text), String (tricky unicode: NUL,
control characters, lone surrogates, bidi overrides, RTL, emoji, ~20k characters,
SQL/HTML/template payloads), Date and DateTime (valid and invalid), lists of 0-5 items,
and now and then a value of the wrong type. Values go in variables, never literals.

Each mutation runs in its own test (a fresh world: an admin and a member, an area, a
thread with posts, a draft study and a launched one the member completed, a group, an
attribute, a word, an acknowledged warning) as three roles: anonymous, a member and an
admin. The properties, for every request:

- the HTTP status is 200 or a 4xx, and the body is a JSON object with data or errors;
  a body over MAX_BODY_BYTES (long strings add up) is answered 413 BODY_TOO_LARGE, and
  only such a body;
- the body holds no Python traceback, no error is the masked "Unexpected error." or an
  INTERNAL code, and the server logs no unexpected error;
- a request with a forbidden character in a variable is refused by the text guard:
  errors[0].extensions.code INVALID_TEXT, no data (200 with application/json, 400 with
  application/graphql-response+json);
- when the mutation answers a typed error (a union member with ``code``) or a GraphQL
  error, no row of either register was added, removed or changed, except the few
  changes that are the point of a refusal (``allowed_on_refusal``);
- after all of a mutation's requests, no text stored in either register holds a
  forbidden character.

Inputs that hit a known app bug are left out (``KNOWN_BUGS``); each such bug has its own
strict xfail test with a minimal reproduction at the end of this file.

Hypothesis runs in a worker thread (``asyncio.to_thread``) while the server keeps
serving on the test's event loop; each example's request and database checks are
submitted to that loop. ``derandomize=True`` makes CI runs repeatable; set
``FUZZ_SEED=<int>`` to explore other inputs and ``FUZZ_SHRINK=1`` to minimise a
failure (shrinking replays requests against a server whose state has moved on, so it
is off by default), ``FUZZ_EXAMPLES=<n>`` to run more examples per role, and
``FUZZ_STATS=1`` (with ``-s``) to print what each mutation answered, and
``FUZZ_KNOWN_BUGS=1`` to fuzz the inputs of ``KNOWN_BUGS`` too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    Undefined,
    ast_from_value,
    build_schema,
    get_named_type,
    is_leaf_type,
    parse,
    print_ast,
    validate,
)
from graphql.language import Lexer, Source, TokenKind
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from strawberry.relay import GlobalID
from tortoise.connection import get_connection

from models.community import Member, MemberStatus, Session
from models.contacts import OutboxMessage
from resolvers import clock
from resolvers.sessions import access_session, start_session
from tests import dbtools
from tests.conftest import Server
from tests.helpers import PASSWORD, Account, current_rules_id, member, staff
from tests.test_checks import ADD_WORD
from tests.test_discussions import create_area, posted, start_thread
from tests.test_sanctions import ACKNOWLEDGE, MODERATE_MEMBER, acted
from tests.test_segments import CREATE_GROUP, SAVE_SEGMENT, call, define
from tests.test_studies_smoke import (
    CREATE_STUDY,
    QUESTIONS,
    SAVE_ANSWERS,
    SET_QUESTIONS,
    SUBMIT,
    launched_survey,
    ok,
    study_input,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.graphql"
SCHEMA = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
assert SCHEMA.mutation_type is not None
MUTATIONS: list[str] = sorted(SCHEMA.mutation_type.fields)

ANONYMOUS, MEMBER, ADMIN = "anonymous", "member", "admin"
ROLES = (ANONYMOUS, MEMBER, ADMIN)  # the admin last: its actions may end the others' standing
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
EXAMPLES_PER_ROLE = {ANONYMOUS: 4, MEMBER: 8, ADMIN: 8}
FUZZ_SEED = os.environ.get("FUZZ_SEED")
SHRINK = os.environ.get("FUZZ_SHRINK") == "1"
STATS = os.environ.get("FUZZ_STATS") == "1"
SKIP_KNOWN_BUGS = os.environ.get("FUZZ_KNOWN_BUGS") != "1"
JSON_MEDIA = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"

# What the text guard refuses anywhere in a request's variables (issue 7).
FORBIDDEN_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "', '.py", line')
MASKED_MESSAGE = "Unexpected error."
INTERNAL_CODES = {"INTERNAL", "INTERNAL_ERROR", "INTERNAL_SERVER_ERROR"}

# Columns that change without the request being the cause:
# - session.last_seen_at: every authenticated request touches it (at most once a minute,
#   resolvers.sessions.access_session), whatever the request does;
# - outbox_message delivery columns: the mail worker delivers mail queued by earlier,
#   successful requests while later requests run (rows added or removed still count).
VOLATILE_COLUMNS = {
    "session": {"last_seen_at"},
    "outbox_message": {
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "sent_at",
    },
}

# Changes that are the point of a refusal (everything else refused must leave no trace):
# - login: a failed sign-in is counted per account and per client address
#   (login_throttle; resolvers.sessions._count_attempt), whatever the answer; so is a
#   reaction over REACTIONS_PER_MINUTE (the same table, resolvers.throttle);
# - a post refused by the check pipeline records the decision (check, action, kind,
#   never the text) for moderators (check_decision; resolvers.postchecks.record, README
#   "Automatic checks"): one row added, only on those refusal codes.
CHECK_REFUSALS = frozenset(
    {
        "PERSONAL_IDENTITY_CODE_IN_TEXT",
        "PHONE_NUMBER_IN_TEXT",
        "EMAIL_ADDRESS_IN_TEXT",
        "IBAN_IN_TEXT",
        "BANNED_WORDS",
        "REPEATED_POST",
        "TOO_MANY_POSTS",
    }
)

# Node types of the rows made by the world, for valid global ids.
TABLE_TYPES = {
    "member": "Member",
    "session": "Session",
    "rules_version": "RulesVersion",
    "notification": "Notification",
    "audit_entry": "AuditEntry",
    "area": "Area",
    "thread": "Thread",
    "post": "Post",
    "study": "Study",
    "question": "Question",
    "member_group": "MemberGroup",
    "segment": "Segment",
    "research_attribute": "ResearchAttribute",
    "moderation_word": "ModerationWord",
    "member_sanction": "Sanction",
    "prize_draw": "PrizeDraw",
    "reward": "MyReward",
}
OBJECT_TYPE_NAMES = sorted(
    {n for n, t in SCHEMA.type_map.items() if isinstance(t, GraphQLObjectType)}
    - {"Query", "Mutation", "Subscription"}
    | set(TABLE_TYPES.values())
)


# ---------------------------------------------------------------------------
# Documents built from the schema
# ---------------------------------------------------------------------------


def is_connection(type_: GraphQLNamedType) -> bool:
    return type_.name.endswith("Connection")


def selection(type_: Any, depth: int) -> str:
    """A selection set for an output type: leaves, and objects `depth` levels deep
    (connections and fields with required arguments left out)."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if isinstance(named, GraphQLUnionType):
        parts = [f"... on {m.name} {{ {object_fields(m, depth)} }}" for m in named.types]
        return "{ __typename " + " ".join(parts) + " }"
    assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType), named
    return "{ " + object_fields(named, depth) + " }"


def object_fields(type_: GraphQLObjectType | GraphQLInterfaceType, depth: int) -> str:
    out = ["__typename"]
    for name, fld in type_.fields.items():
        if any(
            isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined
            for a in fld.args.values()
        ):
            continue
        named = get_named_type(fld.type)
        if is_leaf_type(named):
            out.append(name)
        elif depth > 0 and not is_connection(named):
            out.append(f"{name} {selection(fld.type, depth - 1)}")
    return " ".join(out)


def token_count(document: str) -> int:
    lexer = Lexer(Source(document))
    n = 0
    while lexer.advance().kind != TokenKind.EOF:
        n += 1
    return n


def document_for(name: str) -> str:
    """``mutation Fuzz($a: T ...) { name(a: $a ...) <selection> }``, every argument passed
    through a variable of the argument's own type and default; as deep a selection as the
    token limit (2,000) comfortably allows."""
    assert SCHEMA.mutation_type is not None
    fld = SCHEMA.mutation_type.fields[name]
    declared: list[str] = []
    for arg_name, arg in fld.args.items():
        default = ""
        if arg.default_value is not Undefined:
            node = ast_from_value(arg.default_value, arg.type)
            default = f" = {print_ast(node)}" if node is not None else ""
        declared.append(f"${arg_name}: {arg.type}{default}")
    passed = ", ".join(f"{a}: ${a}" for a in fld.args)
    head = f"mutation Fuzz({', '.join(declared)})" if declared else "mutation Fuzz"
    call_ = f"{name}({passed})" if passed else name
    for depth in (3, 2, 1, 0):
        document = f"{head} {{ {call_} {selection(fld.type, depth)} }}"
        if token_count(document) <= 1200:
            break
    errors = validate(SCHEMA, parse(document))
    assert not errors, (document, errors)
    return document


# ---------------------------------------------------------------------------
# Strategies built from the argument types
# ---------------------------------------------------------------------------

FORBIDDEN = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f", "\x80",
    "\x85", "\x9f", "\ud800", "\udbff", "\udc00", "\udfff", "\u202a", "\u202b", "\u202c",
    "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\ufffe", "\uffff",
]  # fmt: skip
TRICKY = [
    "\t", "\n", "\r", "\r\n", " ", "   ", "\u00a0", "\u200b", "\u200d", "\u200e", "\u200f",
    "\u2028", "\u2029", "\u061c", "\ufeff", "e\u0301", "\u0130", "ß", "ﬃ", "Å", "Å",
    "שלום עולם", "مرحبا بالعالم", "Ωμέγα", "Привет", "漢字かな", "한국어", "ไทย", "हिन्दी",
    "😀", "👩‍👩‍👧‍👦", "🇫🇮", "👍🏽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010fffd", "\U0001f9ea",
    "Ｆｕｌｌｗｉｄｔｈ", "Kahvikuppi", "Nimimerkki", "pаypal",
]  # fmt: skip
PAYLOADS = [
    "' OR '1'='1", "'; DROP TABLE member; --", '" OR 1=1 --', "1; SELECT pg_sleep(5)",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</textarea><b>x",
    "{{7*7}}", "${7*7}", "{% raw %}", "%s%s%s%n", "%(x)s", "{0}{__class__}", "\\", '"',
    "\\u0000", "../../etc/passwd", "null", "None", "NaN", "undefined", "true", "-1", "0",
    "1e309", "[]", "{}", "**bold** _it_ https://example.com/x?a=1&b=<2>",
    "javascript:alert(1)", "http://", "mailto:a@b.fi", "a@b.fi", "member1@example.com",
    "+358 40 1234567", "040-1234567", "FI21 1234 5600 0007 85", "131052-308T",
    "admin", "moderator", "root", "__typename", "VGhyZWFkOjE=",
]  # fmt: skip
REALISTIC = [
    "", "a", "Hei kaikki!", "Moi", "Yleinen keskustelu", "Asiointi verkossa",
    "Miten asioit?", "correct horse battery staple", "hunter2", "kahvikuppi",
    "Maija Meikäläinen", "Pseudonym", "fi", "sv", "en", "any", "web", "office",
    "Myy tavaraa", "Tämä on asiallinen syy tietojen lukemiseen", "SELLING", "k-0123456789",
]  # fmt: skip
BAD_DATES = [
    "", "2001-02-29", "2000-13-01", "2000-00-10", "0000-01-01", "10000-01-01", "-0001-01-01",
    "2000-1-1", "20000101", "yesterday", "2000-01-01T00:00:00Z", "01.02.2000", "1e9",
]  # fmt: skip
# Valid ISO times at the ends of Python's range: in UTC, or a day away, they overflow.
EXTREME_DATETIMES = [
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59",
]  # fmt: skip
BAD_DATETIMES = [
    "", "now", "2024-13-45T25:61:61", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00+25:00", "2024-01-01 00:00", "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59+14:00", "99999-01-01T00:00:00Z", "1970-01-01T00:00:00.000000001Z",
    "2024-01-01T00:00:00ZZ", "T", "1700000000", "2024-W01-1", "+002024-01-01T00:00:00Z",
]  # fmt: skip
WRONG_TYPES: list[Any] = [0, -1, 1.5, 2**70, True, "x", "", [], {}, ["a"], {"a": 1}, [None]]
BIG_INTS = [2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63), 10**30]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each chosen with its relative weight."""
    pool = [s for w, s in choices for _ in range(w)]
    return st.sampled_from(pool).flatmap(lambda s: s)


# One request in ten is "dirty": its strings may hold characters the text guard refuses;
# another one in ten is "ill-typed": its leaves may be values of the wrong type. The other
# requests are well-formed, so they get past the guard and the coercion to the resolvers.
# (st.shared draws the mode once per request, for every string and leaf in it.)
DIRTY = st.shared(st.integers(0, 9), key="dirty").map(lambda n: n == 7)
ILL_TYPED = st.shared(st.integers(0, 9), key="ill-typed").map(lambda n: n == 7)


@dataclass
class Pools:
    """Values of the world that valid inputs are made of."""

    ids: list[str]
    strings: list[str]
    now: datetime

    def ids_for(self, name: str, mutation: str) -> list[str]:
        """The pool ids that fit an argument or field named `name` of `mutation`: the
        type name ends with the name's stem (`threadId`, `memberIds` -> Thread, Member;
        `groupId` -> MemberGroup), or, for a plain `id`, with a word of the mutation's
        name (`launchStudy` -> Study, `claimReward` -> MyReward); else all of them."""
        stem = re.sub(r"Ids?$", "", name)
        stems = [stem] if stem and stem != name else re.findall("[A-Z][a-z]+", mutation)
        fitting = [
            i
            for i in self.ids
            if any(GlobalID.from_id(i).type_name.lower().endswith(s.lower()) for s in stems)
        ]
        return fitting or self.ids


def clean_text(pools: Pools) -> st.SearchStrategy[str]:
    """Text a client may send: any script, emoji, payloads, very long; nothing the guard
    refuses."""
    clean_chars = st.characters(exclude_categories=("Cc", "Cs", "Cf", "Cn", "Co"))
    fragment = st.one_of(
        st.sampled_from(TRICKY + PAYLOADS + REALISTIC + pools.strings),
        st.text(clean_chars, max_size=8),
    )
    composed = st.lists(fragment, min_size=1, max_size=6).map("".join)
    long = st.tuples(
        st.sampled_from(["a", "ä", "😀", "sana ", "x\n", "👩‍👩‍👧", "ab\u200d", "<b>", "ش"]),
        st.one_of(st.sampled_from([300, 5001, 20_000]), st.integers(1, 20_000)),
    ).map(lambda p: (p[0] * p[1])[:20_000])
    return weighted(
        (4, st.sampled_from(REALISTIC + pools.strings)),
        (3, composed),
        (3, st.text(clean_chars, max_size=40)),
        (1, long),
        (2, st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True)),
        (1, st.emails()),
    )


def dirty_text(clean: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text with characters the guard refuses (and clean text, as a dirty request's other
    strings would be)."""
    spliced = st.tuples(clean, st.sampled_from(FORBIDDEN), clean).map(lambda p: p[0] + p[1] + p[2])
    anything = st.text(st.characters(exclude_categories=()), min_size=1, max_size=30)
    return weighted((2, spliced), (1, anything), (2, clean))


# Fields whose name says what they hold also get values of that form (on top of any text).
NAME_HINTS: list[tuple[str, st.SearchStrategy[str]]] = [
    (r"(?i)email", st.one_of(st.emails(), st.sampled_from(["a@b.fi", "A@B.FI", "@", "a@"]))),
    (r"(?i)password", st.sampled_from([PASSWORD, "another long passphrase 42", "short"])),
    (r"(?i)key$", st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True)),
    (r"(?i)^(language|lang)$", st.sampled_from(["fi", "sv", "en", "any", "FI", "xx"])),
    (r"(?i)(reason|note)$", st.sampled_from(["Asiallinen syy tietojen lukemiseen", "x"])),
]


def ill_or(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good`; in an ill-typed request, now and then `bad` (a value the type refuses)."""
    mixed = weighted((3, good), (1, bad))
    return ILL_TYPED.flatmap(lambda ill: mixed if ill else good)


def id_strategy(ids: list[str], text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Ids of existing objects; well-formed ids of any type and row (mostly missing);
    in ill-typed requests also garbage base64 and text."""
    enumerated = st.builds(
        lambda t, n: base64.b64encode(f"{t}:{n}".encode()).decode(),
        st.sampled_from(OBJECT_TYPE_NAMES),
        st.sampled_from(["0", "1", "2", "3", "4", "5", "8", "-1", "x", "", "1.5", "9" * 30]),
    )
    garbage = st.one_of(
        st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(["", "=", "====", "VGhyZWFk", "Ojox", "VGhyZWFkOjE", "%%%", "Thread:1"]),
        text,
    )
    return ill_or(weighted((4, st.sampled_from(ids)), (1, enumerated)), garbage)


def datetime_strategy(pools: Pools) -> st.SearchStrategy[str]:
    """Around now (in several zones), any time in years 1-9999, the ends of the range,
    naive times; in ill-typed requests also invalid ISO strings."""
    zones = st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    )
    near = st.builds(
        lambda days, minutes, tz: (
            (pools.now + timedelta(days=days, minutes=minutes)).astimezone(tz).isoformat()
        ),
        st.integers(-400, 400),
        st.integers(-1440, 1440),
        zones,
    )
    anywhen = st.builds(
        lambda d, tz: d.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        zones,
    )
    naive = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
        datetime.isoformat
    )
    return ill_or(
        weighted((4, near), (1, anywhen), (2, naive), (2, st.sampled_from(EXTREME_DATETIMES))),
        st.sampled_from(BAD_DATETIMES),
    )


def date_strategy() -> st.SearchStrategy[str]:
    valid = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)).map(date.isoformat)
    extreme = st.sampled_from(["0001-01-01", "9999-12-31", "2000-02-29", "1900-02-28"])
    return ill_or(weighted((4, valid), (1, extreme)), st.sampled_from(BAD_DATES))


def int_strategy() -> st.SearchStrategy[int]:
    """Small, large and negative 32-bit integers (GraphQL's Int; a million days is past
    year 9999); in ill-typed requests also integers beyond 32 bits."""
    valid = weighted(
        (3, st.integers(-3, 12)),
        (2, st.integers(0, 1000)),
        (1, st.integers(-(2**31), 2**31 - 1)),
        (2, st.sampled_from([2**31 - 1, -(2**31), 10**6, 3 * 10**6, 999_999_999])),
    )
    return ill_or(valid, st.sampled_from(BIG_INTS))


def json_strategy() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )


class StrategyBuilder:
    """Strategies for GraphQL input types, from the schema."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools
        self.mutation = ""
        clean = clean_text(pools)
        dirty = dirty_text(clean)
        self.text = DIRTY.flatmap(lambda d: dirty if d else clean)
        self.scalars: dict[str, st.SearchStrategy[Any]] = {
            "String": self.text,
            "Int": int_strategy(),
            "Float": st.floats(allow_nan=False, allow_infinity=False),
            "Boolean": st.booleans(),
            "Date": date_strategy(),
            "DateTime": datetime_strategy(pools),
            "JSON": json_strategy(),
        }

    def scalar(
        self, type_: GraphQLScalarType, name: str, mutation: str | None = None
    ) -> st.SearchStrategy[Any]:
        if type_.name == "ID":
            ids = self.pools.ids_for(name, mutation or self.mutation)
            return id_strategy(ids, self.text)
        strategy = self.scalars.get(type_.name, self.text)  # new custom scalars: text
        if type_.name == "String":
            for pattern, hint in NAME_HINTS:
                if re.search(pattern, name):
                    return st.one_of(hint, strategy)
        return strategy

    def wrong_or(self, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """`strategy`; in an ill-typed request, now and then a value of another type."""
        wrong = weighted((3, strategy), (1, st.sampled_from(WRONG_TYPES)))
        return ILL_TYPED.flatmap(lambda ill: wrong if ill else strategy)

    def of_type(self, type_: GraphQLInputType, name: str, depth: int) -> st.SearchStrategy[Any]:
        if isinstance(type_, GraphQLNonNull):
            return self.of_type(type_.of_type, name, depth)
        if isinstance(type_, GraphQLList):
            items = self.nullable(type_.of_type, name, depth + 1)
            return self.wrong_or(st.lists(items, max_size=5))
        if isinstance(type_, GraphQLEnumType):
            values = list(type_.values)
            odd = st.sampled_from([*values, "NOT_A_VALUE", values[0].lower(), ""])
            return self.wrong_or(
                ILL_TYPED.flatmap(lambda ill: odd if ill else st.sampled_from(values))
            )
        if isinstance(type_, GraphQLInputObjectType):
            return self.wrong_or(self.fields(type_.fields, depth + 1))
        assert isinstance(type_, GraphQLScalarType), type_
        return self.wrong_or(self.scalar(type_, name))

    def nullable(self, type_: GraphQLInputType, name: str, depth: int) -> st.SearchStrategy[Any]:
        """A value for a position of `type_`; null sometimes when the type allows it."""
        inner = self.of_type(type_, name, depth)
        if isinstance(type_, GraphQLNonNull):
            return inner
        return weighted((9, inner), (1, st.none()))

    def fields(
        self, entries: dict[str, GraphQLArgument] | dict[str, GraphQLInputField], depth: int
    ) -> st.SearchStrategy[dict[str, Any]]:
        """Required entries always; the others (nullable or with a default) sometimes.
        From depth 3 on, optional entries of input object types stop the recursion."""
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for name, entry in entries.items():
            if isinstance(entry.type, GraphQLNonNull) and entry.default_value is Undefined:
                required[name] = self.nullable(entry.type, name, depth)
                continue
            if depth >= 3 and isinstance(get_named_type(entry.type), GraphQLInputObjectType):
                continue
            optional[name] = self.nullable(entry.type, name, depth)
        return st.fixed_dictionaries(required, optional=optional)

    def arguments(self, mutation: str) -> st.SearchStrategy[dict[str, Any]]:
        assert SCHEMA.mutation_type is not None
        self.mutation = mutation  # for the ids that fit a plain `id` argument
        return self.fields(SCHEMA.mutation_type.fields[mutation].args, 0)


# ---------------------------------------------------------------------------
# The registers: a digest of every table (one round trip per register)
# ---------------------------------------------------------------------------

_COLUMNS: dict[tuple[str, str], dict[str, list[str]]] = {}


async def table_columns(name: str) -> dict[str, list[str]]:
    key = (name, dbtools.dialect(name))
    if key not in _COLUMNS:
        conn = get_connection(name)
        columns: dict[str, list[str]] = {}
        for table in await dbtools.list_tables(name):
            if table in dbtools.SKIP:
                continue
            if key[1] == "sqlite":
                rows = await conn.execute_query_dict(f'PRAGMA table_info("{table}")')
                names = [r["name"] for r in rows]
            else:
                rows = await conn.execute_query_dict(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    [table],
                )
                names = [r["column_name"] for r in rows]
            volatile = VOLATILE_COLUMNS.get(table, set())
            columns[table] = [c for c in names if c not in volatile]
        _COLUMNS[key] = columns
    return _COLUMNS[key]


Snapshot = dict[str, tuple[int, str]]  # "register.table" -> (rows, digest of their values)


async def snapshot() -> Snapshot:
    """Row count and content digest of every table of both registers (volatile columns
    left out); dbtools.all_rows would take one round trip per table and request."""
    out: Snapshot = {}
    for name in ("community", "contacts"):
        columns = await table_columns(name)
        parts = []
        for table, cols in columns.items():
            quoted = [f'"{c}"' for c in cols]
            if dbtools.dialect(name) == "sqlite":
                row = " || ',' || ".join(f"quote({c})" for c in quoted)
                parts.append(
                    f"SELECT '{table}' AS t, count(*) AS n, group_concat(r, char(30)) AS d "
                    f'FROM (SELECT {row} AS r FROM "{table}" ORDER BY r)'
                )
            else:
                parts.append(
                    f"SELECT '{table}' AS t, count(*) AS n, "
                    f"md5(coalesce(string_agg(r, E'\\x1e' ORDER BY r), '')) AS d "
                    f'FROM (SELECT ROW({", ".join(quoted)})::text AS r FROM "{table}") s'
                )
        rows = await get_connection(name).execute_query_dict(" UNION ALL ".join(parts))
        for r in rows:
            out[f"{name}.{r['t']}"] = (int(r["n"]), str(r["d"] or ""))
    return out


def changed_tables(before: Snapshot, after: Snapshot) -> dict[str, tuple[int, int]]:
    """Tables whose rows differ: {table: (rows before, rows after)}."""
    return {
        t: (before.get(t, (0, ""))[0], after.get(t, (0, ""))[0])
        for t in sorted(set(before) | set(after))
        if before.get(t) != after.get(t)
    }


async def stored_forbidden_text() -> list[str]:
    """Text values in either register holding a character the text guard refuses."""
    found = []
    for name in ("community", "contacts"):
        for table, rows in (await dbtools.all_rows(name)).items():
            for row in rows:
                for column, value in row.items():
                    if isinstance(value, str) and FORBIDDEN_RE.search(value):
                        found.append(f"{name}.{table}.{column}={shorten(value)}")
    return found


# ---------------------------------------------------------------------------
# The world and the roles
# ---------------------------------------------------------------------------

ADD_MEMBERS_DOC = """
mutation($group: ID!, $ids: [ID!]) { addGroupMembers(groupId: $group, memberIds: $ids) {
  __typename ... on Error { code message } } }
"""


@dataclass
class World:
    server: Server
    accounts: dict[str, Account]
    tokens: dict[str, str | None]
    pools: Pools


async def build_world(server: Server) -> World:
    """An admin and a member, and one of most kinds of object, made through the API (the
    member is also the target of staff actions: the admin's examples run last)."""
    admin = await staff(server, "admin")
    plain = await member(server)
    area = await create_area(server, admin, members_start=True)
    thread, first = await start_thread(server, plain, area)
    await posted(server, admin, thread, "Vastaus", parent_id=first)  # a REPLY notice
    study = await ok(server, CREATE_STUDY, {"input": study_input()}, admin.token, "createStudy")
    await ok(
        server,
        SET_QUESTIONS,
        {"id": study["study"]["id"], "questions": QUESTIONS},
        admin.token,
        "setStudyQuestions",
    )
    survey = await launched_survey(server, admin)  # the member is invited, and completes it
    questions = survey["questions"]
    answers = [
        {"questionId": questions[0]["id"], "choice": "web"},
        {"questionId": questions[1]["id"], "scale": 9},
    ]
    await ok(server, SAVE_ANSWERS, {"study": survey["id"], "answers": answers}, plain.token,
             "saveAnswers")  # fmt: skip
    await ok(server, SUBMIT, {"study": survey["id"]}, plain.token, "submitAnswers")
    group = await call(server, CREATE_GROUP, {"name": "Ryhmä"}, admin.token, "createMemberGroup")
    added = await call(
        server,
        ADD_MEMBERS_DOC,
        {"group": group["group"]["id"], "ids": [plain.gid]},
        admin.token,
        "addGroupMembers",
    )
    assert added["__typename"] == "GroupSuccess", added
    await define(server, admin, "asuinalue", "SINGLE_CHOICE", "etela", "pohjoinen")
    word = await call(
        server,
        ADD_WORD,
        {"input": {"kind": "SUSPECT", "phrase": "epäilyttävä"}},
        admin.token,
        "addModerationWord",
    )
    assert word["__typename"] == "ModerationWordSuccess", word
    warned = await acted(server, admin, plain.gid, "WARN", "SELLING", "Myynti")
    seen = await server.gql(ACKNOWLEDGE, {"id": warned["sanction"]["id"]}, token=plain.token)
    assert seen["data"]["acknowledgeWarning"]["__typename"] == "AcknowledgeWarningSuccess", seen
    ids = [await current_rules_id(server)]
    for name in ("community", "contacts"):
        tables = set(await dbtools.list_tables(name))
        for table, type_name in TABLE_TYPES.items():
            if table in tables:
                rows = await get_connection(name).execute_query_dict(f'SELECT id FROM "{table}"')
                ids += [str(GlobalID(type_name, str(r["id"]))) for r in rows]
    strings = [
        PASSWORD,
        plain.login_name,
        admin.login_name,
        plain.display_name,
        str(plain.email),
        "epäilyttävä",
        "asuinalue",
        "etela",
    ]
    return World(
        server=server,
        accounts={MEMBER: plain, ADMIN: admin},
        tokens={ANONYMOUS: None, MEMBER: plain.token, ADMIN: admin.token},
        pools=Pools(ids=sorted(set(ids)), strings=strings, now=clock.now()),
    )


async def restore_role(world: World, role: str) -> bool:
    """Give `role` a live session again if the last request ended it (logout, a revoked
    session, a lock, a ban, resignation...). True when anything was written."""
    token = world.tokens[role]
    if token is None or await access_session(token) is not None:
        return False
    account = world.accounts[role]
    row = await Member.get_or_none(id=account.member_id)
    if row is not None and row.status == MemberStatus.ACTIVE and row.locked_at is None:
        world.tokens[role] = (await start_session(row)).token
        return True
    fresh = await (staff(world.server, "admin") if role == ADMIN else member(world.server))
    world.accounts[role] = fresh
    world.tokens[role] = fresh.token
    return True


# ---------------------------------------------------------------------------
# Known app bugs: inputs the fuzz test leaves to their own strict xfail test
# ---------------------------------------------------------------------------


def long_attribute_key(variables: dict[str, Any]) -> bool:
    values = variables.get("values")
    return isinstance(values, list) and any(
        isinstance(v, dict) and isinstance(v.get("key"), str) and len(v["key"]) > 40 for v in values
    )


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def awkward_time(variables: dict[str, Any]) -> bool:
    """A DateTime value that is naive (no offset), or that leaves Python's range in UTC."""
    for text in strings_in(variables):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        if "T" not in text:
            continue  # a date: not a DateTime argument
        if moment.tzinfo is None:
            return True
        try:
            moment.astimezone(UTC)
        except OverflowError:
            return True
    return False


def huge_day_count(variables: dict[str, Any]) -> bool:
    """A count of days (an argument or field named ...days/...Days) that takes a date
    beyond year 1 or 9999."""

    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            return any(
                (k.lower().endswith("days") and isinstance(v, int) and abs(v) > 700_000) or walk(v)
                for k, v in value.items()
            )
        return isinstance(value, list) and any(walk(v) for v in value)

    return walk(variables)


# mutation -> (does this input hit the bug, the xfail test that pins it). Remove an entry
# when its bug is fixed (its strict xfail test then fails as XPASS, as a reminder).
KNOWN_BUGS: dict[str, tuple[Callable[[dict[str, Any]], bool], str]] = {
    # Empty: the seven bugs this fuzzer found are fixed, and their tests below pin them.
}


def known_bug(mutation: str, variables: dict[str, Any]) -> bool:
    if not SKIP_KNOWN_BUGS:
        return False
    entry = KNOWN_BUGS.get(mutation)
    return entry is not None and entry[0](variables)


# ---------------------------------------------------------------------------
# One request and its properties
# ---------------------------------------------------------------------------


def shorten(value: Any, limit: int = 120) -> Any:
    """`value` with long strings cut, for readable failure messages."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}...(+{len(value) - limit} chars)"
    if isinstance(value, dict):
        return {k: shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v, limit) for v in value]
    return value


def has_forbidden(value: Any) -> bool:
    if isinstance(value, str):
        return FORBIDDEN_RE.search(value) is not None
    if isinstance(value, dict):
        return any(has_forbidden(k) or has_forbidden(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_forbidden(v) for v in value)
    return False


def encode(payload: dict[str, Any], escape: bool) -> bytes:
    """JSON as clients send it: raw UTF-8, or \\u-escaped (JSON.stringify escapes a lone
    surrogate, which has no UTF-8 form)."""
    if not escape:
        try:
            return json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass
    return json.dumps(payload, ensure_ascii=True).encode("ascii")


@dataclass
class Outcome:
    status: int
    text: str
    body: Any
    changed: dict[str, tuple[int, int]]
    logged: list[str]
    sent_bytes: int


class ErrorLog(logging.Handler):
    """Collects ERROR records of the app's and uvicorn's loggers (unexpected exceptions,
    500s) while a test runs."""

    LOGGERS = ("community", "uvicorn.error", "strawberry")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(f"{record.name}: {record.getMessage()}")

    def take(self) -> list[str]:
        with self.guard:
            out, self.records = self.records, []
        return out

    @contextmanager
    def attached(self) -> Iterator[ErrorLog]:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        try:
            yield self
        finally:
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self)


class Runner:
    """Sends one mutation's examples for one role and checks them (on the test's loop)."""

    def __init__(self, world: World, mutation: str, log: ErrorLog) -> None:
        self.world = world
        self.mutation = mutation
        self.document = document_for(mutation)
        self.log = log
        self.last: Snapshot | None = None
        self.requests = 0
        self.kinds: Counter[str] = Counter()  # answers by kind, for FUZZ_STATS=1

    async def send(
        self, role: str, variables: dict[str, Any], accept: str, escape: bool
    ) -> Outcome:
        if await restore_role(self.world, role) or self.last is None:
            self.last = await snapshot()
        before = self.last
        headers = {"Content-Type": "application/json", "Accept": accept}
        token = self.world.tokens[role]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        payload = {"query": self.document, "variables": variables, "operationName": "Fuzz"}
        self.log.take()
        content = encode(payload, escape)
        response = await self.world.server.http.post("/graphql", content=content, headers=headers)
        self.requests += 1
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        after = await snapshot()
        self.last = after
        return Outcome(
            status=response.status_code,
            text=response.text,
            body=body,
            changed=changed_tables(before, after),
            logged=self.log.take(),
            sent_bytes=len(content),
        )

    def problems(self, outcome: Outcome, variables: dict[str, Any], accept: str) -> list[str]:
        """Every property the answer breaks (empty: all hold)."""
        out: list[str] = []
        status, body = outcome.status, outcome.body
        if not (status == 200 or 400 <= status < 500):
            out.append(f"HTTP {status}")
        if not isinstance(body, dict) or not ({"data", "errors"} & set(body)):
            out.append("the body is not a JSON object with data or errors")
            return out
        too_large = outcome.sent_bytes > self.world.server.settings.max_body_bytes
        if too_large or status == 413:
            # The body cap comes before anything else, and only over the cap.
            codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
            if not (too_large and status == 413 and codes == ["BODY_TOO_LARGE"]):
                out.append(f"{outcome.sent_bytes} bytes sent: HTTP {status}, codes {codes}")
            if outcome.changed:
                out.append(f"too large but changed {outcome.changed}")
            return out
        if any(mark in outcome.text for mark in TRACEBACK_MARKS):
            out.append("the body holds a Python traceback")
        if outcome.logged:
            out.append(f"the server logged errors: {outcome.logged}")
        errors = body.get("errors") or []
        for error in errors:
            code = (error.get("extensions") or {}).get("code")
            if error.get("message") == MASKED_MESSAGE or code in INTERNAL_CODES:
                out.append(f"an unexpected error: {error}")
        data = body.get("data")
        result = data.get(self.mutation) if isinstance(data, dict) else None
        typed = result.get("code") if isinstance(result, dict) else None
        if has_forbidden(variables):
            first = (errors[0].get("extensions") or {}).get("code") if errors else None
            expected_status = 400 if accept == GRAPHQL_RESPONSE else 200
            if first != "INVALID_TEXT" or data is not None or status != expected_status:
                out.append(
                    f"forbidden text was not refused with INVALID_TEXT, no data and HTTP "
                    f"{expected_status} (got HTTP {status}, code {first}, data {data is not None})"
                )
        refused = (
            typed is not None
            or result is None
            or any(len(e.get("path") or []) <= 1 for e in errors)
        )
        first_code = (errors[0].get("extensions") or {}).get("code") if errors else None
        self.kinds[
            f"code {typed}"
            if typed
            else f"error {first_code}"
            if errors and result is None
            else f"data {result.get('__typename') if isinstance(result, dict) else result}"
        ] += 1
        if refused:
            leftover = {
                t: counts
                for t, counts in outcome.changed.items()
                if not allowed_on_refusal(self.mutation, typed, t, counts)
            }
            if leftover:
                out.append(f"refused (code {typed}, errors {len(errors)}) but changed {leftover}")
        return out


def allowed_on_refusal(
    mutation: str, code: str | None, table: str, counts: tuple[int, int]
) -> bool:
    """Whether a refused `mutation` (typed error `code`, if any) may change `table` so:
    the changes that are the point of a refusal (see CHECK_REFUSALS)."""
    if table == "community.login_throttle":
        return mutation == "login" or (mutation == "react" and code == "TOO_MANY_REACTIONS")
    if table == "community.check_decision":
        return code in CHECK_REFUSALS and counts[1] == counts[0] + 1
    return False


def example_settings(role: str) -> settings:
    return settings(
        max_examples=EXAMPLES or EXAMPLES_PER_ROLE[role],
        deadline=None,
        derandomize=FUZZ_SEED is None,
        database=None,
        phases=(Phase.generate, Phase.shrink) if SHRINK else (Phase.generate,),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def role_property(
    runner: Runner,
    role: str,
    strategy: st.SearchStrategy[dict[str, Any]],
    on_loop: Callable[[Coroutine[Any, Any, Outcome]], Outcome],
) -> Callable[[], None]:
    """The hypothesis test of `runner`'s mutation as `role` (to run in a worker thread)."""

    @example_settings(role)
    @given(
        variables=strategy,
        accept=st.sampled_from([JSON_MEDIA, GRAPHQL_RESPONSE]),
        escape=st.booleans(),
    )
    def prop(variables: dict[str, Any], accept: str, escape: bool) -> None:
        assume(not known_bug(runner.mutation, variables))
        outcome = on_loop(runner.send(role, variables, accept, escape))
        problems = runner.problems(outcome, variables, accept)
        assert not problems, failure_text(
            runner.mutation, role, variables, accept, outcome, problems
        )

    if FUZZ_SEED is not None:
        return seed(int(FUZZ_SEED))(prop)  # type: ignore[no-any-return]
    return prop  # type: ignore[no-any-return]


async def fuzz_mutation(server: Server, mutation: str) -> list[str]:
    """Run `mutation` with generated arguments as each role; the failures (empty: none)."""
    world = await build_world(server)
    strategy = StrategyBuilder(world.pools).arguments(mutation)
    loop = asyncio.get_running_loop()
    failures: list[str] = []

    def on_loop(coro: Coroutine[Any, Any, Outcome]) -> Outcome:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    with ErrorLog().attached() as log:
        runner = Runner(world, mutation, log)
        for role in ROLES:
            try:
                await asyncio.to_thread(role_property(runner, role, strategy, on_loop))
            except Exception as exc:  # collect every role's failure, then fail once
                failures.append("".join(traceback.format_exception_only(exc)))
        leftovers = await stored_forbidden_text()
        if leftovers:
            failures.append(f"{mutation}: stored text with forbidden characters: {leftovers}")
    assert runner.requests >= len(ROLES), runner.requests
    if STATS:
        print(f"\n{mutation}: {runner.requests} requests: {dict(runner.kinds.most_common())}")
    return failures


def failure_text(
    mutation: str,
    role: str,
    variables: dict[str, Any],
    accept: str,
    outcome: Outcome,
    problems: list[str],
) -> str:
    return (
        f"{mutation} as {role} (Accept: {accept}): {'; '.join(problems)}\n"
        f"  variables: {shorten(variables)}\n"
        f"  HTTP {outcome.status}: {outcome.text[:1500]}"
    )


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------


INTROSPECT_MUTATIONS = "{ __schema { mutationType { fields { name } } } }"


async def test_the_fuzzed_mutations_are_the_served_ones(server: Server) -> None:
    """The mutations fuzzed (from schema.graphql) are exactly the running server's."""
    body = await server.gql(INTROSPECT_MUTATIONS)
    assert "errors" not in body, body
    served = sorted(f["name"] for f in body["data"]["__schema"]["mutationType"]["fields"])
    assert served == MUTATIONS
    assert len(MUTATIONS) > 50


# A failing example's repr may be large (20k-character strings): let hypothesis make it.
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_every_mutation_survives_generated_input(server: Server, mutation: str) -> None:
    """Generated arguments, as anonymous, a member and an admin: never a 5xx, a non-JSON
    body, a traceback or a masked error; forbidden text refused with INVALID_TEXT; a
    refusal leaves both registers as they were; no forbidden character is stored."""
    failures = await fuzz_mutation(server, mutation)
    assert not failures, "\n\n".join(failures)


async def test_the_snapshot_sees_every_change_but_the_volatile_columns(server: Server) -> None:
    """A changed value or a removed row in either register shows; a session's touch and
    the mail worker's delivery bookkeeping do not."""
    account = await member(server)
    start = await snapshot()
    assert {"community.member", "community.session", "contacts.outbox_message"} <= set(start)
    await Session.filter(member_id=account.member_id).update(last_seen_at=clock.now())
    await OutboxMessage.all().update(attempts=7, last_error="x", status="failed")
    assert changed_tables(start, await snapshot()) == {}
    await Member.filter(id=account.member_id).update(display_name="Toinen")
    members = start["community.member"][0]
    assert changed_tables(start, await snapshot()) == {"community.member": (members, members)}
    outbox = start["contacts.outbox_message"][0]
    assert outbox > 0
    await OutboxMessage.all().delete()
    assert changed_tables(start, await snapshot()) == {
        "community.member": (members, members),
        "contacts.outbox_message": (outbox, 0),
    }


def samples(strategy: st.SearchStrategy[Any], n: int = 200) -> list[Any]:
    """`n` values of `strategy`, the same on every run."""
    found: list[Any] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate,))  # fmt: skip
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


def test_strategies_reach_every_kind_of_input() -> None:
    """The generators make what the properties are about: forbidden and clean text,
    long text, ids of the right type and others, 32-bit and huge integers, invalid dates,
    optional fields given and left out."""
    thread, member_, study = (
        str(GlobalID("Thread", "1")),
        str(GlobalID("Member", "1")),
        str(GlobalID("Study", "1")),
    )
    pools = Pools(ids=[thread, member_, study], strings=["x"], now=datetime.now(UTC))
    assert pools.ids_for("threadId", "addPost") == [thread]
    assert pools.ids_for("memberIds", "addGroupMembers") == [member_]
    assert pools.ids_for("id", "launchStudy") == [study]
    assert pools.ids_for("id", "acknowledgeWarning") == pools.ids
    builder = StrategyBuilder(pools)
    id_type = SCHEMA.type_map["ID"]
    assert isinstance(id_type, GraphQLScalarType)

    texts = samples(builder.text, 150)
    numbers = samples(builder.scalars["Int"], 300)
    ids = samples(builder.scalar(id_type, "threadId", "addPost"), 100)
    dates = samples(builder.scalars["Date"], 100)
    studies = [v["input"] for v in samples(builder.arguments("createStudy"), 50)]
    studies = [v for v in studies if isinstance(v, dict)]
    seen = {
        "forbidden": any(has_forbidden(t) for t in texts),
        "clean": any(t and not has_forbidden(t) for t in texts),
        "long": any(len(t) > 5000 for t in texts),
        "32-bit": any(2**20 < abs(n) < 2**31 for n in numbers),
        "huge": any(n >= 2**31 for n in numbers),
        "negative": any(n < 0 for n in numbers),
        "the thread": thread in ids,
        "other ids": any(i != thread for i in ids),
        "bad date": any(d in BAD_DATES for d in dates),
        "good date": any(d not in BAD_DATES for d in dates),
        "optional left out": any("sampleSize" not in v for v in studies),
        "optional given": any("sampleSize" in v for v in studies),
    }
    assert seen == dict.fromkeys(seen, True)
    assert sum(map(has_forbidden, texts)) < len(texts) / 4  # most requests get past the guard


def test_documents_cover_every_argument_through_variables() -> None:
    """Each mutation's document declares one variable per argument and passes nothing
    as a literal, and stays well under the token limit."""
    assert SCHEMA.mutation_type is not None
    for name in MUTATIONS:
        document = document_for(name)
        for arg in SCHEMA.mutation_type.fields[name].args:
            assert f"{arg}: ${arg}" in document, (name, arg)
        assert '"' not in document, document
        assert token_count(document) <= 1200, name


# ---------------------------------------------------------------------------
# Known app bugs found by the fuzzer, each with a minimal reproduction
# ---------------------------------------------------------------------------

SET_MY_ATTRIBUTES = """
mutation($values: [AttributeValueInput!]!) { setMyAttributes(values: $values) {
  __typename ... on Error { code message } } }
"""


async def test_set_my_attributes_with_a_long_key(server: Server) -> None:
    account = await member(server)
    body = await server.gql(SET_MY_ATTRIBUTES, {"values": [{"key": "k" * 41, "values": []}]},
                            token=account.token)  # fmt: skip
    assert "errors" not in body, body
    assert body["data"]["setMyAttributes"]["code"] == "NOT_FOUND", body


@pytest.mark.parametrize("until", ["2030-01-01T00:00:00", "9999-12-31T23:59:59-14:00"])
async def test_suspension_until_a_naive_or_out_of_range_time(server: Server, until: str) -> None:
    moderator = await staff(server, "moderator")
    target = await member(server)
    data = {"memberId": target.gid, "action": "SUSPEND", "category": "SELLING", "until": until}
    body = await server.gql(MODERATE_MEMBER, {"input": data}, token=moderator.token)
    # Refused as a request error before anything runs (schema/scalars.py).
    assert body.get("data") is None, body
    assert "DateTime" in body["errors"][0]["message"], body
    assert "Unexpected error" not in str(body)


@pytest.mark.parametrize(
    ("opens", "closes"),
    [
        ("2030-01-01T00:00:00+00:00", "2031-01-01T00:00:00"),
        ("2030-01-01T00:00:00+00:00", "9999-12-31T23:59:59-14:00"),
        ("0001-01-01T00:00:00+14:00", "2031-01-01T00:00:00+00:00"),
    ],
)
async def test_study_times_naive_or_out_of_range(server: Server, opens: str, closes: str) -> None:
    researcher = await staff(server, "researcher")
    variables = {"input": study_input(opensAt=opens, closesAt=closes)}
    body = await server.gql(CREATE_STUDY, variables, token=researcher.token)
    assert body.get("data") is None, body
    assert "DateTime" in body["errors"][0]["message"], body
    assert "Unexpected error" not in str(body)


async def test_segment_of_members_active_within_a_million_days(server: Server) -> None:
    researcher = await staff(server, "researcher")
    rule = {"participation": {"op": "ACTIVE_WITHIN_DAYS", "days": 1_000_000}}
    body = await server.gql(SAVE_SEGMENT, {"name": "Aktiiviset", "rule": rule},
                            token=researcher.token)  # fmt: skip
    assert "errors" not in body, body
    assert body["data"]["saveSegment"]["code"] == "SEGMENT_INVALID", body


DRAW_PRIZES = """
mutation($study: ID!, $days: Int!) { drawPrizes(studyId: $study, prizes: 1, claimDays: $days) {
  __typename ... on Error { code message } } }
"""


async def test_prizes_claimable_for_a_million_days(server: Server) -> None:
    researcher = await staff(server, "researcher")
    respondent = await member(server)
    survey = await launched_survey(server, researcher)
    questions = survey["questions"]
    answers = [
        {"questionId": questions[0]["id"], "choice": "web"},
        {"questionId": questions[1]["id"], "scale": 9},
    ]
    await ok(server, SAVE_ANSWERS, {"study": survey["id"], "answers": answers},
             respondent.token, "saveAnswers")  # fmt: skip
    await ok(server, SUBMIT, {"study": survey["id"]}, respondent.token, "submitAnswers")
    body = await server.gql(DRAW_PRIZES, {"study": survey["id"], "days": 3_000_000},
                            token=researcher.token)  # fmt: skip
    assert "errors" not in body, body
    assert body["data"]["drawPrizes"]["code"] == "STUDY_INVALID", body


async def test_study_with_a_fatigue_period_of_a_million_days(server: Server) -> None:
    researcher = await staff(server, "researcher")
    await member(server)  # someone to invite
    variables = {"input": study_input(fatigueDays=1_000_000)}
    body = await server.gql(CREATE_STUDY, variables, token=researcher.token)
    assert "errors" not in body, body
    created = body["data"]["createStudy"]
    # Refused when the study is saved: it never reaches a launch or the research job.
    assert created["__typename"] == "InputError", created
    assert created["code"] == "STUDY_INVALID", created


async def test_study_with_reminders_after_a_million_days(server: Server) -> None:

    researcher = await staff(server, "researcher")
    await member(server)  # someone to invite
    variables = {"input": study_input(reminderDays=1_000_000, maxReminders=1)}
    body = await server.gql(CREATE_STUDY, variables, token=researcher.token)
    assert "errors" not in body, body
    created = body["data"]["createStudy"]
    # Refused when the study is saved: it never reaches a launch or the research job.
    assert created["__typename"] == "InputError", created
    assert created["code"] == "STUDY_INVALID", created
