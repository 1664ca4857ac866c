"""Automatic checks on every new or edited post: one ordered, extensible pipeline.

Each check looks at the cleaned text and its context and answers nothing
(pass), REFUSE (the post is not stored, the member gets a typed error that
says what to fix) or HOLD (the post is stored but hidden pending a
moderator's review). The first check that answers decides, and the decision
is recorded with the check's name (:class:`models.moderation.CheckDecision`),
so every automatic action is traceable. Refusals come first in the order, so
a member is told what to fix before a post is ever held.

The pipeline runs inside the write's transaction, after the member's row
lock, so the rate limit counts a burst of parallel requests exactly.

To add a check: write a :class:`Check` and put it in :data:`PIPELINE`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban
from stdnum.fi import hetu

from config import get_settings
from models.community import Member, Role
from models.discussions import Area, Post, PostStatus
from models.moderation import CheckAction, CheckDecision, ModerationWord, WordListKind
from resolvers import clock
from resolvers.errors import PERSONAL_DATA_CODES, Code, UserError

STAFF = (Role.MODERATOR, Role.RESEARCHER, Role.ADMIN)


@dataclass
class PostContext:
    """What the checks see: the cleaned text, who writes it, and where."""

    member: Member  # the member's row, read under its lock (fresh flags)
    area: Area
    body: str
    title: str = ""  # a new thread's title: checked for personal data and words too
    is_edit: bool = False
    post_id: int | None = None  # the edited post
    client_key: str = ""  # a retried write's own first post is not a repeat

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}" if self.title else self.body

    @property
    def is_staff(self) -> bool:
        return self.member.role in STAFF


@dataclass(frozen=True)
class Verdict:
    check: str
    action: CheckAction
    detail: str = ""  # the kind of finding: never the text that was found


class CheckRefused(UserError):
    """A check refused the post: a typed error naming what was found."""

    def __init__(self, verdict: Verdict, code: Code, retry_after: int | None = None) -> None:
        super().__init__(code, field="body", retry_after=retry_after)
        self.verdict = verdict


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[PostContext], Awaitable[Verdict | None]]
    on_edit: bool = True  # also run on edited text


# --- personal data (R15) ---------------------------------------------------------

_HETU = re.compile(r"(?<![0-9A-Za-z])\d{6}[-+A-FU-Ya-fu-y]\d{3}[0-9A-Za-z](?![0-9A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")
# Service numbers (toll-free, shared-cost, premium, "universal access") are
# organisations' numbers, not personal data: members may share them.
_SERVICE_NUMBERS = {
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.UAN,
}


def _contains_iban(text: str) -> bool:
    """An IBAN anywhere: from each country-code start, the longest valid prefix of the
    following letters and digits (single spaces allowed between them)."""
    for match in _IBAN_START.finditer(text):
        chars = list(match.group(0))
        i = match.end()
        while i < len(text) and len(chars) < 34:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
                i += 1
            elif (
                ch == " " and i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalnum()
            ):
                i += 1
            else:
                break
        candidate = "".join(chars)
        if any(iban.is_valid(candidate[:n]) for n in range(len(candidate), 14, -1)):
            return True
    return False


PERSONAL_DATA_KINDS = ("personal_identity_code", "phone_number", "email_address", "iban")


def find_personal_data(text: str) -> str | None:
    """The kind of personal data in ``text`` (see PERSONAL_DATA_KINDS), or None."""
    for match in _HETU.finditer(text):
        # Temporary identity codes (individual numbers 900-999) identify a person too.
        if hetu.is_valid(match.group(0).upper(), allow_temporary=True):
            return "personal_identity_code"
    for found in phonenumbers.PhoneNumberMatcher(text, "FI", leniency=phonenumbers.Leniency.VALID):
        if phonenumbers.number_type(found.number) not in _SERVICE_NUMBERS:
            return "phone_number"
    for match in _EMAIL.finditer(text):
        try:
            validate_email(match.group(0), check_deliverability=False)
        except EmailNotValidError:
            continue
        return "email_address"
    if _contains_iban(text):
        return "iban"
    return None


def refuse_personal_data(text: str, field: str) -> None:
    """Refuse other text that others read (names, report notes) holding personal data,
    with the post check's code for its kind, on ``field``."""
    kind = find_personal_data(text)
    if kind is not None:
        raise UserError(PERSONAL_DATA_CODES[kind], field=field)


