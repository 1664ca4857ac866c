"""The automatic checks on new and edited posts, over HTTP and websockets.

Covers: personal data (R15: personal identity codes with a valid checksum, phone
numbers, email addresses, valid IBANs) refused in posts, thread titles and edits,
while near misses and ordinary numbers pass; refusal messages in the member's
language; banned words (matched case-folded, with look-alike digits, cut letter
runs, spaced letters and prefix entries; å, ä and ö kept) and the word-list
mutations with their permissions and audit; suspect words, links from new members
and pre-moderation (per member, per area, for new members) holding posts for
review, and held posts reaching other members live only once approved; repeated
texts; checks on edits; the post rate limit as a check. Every refusal stores
nothing and records a CheckDecision naming the check and the kind of finding only.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from stdnum.fi import hetu

from config import override_settings
from models.community import AuditEntry
from models.discussions import Area, Post, PostEdit, PostStatus, Thread, ThreadEvent
from models.moderation import CheckAction, CheckDecision, ModerationWord
from resolvers import clock
from tests.conftest import Server
from tests.helpers import Account, assert_no_permission, assert_unauthenticated, member, staff
from tests.test_discussions import AREA_THREADS, EDIT_POST
from tests.test_moderation import (
    ADD_POST,
    CREATE_AREA,
    POST_NODE,
    START_THREAD,
    THREAD_EVENTS,
    allow_many_posts,
    ckey,
    create_area,
    db_id,
    decided,
    events_of,
    members,
    posted,
    queue_items,
    start_thread,
    thread_posts,
    wait_listeners,
    world,
    ws_client,
)

# ---------------------------------------------------------------- documents

ADD_WORD = """
mutation AddWord($input: AddModerationWordInput!) {
  addModerationWord(input: $input) {
    __typename
    ... on ModerationWordSuccess { added word { id kind phrase language } }
    ... on Error { code message }
    ... on InputError { field }
  }
}
"""

REMOVE_WORD = "mutation RemoveWord($id: ID!) { removeModerationWord(id: $id) }"
WORDS = "query Words($kind: WordList!) { moderationWords(kind: $kind) { id kind phrase } }"

MODERATE_MEMBER = """
mutation ModerateMember($input: ModerateMemberInput!) {
  moderateMember(input: $input) {
    __typename
    ... on ModerateMemberSuccess { applied record { premoderated } }
    ... on Error { code message }
  }
}
"""

AREA_PREMODERATION = """
mutation AreaPremoderation($areaId: ID!, $on: Boolean!) {
  setAreaPremoderation(areaId: $areaId, on: $on) {
    __typename
    ... on AreaPremoderationSuccess { applied area { id premoderated } }
    ... on Error { code message }
  }
}
"""

WRITES = {
    "start": (START_THREAD, "startThread"),
    "add": (ADD_POST, "addPost"),
    "edit": (EDIT_POST, "editPost"),
}

# Valid Finnish personal identity codes (old and 2023 separators), and other personal data.
HETU_OLD, HETU_NEW = "131052-308T", "010594Y123W"
PERSONAL = [
    (
        f"Henkilötunnukseni on {HETU_OLD}.",
        "PERSONAL_IDENTITY_CODE_IN_TEXT",
        "personal_identity_code",
    ),
    (f"Uusi muoto {HETU_NEW} kelpaa", "PERSONAL_IDENTITY_CODE_IN_TEXT", "personal_identity_code"),
    ("Soita 040 123 4567 illalla", "PHONE_NUMBER_IN_TEXT", "phone_number"),
    ("Vaihde: +358 9 123 4567", "PHONE_NUMBER_IN_TEXT", "phone_number"),
    ("Kirjoita maija.m@example.com niin vastaan", "EMAIL_ADDRESS_IN_TEXT", "email_address"),
    ("Tilini: FI21 1234 5600 0007 85", "IBAN_IN_TEXT", "iban"),
]

# ---------------------------------------------------------------- helpers


async def stored() -> tuple[int, int, int, int]:
    """Rows a write adds: posts, thread events, threads, edit history."""
    return (
        await Post.all().count(),
        await ThreadEvent.all().count(),
        await Thread.all().count(),
        await PostEdit.all().count(),
    )


async def write(server: Server, account: Account, kind: str, **data: Any) -> dict[str, Any]:
    """startThread / addPost / editPost with `data` as its input; returns the result object."""
    doc, field = WRITES[kind]
    if kind != "edit":
        data.setdefault("clientKey", ckey())
    body = await server.gql(doc, {"input": data}, token=account.token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][field]
    return result


async def refused(
    server: Server,
    account: Account,
    kind: str,
    code: str,
    detail: str,
    check: str = "personal_data",
    typename: str = "InputError",
    **data: Any,
) -> dict[str, Any]:
    """A write the checks refuse: the typed error, nothing stored, one refusal recorded."""
    before, decisions = await stored(), await CheckDecision.all().count()
    result = await write(server, account, kind, **data)
    assert result["__typename"] == typename and result["code"] == code, result
    assert result["message"], result
    if typename == "InputError":
        assert result["field"] == "body", result
    assert await stored() == before
    rows = await CheckDecision.all().order_by("id").offset(decisions)
    assert [
        (r.member_id, r.post_id, r.check, r.action, r.detail, r.on_edit)  # type: ignore[attr-defined]
        for r in rows
    ] == [(account.member_id, None, check, CheckAction.REFUSE, detail, kind == "edit")]
    return result


async def accepted(server: Server, account: Account, kind: str, **data: Any) -> dict[str, Any]:
    """A write the checks let through; returns its post."""
    result = await write(server, account, kind, **data)
    assert result["__typename"] in ("PostSuccess", "StartThreadSuccess"), result
    post: dict[str, Any] = result["post"]
    return post


async def assert_held(post: str, check: str, detail: str, on_edit: bool = False) -> None:
    """The post is stored held for `check`, with one hold decision that names it."""
    row = await Post.get(id=db_id(post))
    assert (row.status, row.held_reason) == (PostStatus.HELD, check)
    decisions = [
        (d.member_id, d.check, d.action, d.detail, d.on_edit)  # type: ignore[attr-defined]
        for d in await CheckDecision.filter(post_id=row.id)
    ]
    author: int = row.author_id  # type: ignore[attr-defined]
    assert decisions == [(author, check, CheckAction.HOLD, detail, on_edit)]


async def assert_visible(post: str) -> None:
    row = await Post.get(id=db_id(post))
    assert (row.status, row.held_reason) == (PostStatus.VISIBLE, None)


async def add_word(server: Server, account: Account, kind: str, phrase: str) -> dict[str, Any]:
    """addModerationWord; returns the whole answer."""
    input_ = {"kind": kind, "phrase": phrase}
    body: dict[str, Any] = await server.gql(ADD_WORD, {"input": input_}, token=account.token)
    return body


async def listed(server: Server, account: Account, kind: str, phrase: str) -> dict[str, Any]:
    """A successful addModerationWord; returns its ModerationWordSuccess."""
    body = await add_word(server, account, kind, phrase)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["addModerationWord"]
    assert result["__typename"] == "ModerationWordSuccess", result
    return result


async def moderate_member(server: Server, mod: Account, target: Account, action: str) -> None:
    data = {"memberId": target.gid, "action": action}
    body = await server.gql(MODERATE_MEMBER, {"input": data}, token=mod.token)
    result = body["data"]["moderateMember"]
    assert result["__typename"] == "ModerateMemberSuccess" and result["applied"], body
    assert result["record"]["premoderated"] is (action == "PREMODERATE"), result


# ---------------------------------------------------------------- personal data


async def test_personal_data_is_refused_in_posts_titles_and_edits(server: Server) -> None:
    """R15: identity codes, phone numbers, emails and IBANs are refused everywhere a
    member writes, with a code naming the kind; nothing is stored, a refusal is recorded."""
    assert hetu.is_valid(HETU_OLD) and hetu.is_valid(HETU_NEW)
    allow_many_posts(server)
    w = await world(server)
    for text, code, kind in PERSONAL:
        await refused(server, w.author, "add", code, kind, threadId=w.thread, body=text)
    # A lower-case identity code is the same code.
    await refused(
        server, w.author, "add", "PERSONAL_IDENTITY_CODE_IN_TEXT", "personal_identity_code",
        threadId=w.thread, body="pienellä 131052a308t",
    )  # fmt: skip

    # A new thread: its title and its body are both checked; no thread is created.
    await refused(
        server, w.author, "start", "PERSONAL_IDENTITY_CODE_IN_TEXT", "personal_identity_code",
        areaId=w.area, title=f"Tunnus {HETU_NEW}", body="Ihan tavallinen aloitus",
    )  # fmt: skip
    await refused(
        server, w.author, "start", "PHONE_NUMBER_IN_TEXT", "phone_number",
        areaId=w.area, title="Kysymys", body="Soita 040 123 4567",
    )  # fmt: skip

    # An edit: refused, the stored text and its history unchanged.
    await refused(
        server, w.author, "edit", "EMAIL_ADDRESS_IN_TEXT", "email_address",
        postId=w.post, body="Tämä on viesti, osoite maija@example.com",
    )  # fmt: skip
    row = await Post.get(id=db_id(w.post))
    assert (row.body, row.edited_at, row.status) == ("Tämä on viesti", None, PostStatus.VISIBLE)
    assert await events_of(w.thread) == [("POST_ADDED", row.id)]
    # The recorded decisions never hold any of the refused text.
    details: set[Any] = set(await CheckDecision.all().values_list("detail", flat=True))
    assert details == {"personal_identity_code", "phone_number", "email_address", "iban"}


async def test_near_misses_and_ordinary_numbers_are_posted(server: Server) -> None:
    """A wrong checksum character, an invalid IBAN, years, times, dates and amounts
    are not personal data: stored visible, seen by others, no decision recorded."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    texts = [
        "Väärä tarkiste: 131052-308U",
        "Tili FI21 1234 5600 0007 86 ei ole oikea",
        "Vuonna 2024 klo 12.30 tapaaminen 1.5.2024, hinta 1 250 euroa ja 45 000 euroa.",
        "Aukiolo 14.30–16.00, matka 1300 km, päätös 123456/2024, tuki 1234,56 €/kk",
        "Kävin 3.2.2024 klo 9.15 ja odotin 45 min; syntynyt 13.10.1952.",
    ]
    for text in texts:
        post = await accepted(server, w.author, "add", threadId=w.thread, body=text)
        await assert_visible(post["id"])
        assert (await thread_posts(server, bob, w.thread))[post["id"]]["body"] == text
    # A title with a date and a time is fine too.
    started = await write(
        server, w.author, "start", areaId=w.area, title="Kokous 1.5.2024 klo 12.30", body="Tule"
    )
    assert started["__typename"] == "StartThreadSuccess", started
    assert await CheckDecision.all().count() == 0


