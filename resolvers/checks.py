"""Validation of member input: email, birth date, names, language, free text."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from email_validator import EmailNotValidError, validate_email

from resolvers.errors import Code, UserError
from resolvers.postchecks import refuse_personal_data

LANGUAGES = ("fi", "sv", "en")
MIN_AGE = 16
NAME_MIN = 3
NAME_MAX = 32

LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Letters of any script, digits, single spaces and . _ - inside the name.
DISPLAY_RE = re.compile(r"^[^\W_](?:[\w.\- ]*[^\W_])?$")

# Names that would let a member pose as staff or as the agency. Matched on the
# name key (casefolded, separators removed): the first set anywhere in the
# name, the second only as the whole name.
RESERVED_ANYWHERE = (
    "admin",
    "moderator",
    "moderaattori",
    "yllapito",
    "yllapitaja",
    "kela",
    "kelan",
    "fpa",
    "official",
    "virallinen",
)
RESERVED_EXACT = frozenset(
    {
        "mod",
        "root",
        "staff",
        "system",
        "support",
        "tuki",
        "researcher",
        "tutkija",
        "forskare",
        "formermember",
        "entinenjasen",
        "tidigaremedlem",
        "anonymous",
        "anonyymi",
        "null",
        "none",
    }
)


# Cyrillic and Greek letters that look like Latin ones (lower case, after casefold):
# a name written wholly in them would pass for a Latin name, so the key maps them.
LOOKALIKES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
        "ԁ": "d", "ո": "n", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z",
    }
)  # fmt: skip
# Letters that render as nothing (Hangul fillers) or as a blank.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
# Scripts that one name may mix (Japanese writes kanji, hiragana and katakana together).
SCRIPT_FAMILY = {"CJK": "JAPANESE", "HIRAGANA": "JAPANESE", "KATAKANA": "JAPANESE"}


def script_of(char: str) -> str | None:
    """The script of a letter (from its Unicode name), None for digits and separators."""
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    first = name.split(" ")[0] if name else "UNKNOWN"
    return SCRIPT_FAMILY.get(first, first)


def name_key(name: str) -> str:
    """Case-, accent-, separator- and look-alike-insensitive key of a name."""
    # NFKD first: styled letters (mathematical bold, fullwidth) become plain ones
    # before case folding, then again after it (folding can compose).
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    stripped = "".join(c for c in folded if not unicodedata.combining(c))
    return re.sub(r"[\s._\-]+", "", stripped).translate(LOOKALIKES)


def check_email(email: str, field: str = "email") -> str:
    """The normalised (lower-case) address, or INVALID_EMAIL."""
    if len(email) > 254:
        raise UserError(Code.INVALID_EMAIL, field=field)
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise UserError(Code.INVALID_EMAIL, field=field) from None
    return valid.normalized.lower()


def check_birth_date(birth_date: date, today: date, field: str = "birthDate") -> int:
    """Refuse anyone under 16 on ``today``; return only the birth year to keep."""
    if birth_date > today or birth_date.year < today.year - 130:
        raise UserError(Code.INVALID_DATE, field=field)
    try:
        sixteenth = birth_date.replace(year=birth_date.year + MIN_AGE)
    except ValueError:  # born on 29 February: the birthday is 1 March
        sixteenth = date(birth_date.year + MIN_AGE, 3, 1)
    if sixteenth > today:
        raise UserError(Code.UNDER_AGE, field=field)
    return birth_date.year


def check_language(language: str, field: str = "language") -> str:
    if language not in LANGUAGES:
        raise UserError(Code.INVALID_LANGUAGE, field=field)
    return language


def _check_length(name: str, field: str) -> None:
    if len(name) < NAME_MIN:
        raise UserError(Code.NAME_TOO_SHORT, field=field, min=NAME_MIN)
    if len(name) > NAME_MAX:
        raise UserError(Code.NAME_TOO_LONG, field=field, max=NAME_MAX)


def _check_no_personal_data(name: str, field: str) -> None:
    """A name shown to others (or typed to sign in) must not be an address or identity code."""
    refuse_personal_data(name, field)


def _check_reserved(key: str, field: str) -> None:
    if key in RESERVED_EXACT or any(word in key for word in RESERVED_ANYWHERE):
        raise UserError(Code.NAME_RESERVED, field=field)


def check_login_name(login_name: str, field: str = "loginName") -> tuple[str, str]:
    """(login name as typed, unique key). ASCII only, to rule out look-alikes."""
    _check_length(login_name, field)
    if not LOGIN_RE.match(login_name.lower()):
        raise UserError(Code.NAME_INVALID_CHARACTERS, field=field)
    _check_no_personal_data(login_name, field)
    key = name_key(login_name)
    _check_reserved(key, field)
    return login_name, login_name.lower()


def check_display_name(display_name: str, field: str = "displayName") -> tuple[str, str]:
    """(display name, unique key). Letters of any language, digits, space . _ -."""
    name = unicodedata.normalize("NFC", display_name)
    _check_length(name, field)
    if not DISPLAY_RE.match(name) or "  " in name:
        raise UserError(Code.NAME_INVALID_CHARACTERS, field=field)
    if any(unicodedata.category(c) in {"Cf", "Cc", "Co", "Cs"} for c in name):
        raise UserError(Code.NAME_INVALID_CHARACTERS, field=field)
    if any(c in INVISIBLE_LETTERS for c in name):
        raise UserError(Code.NAME_INVALID_CHARACTERS, field=field)
    if len({script for c in name if (script := script_of(c)) is not None}) > 1:
        # "Маtti" (a Cyrillic М) would pass for "Matti": one script per name.
        raise UserError(Code.NAME_INVALID_CHARACTERS, field=field)
    _check_no_personal_data(name, field)
    key = name_key(name)
    if len(key) < NAME_MIN:
        raise UserError(Code.NAME_TOO_SHORT, field=field, min=NAME_MIN)
    _check_reserved(key, field)
    return name, key[:NAME_MAX]


def check_display_not_identifying(
    display_key: str, login_name: str, email: str | None, field: str = "displayName"
) -> None:
    """A public name must not give away the login name or the email's local part."""
    if display_key == name_key(login_name):
        raise UserError(Code.DISPLAY_NAME_IDENTIFYING, field=field)
    if email and display_key == name_key(email.split("@", 1)[0]):
        raise UserError(Code.DISPLAY_NAME_IDENTIFYING, field=field)


def check_text(text: str, max_length: int, field: str) -> str:
    if len(text) > max_length:
        raise UserError(Code.TEXT_TOO_LONG, field=field, max=max_length)
    return text