async def personal_data(ctx: PostContext) -> Verdict | None:
    kind = find_personal_data(ctx.text)
    if kind is None:
        return None
    verdict = Verdict("personal_data", CheckAction.REFUSE, kind)
    raise CheckRefused(verdict, PERSONAL_DATA_CODES[kind])


# --- word lists --------------------------------------------------------------------

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})
_RUNS = re.compile(r"(\w)\1{2,}")
_TOKEN = re.compile(r"\w+")


def normalise_words(text: str) -> list[str]:
    """Words for matching: NFKC, case-folded, look-alike digits as letters,
    runs of three or more equal letters cut to two, and s p a c e d letters joined.

    Å, ä and ö stay letters of their own (in Finnish and Swedish they are
    not accented a and o).
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    words = [w.translate(_LEET) for w in _TOKEN.findall(text)]
    joined: list[str] = []
    letters: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            letters.append(word)
            continue
        if len(letters) >= 3:
            joined.append("".join(letters))
        else:
            joined.extend(letters)
        letters = []
        if word:
            joined.append(word)
    return [_RUNS.sub(r"\1\1", w) for w in joined]


def normalise_phrase(phrase: str) -> str:
    """A list entry as stored: its normalised words, space-separated; a final ``*``
    (a prefix, for inflected forms: ``idioot*``) is kept."""
    prefix = phrase.strip().endswith("*")
    words = normalise_words(phrase.strip().rstrip("*"))
    return " ".join(words) + ("*" if prefix and words else "")


def phrase_in(words: list[str], phrase: str) -> bool:
    prefix = phrase.endswith("*")
    parts = phrase.rstrip("*").split(" ")
    n = len(parts)
    for i in range(len(words) - n + 1):
        window = words[i : i + n]
        if window[:-1] != parts[:-1]:
            continue
        last = window[-1]
        if last == parts[-1] or (prefix and last.startswith(parts[-1])):
            return True
    return False


@dataclass(frozen=True)
class WordMatcher:
    """One list compiled for matching: single words by set look-up, prefixes by the
    lengths in use, phrases of several words by a scan (they are few)."""

    exact: frozenset[str]
    prefixes: frozenset[str]
    prefix_lengths: tuple[int, ...]
    phrases: tuple[str, ...]

    @classmethod
    def compile(cls, entries: list[str]) -> WordMatcher:
        single = [e for e in entries if " " not in e]
        prefixes = frozenset(e.rstrip("*") for e in single if e.endswith("*"))
        return cls(
            exact=frozenset(e for e in single if not e.endswith("*")),
            prefixes=prefixes,
            prefix_lengths=tuple(sorted({len(p) for p in prefixes})),
            phrases=tuple(e for e in entries if " " in e),
        )

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes or self.phrases)

    def matches(self, words: list[str]) -> bool:
        if self.exact.intersection(words):
            return True
        for word in words:
            if any(word[:n] in self.prefixes for n in self.prefix_lengths if n <= len(word)):
                return True
        return any(phrase_in(words, p) for p in self.phrases)


WORDS_TTL_SECONDS = 10.0
_words: tuple[float, dict[WordListKind, WordMatcher]] | None = None


async def word_lists() -> dict[WordListKind, WordMatcher]:
    """Both lists, read once per WORDS_TTL_SECONDS per worker (one query for both).

    A change made on this worker applies at once (:func:`forget_word_lists`);
    on other workers within the TTL.
    """
    global _words
    now = time.monotonic()
    if _words is None or now - _words[0] > WORDS_TTL_SECONDS:
        lists: dict[WordListKind, list[str]] = {kind: [] for kind in WordListKind}
        for kind, phrase in await ModerationWord.all().values_list("kind", "phrase"):
            lists[WordListKind(kind)].append(str(phrase))
        _words = (now, {kind: WordMatcher.compile(lst) for kind, lst in lists.items()})
    return _words[1]


def forget_word_lists() -> None:
    global _words
    _words = None


async def _listed(ctx: PostContext, kind: WordListKind) -> bool:
    matcher = (await word_lists())[kind]
    return bool(matcher) and matcher.matches(normalise_words(ctx.text))


async def banned_words(ctx: PostContext) -> Verdict | None:
    if await _listed(ctx, WordListKind.BANNED):
        raise CheckRefused(
            Verdict("banned_words", CheckAction.REFUSE, "banned_word"), Code.BANNED_WORDS
        )
    return None


async def suspect_words(ctx: PostContext) -> Verdict | None:
    if ctx.is_staff or not await _listed(ctx, WordListKind.SUSPECT):
        return None
    return Verdict("suspect_words", CheckAction.HOLD, "suspect_word")


# --- behaviour ---------------------------------------------------------------------


async def repeat_text(ctx: PostContext) -> Verdict | None:
    """The same text posted again by the same member within REPEAT_POST_MINUTES (anywhere)."""
    minutes = get_settings().repeat_post_minutes
    if ctx.is_staff or minutes <= 0:
        return None
    since = clock.now() - timedelta(minutes=minutes)
    same = Post.filter(author_id=ctx.member.id, body=ctx.body, created_at__gt=since).exclude(
        status__in=(PostStatus.REMOVED, PostStatus.MODERATED)
    )
    if ctx.post_id is not None:
        same = same.exclude(id=ctx.post_id)
    if ctx.client_key:
        same = same.exclude(client_key=ctx.client_key)
    if await same.exists():
        raise CheckRefused(Verdict("repeat_text", CheckAction.REFUSE, "repeat"), Code.REPEATED_POST)
    return None


async def rate_limit(ctx: PostContext) -> Verdict | None:
    """Posts per minute and per hour (counted under the member's row lock)."""
    if ctx.is_staff:
        return None
    settings = get_settings()
    now = clock.now()
    # One query for both windows: the member's post times of the last hour.
    times: list[datetime] = sorted(
        await Post.filter(  # type: ignore[arg-type]
            author_id=ctx.member.id, created_at__gt=now - timedelta(seconds=3600)
        ).values_list("created_at", flat=True)
    )
    for window, limit in ((60, settings.posts_per_minute), (3600, settings.posts_per_hour)):
        recent = [t for t in times if t > now - timedelta(seconds=window)]
        if len(recent) >= limit:
            wait = window - int((now - recent[0]).total_seconds())
            raise CheckRefused(
                Verdict("rate_limit", CheckAction.REFUSE, f"per_{window}s"),
                Code.TOO_MANY_POSTS,
                retry_after=max(1, wait),
            )
    return None


# A scheme or www. in any case; a bare domain only in lower case with a label of two or
# more characters, so that "sen.Se" (a missing space) or "5.eu" is not taken for a link.
_LINK = re.compile(
    r"(?i:https?://|www\.)\S+"
    r"|\b[a-z0-9-]{2,}(?:\.[a-z0-9-]+)*\.(?:fi|se|com|net|org|eu|io|info|biz|ru)\b"
)


async def _published_posts(member_id: int) -> int:
    return await Post.filter(author_id=member_id, status=PostStatus.VISIBLE).count()


async def new_member_links(ctx: PostContext) -> Verdict | None:
    """Links from members with fewer than NEW_MEMBER_LINK_POSTS published posts are held."""
    needed = get_settings().new_member_link_posts
    if ctx.is_staff or needed <= 0 or not _LINK.search(ctx.body):
        return None
    if await _published_posts(ctx.member.id) >= needed:
        return None
    return Verdict("new_member_links", CheckAction.HOLD, "link")


async def premoderation(ctx: PostContext) -> Verdict | None:
    """Pre-moderated members and areas, and new members until K published posts."""
    if ctx.is_staff:
        return None
    if ctx.member.premoderated:
        return Verdict("premoderation", CheckAction.HOLD, "member")
    if ctx.area.premoderated:
        return Verdict("premoderation", CheckAction.HOLD, "area")
    needed = get_settings().premoderate_new_member_posts
    if needed > 0 and await _published_posts(ctx.member.id) < needed:
        return Verdict("premoderation", CheckAction.HOLD, "new_member")
    return None


PIPELINE: list[Check] = [
    Check("personal_data", personal_data),
    Check("banned_words", banned_words),
    Check("repeat_text", repeat_text),
    Check("rate_limit", rate_limit, on_edit=False),
    Check("suspect_words", suspect_words),
    Check("new_member_links", new_member_links),
    Check("premoderation", premoderation),
]


async def run_checks(ctx: PostContext) -> Verdict | None:
    """Run the pipeline in order: raises :class:`CheckRefused`, or returns the hold, or None."""
    for check in PIPELINE:
        if ctx.is_edit and not check.on_edit:
            continue
        verdict = await check.run(ctx)
        if verdict is not None:
            return verdict
    return None


async def record(member_id: int, verdict: Verdict, post_id: int | None, on_edit: bool) -> None:
    await CheckDecision.create(
        member_id=member_id,
        post_id=post_id,
        check=verdict.check,
        action=verdict.action,
        detail=verdict.detail,
        on_edit=on_edit,
        at=clock.now(),
    )