async def test_refusal_message_is_in_the_members_language(server: Server) -> None:
    """The typed error's message follows the language the member registered with."""
    w = await world(server)
    expected = {
        "FI": "Tekstissä on puhelinnumero. Poista se: henkilötietoja ei saa jakaa yhteisössä.",
        "SV": "Texten innehåller ett telefonnummer. Ta bort det: personuppgifter "
        "får inte delas i gemenskapen.",
        "EN": "The text contains a phone number. Remove it: personal data "
        "may not be shared in the community.",
    }
    for language, message in expected.items():
        writer = await member(server, language=language)
        result = await refused(
            server, writer, "add", "PHONE_NUMBER_IN_TEXT", "phone_number",
            threadId=w.thread, body="Numeroni 040 123 4567",
        )  # fmt: skip
        assert result["message"] == message, result


async def test_an_iban_followed_by_more_words_is_refused(server: Server) -> None:
    """An account number in the middle of a sentence is as much personal data as one
    at its end (the IBAN pattern must not run on into the next words)."""
    w = await world(server)
    for text in (
        "Maksa tilille FI21 1234 5600 0007 85 ja ilmoita",
        "FI21 1234 5600 0007 85 on tilini",
    ):
        await refused(server, w.author, "add", "IBAN_IN_TEXT", "iban", threadId=w.thread, body=text)


