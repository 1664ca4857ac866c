"""Fixed-window counters per keyed hash (the sign-in throttle's table, reused).

Only keyed hashes are stored (``crypto.throttle_key``): an account, a client
address or a member, never the name or address itself.
"""

from __future__ import annotations

from datetime import timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models.community import LoginThrottle
from resolvers import clock


async def count_in_window(key: str, seconds: int) -> tuple[int, int]:
    """Count one more for ``key`` in its fixed window of ``seconds``, atomically.

    Returns (the count in this window, seconds left in it). A window that has
    ended starts again.
    """
    now = clock.now()
    window = timedelta(seconds=seconds)
    # A window that has ended starts again; otherwise one more attempt in it.
    restarted = await LoginThrottle.filter(key=key, window_started_at__lte=now - window).update(
        failures=1, window_started_at=now
    )
    if not restarted and not await LoginThrottle.filter(key=key).update(failures=F("failures") + 1):
        try:
            await LoginThrottle.create(key=key, failures=1, window_started_at=now)
        except IntegrityError:  # a concurrent first attempt created it a moment ago
            await LoginThrottle.filter(key=key).update(failures=F("failures") + 1)
    row = await LoginThrottle.get(key=key)
    left = int((row.window_started_at + window - now).total_seconds())
    return row.failures, max(1, left)
