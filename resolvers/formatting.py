"""Post text: cleaned plain text in storage, a small safe formatting subset on output.

Nothing is stored as HTML. On output the text is HTML-escaped first, and only
then are the few supported marks turned into tags, so no markup a member
typed can ever reach a client unescaped:

- ``**bold**`` -> ``<strong>``, ``_italic_`` -> ``<em>``
- ``http(s)://`` links -> ``<a href rel="nofollow noopener ugc">``
- line breaks -> ``<br>``
"""

from __future__ import annotations

import html
import re
import unicodedata

from resolvers.errors import Code, UserError

# Control and format characters other than newline and tab are dropped:
# they hide text (bidi overrides, zero-width joiners) or break clients (NUL).
_DROP = {"Cc", "Cf", "Co", "Cs"}
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w&])_(?=\S)(.+?)(?<=\S)_(?!\w)")
_LINK = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


# Format characters that carry meaning in real text: joiners (emoji sequences,
# Indic and Persian scripts) and the left-to-right / right-to-left marks.
_KEEP = frozenset("\n\t\u200c\u200d\u200e\u200f")


def clean_text(text: str, max_length: int, field: str = "body") -> str:
    """NFC-normalised text without invisible controls; empty or too long is refused."""
    text = unicodedata.normalize("NFC", text)
    cleaned = "".join(
        c for c in text if c in _KEEP or unicodedata.category(c) not in _DROP
    ).replace("\r", "")
    cleaned = "\n".join(line.rstrip() for line in cleaned.strip().split("\n"))
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned)
    if not cleaned:
        raise UserError(Code.TEXT_EMPTY, field=field)
    if len(cleaned) > max_length:
        raise UserError(Code.TEXT_TOO_LONG, field=field, max=max_length)
    return cleaned


def _inline(segment: str) -> str:
    escaped = html.escape(segment, quote=True)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


def render_html(text: str) -> str:
    """The safe HTML rendering of stored post text."""
    parts: list[str] = []
    start = 0
    # Links are cut out first so that emphasis marks never reach inside an href.
    for match in _LINK.finditer(text):
        parts.append(_inline(text[start : match.start()]))
        url = html.escape(match.group(0), quote=True)
        parts.append(f'<a href="{url}" rel="nofollow noopener ugc">{url}</a>')
        start = match.end()
    parts.append(_inline(text[start:]))
    return "".join(parts).replace("\n", "<br>")