# ---------------------------------------------------------------- word lists


async def test_banned_words_are_matched_normalised_and_removal_lets_posts_through(
    server: Server,
) -> None:
    """A banned phrase refuses posts and titles in other case, with look-alike digits,
    stretched or spaced letters; not inside longer words unless listed as a prefix;
    å, ä and ö are letters of their own. Adding is audited; removing lifts the ban."""
    allow_many_posts(server)
    w = await world(server)
    first = await listed(server, w.mod, "BANNED", "  Idiootti ")
    word = first["word"]
    assert first["added"] is True
    assert (word["kind"], word["phrase"], word["language"]) == ("BANNED", "idiootti", "any")
    again = await listed(server, w.admin, "BANNED", "IDIOOTTI")
    assert again["added"] is False and again["word"]["id"] == word["id"]
    audit = await AuditEntry.filter(action="words.add")
    assert [(a.actor_id, a.actor_role, a.details) for a in audit] == [
        (w.mod.member_id, "moderator", {"list": "banned", "phrase": "idiootti", "language": "any"})
    ]

    variants = [
        "Olet IDIOOTTI!",
        "Olet 1d1007t1",
        "Olet idioooootti",
        "Olet i d i o o t t i nyt",
        "Olet i-d-i-o-o-t-t-i",
        "Olet ｉｄｉｏｏｔｔｉ",
    ]
    for text in variants:
        await refused(
            server, w.author, "add", "BANNED_WORDS", "banned_word", "banned_words",
            threadId=w.thread, body=text,
        )  # fmt: skip
    await refused(
        server, w.author, "start", "BANNED_WORDS", "banned_word", "banned_words",
        areaId=w.area, title="Idiootti-ketju", body="Aloitus",
    )  # fmt: skip
    for text in ("Idioottimainen ajatus", "Hän on superidiootti", "Nuo idiootit taas"):
        await assert_visible(
            (await accepted(server, w.author, "add", threadId=w.thread, body=text))["id"]
        )

    removed = await server.gql(REMOVE_WORD, {"id": word["id"]}, token=w.mod.token)
    assert removed == {"data": {"removeModerationWord": True}}, removed
    assert await AuditEntry.filter(action="words.remove").count() == 1
    words = await server.gql(WORDS, {"kind": "BANNED"}, token=w.mod.token)
    assert words == {"data": {"moderationWords": []}}, words
    await accepted(server, w.author, "add", threadId=w.thread, body="Olet IDIOOTTI!")

    # A prefix entry matches inflected forms, still not inside other words.
    await listed(server, w.mod, "BANNED", "idioot*")
    await refused(
        server, w.author, "add", "BANNED_WORDS", "banned_word", "banned_words",
        threadId=w.thread, body="Taas noita IDIOOTTEJA",
    )  # fmt: skip
    await accepted(server, w.author, "add", threadId=w.thread, body="Aivan superidiootteja")

    # Å, ä and ö are not folded to a and o; a decomposed ä is an ä.
    await listed(server, w.mod, "BANNED", "Kärsä")
    for text in ("Mikä KÄRSÄ", "Mikä ka\u0308rsa\u0308"):
        await refused(
            server, w.author, "add", "BANNED_WORDS", "banned_word", "banned_words",
            threadId=w.thread, body=text,
        )  # fmt: skip
    await accepted(server, w.author, "add", threadId=w.thread, body="Mikä karsa")
    listing = await server.gql(WORDS, {"kind": "BANNED"}, token=w.admin.token)
    phrases = [x["phrase"] for x in listing["data"]["moderationWords"]]
    assert phrases == ["idioot*", "kärsä"], listing


