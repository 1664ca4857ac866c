"""The one clock of business logic (tests move it to prove expiry and purges)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    return datetime.now(UTC) + _offset


def today() -> datetime:
    """Midnight (UTC) of today: the only precision the contacts register keeps.

    Times in the contacts register would line up, to the millisecond, with the
    pseudonymous member's times in the community register and link the two
    without any key; a day is shared by everyone who joined that day.
    """
    return now().replace(hour=0, minute=0, second=0, microsecond=0)


def hour_after(moment: datetime) -> datetime:
    """The next full hour after ``moment`` (expiry times that do not pin a second)."""
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def move(delta: timedelta) -> None:
    """Move the clock forward (tests only)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = timedelta(0)