async def test_only_moderators_and_admins_manage_word_lists(server: Server) -> None:
    """Members and researchers cannot add, list or remove words; anonymous callers are
    told to sign in; nothing is stored or audited by refused calls."""
    bob = await member(server)
    researcher = await staff(server, "researcher")
    mod = await staff(server, "moderator")
    word = (await listed(server, mod, "SUSPECT", "huijaus"))["word"]
    for account in (bob, researcher, None):
        token = account.token if account else None
        check = assert_unauthenticated if account is None else assert_no_permission
        check(
            await server.gql(ADD_WORD, {"input": {"kind": "BANNED", "phrase": "x1"}}, token=token)
        )
        check(await server.gql(WORDS, {"kind": "SUSPECT"}, token=token))
        check(await server.gql(REMOVE_WORD, {"id": word["id"]}, token=token))
    assert [(w.kind.value, w.phrase) for w in await ModerationWord.all()] == [
        ("suspect", "huijaus")
    ]
    assert await AuditEntry.filter(action__startswith="words.").count() == 1


async def test_a_prefix_entry_of_the_longest_allowed_length_is_added(server: Server) -> None:
    """A phrase of 100 characters is allowed; as a prefix entry (a final *) it must be
    answered (added, or refused as WORD_INVALID), never with a server error."""
    mod = await staff(server, "moderator")
    phrase = "ab" * 50 + "*"
    body = await add_word(server, mod, "BANNED", phrase)
    assert "errors" not in body, body
    result = body["data"]["addModerationWord"]
    if result["__typename"] == "ModerationWordSuccess":
        assert result["word"]["phrase"] == phrase, result
        assert await ModerationWord.filter(phrase=phrase).count() == 1
    else:
        assert (result["__typename"], result["code"]) == ("InputError", "WORD_INVALID"), result


async def test_suspect_words_hold_the_post_until_a_moderator_approves(server: Server) -> None:
    """A suspect word stores the post held: its author sees it pending, other members
    not at all, moderators in the HELD queue with the check; approval publishes it."""
    allow_many_posts(server)
    w = await world(server)
    bob = await member(server)
    await listed(server, w.mod, "SUSPECT", "huijaus*")
    post = await accepted(server, w.author, "add", threadId=w.thread, body="Tämä on HUIJAUSTA")
    assert post["pending"] is True and post["body"] == "Tämä on HUIJAUSTA", post
    await assert_held(post["id"], "suspect_words", "suspect_word")

    mine = (await thread_posts(server, w.author, w.thread))[post["id"]]
    assert mine["pending"] is True and mine["body"] == "Tämä on HUIJAUSTA", mine
    assert post["id"] not in await thread_posts(server, bob, w.thread)
    assert await server.gql(POST_NODE, {"id": post["id"]}, token=bob.token) == {
        "data": {"node": None}
    }
    item = (await queue_items(server, w.mod, "HELD"))[post["id"]]
    assert item["heldReason"] == "suspect_words", item
    checks = await server.gql(
        "query Q { moderationQueue(queue: HELD) { edges { node { checkDecisions"
        " { check action detail onEdit at } } } } }",
        token=w.mod.token,
    )
    [decision] = checks["data"]["moderationQueue"]["edges"][0]["node"]["checkDecisions"]
    assert {k: v for k, v in decision.items() if k != "at"} == {
        "check": "suspect_words",
        "action": "hold",
        "detail": "suspect_word",
        "onEdit": False,
    }, checks

    # Staff writing the same word are not held.
    by_mod = await accepted(server, w.mod, "add", threadId=w.thread, body="Onko tämä huijaus?")
    await assert_visible(by_mod["id"])

    await decided(server, w.mod, post["id"], "APPROVE")
    seen = (await thread_posts(server, bob, w.thread))[post["id"]]
    assert seen["body"] == "Tämä on HUIJAUSTA" and seen["pending"] is False, seen


async def test_a_held_new_thread_is_not_shown_to_other_members(server: Server) -> None:
    """A thread whose only post is held (here: a suspect word in the title) must not show
    its title to other members before a moderator has approved it."""
    w = await world(server)
    bob = await member(server)
    await listed(server, w.mod, "SUSPECT", "huijaus")
    title = "Huijaus paljastui"
    started = await write(server, w.author, "start", areaId=w.area, title=title, body="Lue tämä")
    assert started["__typename"] == "StartThreadSuccess", started
    await assert_held(started["post"]["id"], "suspect_words", "suspect_word")
    body = await server.gql(AREA_THREADS, token=bob.token)
    titles = [e["node"]["title"] for a in body["data"]["areas"] for e in a["threads"]["edges"]]
    assert title not in titles, body


# ---------------------------------------------------------------- behaviour


async def test_the_same_text_again_is_refused_within_the_window(server: Server) -> None:
    """REPEAT_POST_MINUTES: the same member's same text is refused in any thread; a retry
    with the same client key answers with the first post; others may post it; after the
    window it passes."""
    allow_many_posts(server, repeat_post_minutes=60)
    w = await world(server)
    bob = await member(server)
    other_thread, _ = await start_thread(server, w.author, w.area, "Toinen aloitus")
    text, key = "Palvelu toimi tänään hyvin", ckey()
    first = await accepted(server, w.author, "add", threadId=w.thread, body=text, clientKey=key)
    before = await stored()
    retry = await accepted(server, w.author, "add", threadId=w.thread, body=text, clientKey=key)
    assert retry["id"] == first["id"] and await stored() == before

    for thread in (w.thread, other_thread):
        await refused(
            server, w.author, "add", "REPEATED_POST", "repeat", "repeat_text",
            threadId=thread, body=text,
        )  # fmt: skip
    await refused(
        server, w.author, "start", "REPEATED_POST", "repeat", "repeat_text",
        areaId=w.area, title="Uusi otsikko", body=text,
    )  # fmt: skip
    await assert_visible((await accepted(server, bob, "add", threadId=w.thread, body=text))["id"])

    clock.move(timedelta(minutes=61))
    again = await accepted(server, w.author, "add", threadId=other_thread, body=text)
    await assert_visible(again["id"])
    assert await Post.filter(author_id=w.author.member_id, body=text).count() == 2


async def test_racing_retries_of_one_write_are_not_repeats(server: Server) -> None:
    """Two copies of one request (same client key) at once: one post, both answered with
    it, neither refused as a repeat."""
    allow_many_posts(server, repeat_post_minutes=60)
    w = await world(server)
    key = ckey()
    results = await asyncio.gather(
        *(
            write(server, w.author, "add", threadId=w.thread, body="Kaksi kertaa", clientKey=key)
            for _ in range(2)
        )
    )
    assert [r["__typename"] for r in results] == ["PostSuccess"] * 2, results
    assert results[0]["post"]["id"] == results[1]["post"]["id"]
    assert await Post.filter(body="Kaksi kertaa").count() == 1
    assert await CheckDecision.all().count() == 0


async def test_links_from_new_members_are_held_until_they_have_published_posts(
    server: Server,
) -> None:
    """NEW_MEMBER_LINK_POSTS=2: links from a member with fewer published posts are held
    (held posts do not count); after two published posts links pass."""
    allow_many_posts(server, new_member_link_posts=2)
    w = await world(server)
    bob = await member(server)
    for link in ("Katso https://example.com", "Lue www.example.fi"):
        post = await accepted(server, bob, "add", threadId=w.thread, body=link)
        assert post["pending"] is True, post
        await assert_held(post["id"], "new_member_links", "link")
    await accepted(server, bob, "add", threadId=w.thread, body="Ensimmäinen oikea viesti")
    third = await accepted(server, bob, "add", threadId=w.thread, body="https://example.com/a")
    await assert_held(third["id"], "new_member_links", "link")
    await accepted(server, bob, "add", threadId=w.thread, body="Toinen oikea viesti")
    free = await accepted(server, bob, "add", threadId=w.thread, body="https://example.com/b")
    await assert_visible(free["id"])
    # w.author has one published post (the thread's start): still a new member.
    held = await accepted(server, w.author, "add", threadId=w.thread, body="www.example.fi")
    await assert_held(held["id"], "new_member_links", "link")


async def test_premoderated_member_posts_are_held_until_premoderation_ends(
    server: Server,
) -> None:
    """moderateMember PREMODERATE holds the member's posts and new threads for review;
    END_PREMODERATION lets them through again."""
    allow_many_posts(server)
    w = await world(server)
    await moderate_member(server, w.mod, w.author, "PREMODERATE")
    post = await accepted(server, w.author, "add", threadId=w.thread, body="Odotan tarkistusta")
    await assert_held(post["id"], "premoderation", "member")
    started = await write(server, w.author, "start", areaId=w.area, title="Uusi", body="Aloitus")
    await assert_held(started["post"]["id"], "premoderation", "member")

    await moderate_member(server, w.mod, w.author, "END_PREMODERATION")
    free = await accepted(server, w.author, "add", threadId=w.thread, body="Taas vapaana")
    await assert_visible(free["id"])


async def test_premoderated_areas_hold_members_posts(server: Server) -> None:
    """setAreaPremoderation (and createArea with premoderated) hold every member's post in
    the area, not staff posts; turning it off lets posts through again."""
    allow_many_posts(server)
    w = await world(server)
    on = await server.gql(AREA_PREMODERATION, {"areaId": w.area, "on": True}, token=w.mod.token)
    assert on["data"]["setAreaPremoderation"]["applied"] is True, on
    assert (await Area.get(id=db_id(w.area, "Area"))).premoderated is True
    post = await accepted(server, w.author, "add", threadId=w.thread, body="Alueella tarkistus")
    await assert_held(post["id"], "premoderation", "area")
    await assert_visible(
        (await accepted(server, w.mod, "add", threadId=w.thread, body="Moderaattori"))["id"]
    )
    off = await server.gql(AREA_PREMODERATION, {"areaId": w.area, "on": False}, token=w.mod.token)
    assert off["data"]["setAreaPremoderation"]["applied"] is True, off
    free = await accepted(server, w.author, "add", threadId=w.thread, body="Ei enää tarkistusta")
    await assert_visible(free["id"])

    data = {"titleFi": "A", "titleSv": "O", "titleEn": "A", "membersCanStartThreads": True}
    created = await server.gql(
        CREATE_AREA, {"input": {**data, "premoderated": True}}, token=w.admin.token
    )
    area = created["data"]["createArea"]["area"]["id"]
    started = await write(server, w.author, "start", areaId=area, title="Eka", body="Alku")
    await assert_held(started["post"]["id"], "premoderation", "area")


async def test_new_members_posts_wait_for_approval_and_reach_others_live_only_then(
    server: Server,
) -> None:
    """PREMODERATE_NEW_MEMBER_POSTS=2: a member's posts are held until two are published.
    Other members' live thread views get nothing for a held post, then POST_RESTORED
    when it is approved; the author sees their own post pending at once."""
    admin = await staff(server, "admin")
    mod = await staff(server, "moderator")
    area = await create_area(server, admin)
    thread, _ = await start_thread(server, mod, area, "Moderaattorin aloitus")
    allow_many_posts(server, premoderate_new_member_posts=2)
    anna, bob = await members(server, 2)

    async with ws_client(server, bob.token) as bob_ws, ws_client(server, anna.token) as anna_ws:
        for client in (bob_ws, anna_ws):
            await client.subscribe("events", THREAD_EVENTS, {"threadId": thread})
        await wait_listeners(server, f"thread:{db_id(thread, 'Thread')}", 2)

        first = await posted(server, anna, thread, "Ensimmäinen viestini")
        await assert_held(first, "premoderation", "new_member")
        own = await anna_ws.next_event()
        assert own["kind"] == "POST_ADDED" and own["post"]["id"] == first, own
        assert own["post"]["pending"] is True and own["post"]["body"] == "Ensimmäinen viestini"
        second = await posted(server, anna, thread, "Toinen viestini")
        await assert_held(second, "premoderation", "new_member")
        await bob_ws.expect_silence(0.5)

        await decided(server, mod, first, "APPROVE")
        back = await bob_ws.next_event()
        assert (back["kind"], back["post"]["id"]) == ("POST_RESTORED", first), back
        assert back["post"]["body"] == "Ensimmäinen viestini", back
        # One published post is not yet two.
        third = await posted(server, anna, thread, "Kolmas viestini")
        await assert_held(third, "premoderation", "new_member")
        await bob_ws.expect_silence(0.3)

        await decided(server, mod, second, "APPROVE")
        back = await bob_ws.next_event()
        assert (back["kind"], back["post"]["id"]) == ("POST_RESTORED", second), back
        fourth = await posted(server, anna, thread, "Neljäs viestini")
        await assert_visible(fourth)
        live = await bob_ws.next_event()
        assert (live["kind"], live["post"]["id"]) == ("POST_ADDED", fourth), live
        assert live["post"]["body"] == "Neljäs viestini", live

    seen = await thread_posts(server, bob, thread)
    assert first in seen and second in seen and fourth in seen and third not in seen


# ---------------------------------------------------------------- edits and rate limit


async def test_edits_are_checked_refused_or_held(server: Server) -> None:
    """An edit adding a phone number is refused and changes nothing; an edit adding a
    suspect word stores the new text but holds the post (POST_HIDDEN, history kept)."""
    w = await world(server)
    bob = await member(server)
    await listed(server, w.mod, "SUSPECT", "huijaus*")
    row_id = db_id(w.post)
    await refused(
        server, w.author, "edit", "PHONE_NUMBER_IN_TEXT", "phone_number",
        postId=w.post, body="Tämä on viesti, soita 040 123 4567",
    )  # fmt: skip
    row = await Post.get(id=row_id)
    assert (row.body, row.edited_at, row.status) == ("Tämä on viesti", None, PostStatus.VISIBLE)
    assert await PostEdit.filter(post_id=row_id).count() == 0

    edited = await write(server, w.author, "edit", postId=w.post, body="Tämä on huijaus")
    assert edited["__typename"] == "PostSuccess", edited
    await assert_held(w.post, "suspect_words", "suspect_word", on_edit=True)
    row = await Post.get(id=row_id)
    assert row.body == "Tämä on huijaus" and row.edited_at is not None
    history: list[Any] = await PostEdit.filter(post_id=row_id).values_list("old_body", flat=True)
    assert list(history) == ["Tämä on viesti"]
    assert await events_of(w.thread) == [("POST_ADDED", row_id), ("POST_HIDDEN", row_id)]
    assert w.post not in await thread_posts(server, bob, w.thread)
    assert (await thread_posts(server, w.author, w.thread))[w.post]["pending"] is True


async def test_the_post_rate_limit_is_a_recorded_check(server: Server) -> None:
    """POSTS_PER_MINUTE=2: the third post in a minute is refused as RateLimitedError
    TOO_MANY_POSTS, stores nothing and records a rate_limit refusal."""
    w = await world(server)
    override_settings(replace(server.settings, posts_per_minute=2))
    bob = await member(server)
    for i in range(2):
        await posted(server, bob, w.thread, f"Viesti {i}")
    result = await refused(
        server, bob, "add", "TOO_MANY_POSTS", "per_60s", "rate_limit", "RateLimitedError",
        threadId=w.thread, body="Kolmas liian nopeasti",
    )  # fmt: skip
    assert 0 < result["retryAfterSeconds"] <= 60, result
    clock.move(timedelta(seconds=61))
    await posted(server, bob, w.thread, "Kolmas myöhemmin")
