"""Slow consumers: a websocket whose subscribers fall behind is closed, not buffered without end.

Every subscription's events wait in a queue until the operation task sends
them. A client that stops reading blocks that task (the socket's write buffer
is full), and the queue would grow with every event of the thread. Each
websocket gets a :class:`SocketGuard` (in the context of its handler task, so
its operation tasks inherit it); queues made by ``Bus.subscribe`` under a
guard are :class:`BoundedInbox` queues. When one overflows, the events are
dropped and the socket is closed with 1013 (try again later): a client that
reconnects resumes from its last position, so nothing is lost. A client whose
socket cannot even take the close frame is cut off (transport aborted).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from ops import metrics

log = logging.getLogger("community.ws")

SLOW_CLOSE_CODE = 1013
SLOW_CLOSE_REASON = "Subscriber too slow"
CLOSE_WAIT_SECONDS = 1.0


class SocketGuard:
    """One websocket's limit on undelivered events, and how to close the socket."""

    def __init__(self, websocket: Any, max_events: int, abort: Callable[[], None] | None) -> None:
        self.websocket = websocket
        self.max_events = max_events
        self.abort = abort
        self.overflowed = False
        self._closer: asyncio.Task[None] | None = None

    def overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        metrics.SLOW_CONSUMERS.inc()
        log.warning("closing a websocket whose subscriber fell %s events behind", self.max_events)
        self._closer = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self.websocket.close(code=SLOW_CLOSE_CODE, reason=SLOW_CLOSE_REASON)
        except TimeoutError:
            # The client reads nothing, not even the close frame: cut it off.
            if self.abort is not None:
                self.abort()
        except Exception:  # already closing or closed: nothing left to do
            log.debug("slow websocket was already closing")


CURRENT_SOCKET: contextvars.ContextVar[SocketGuard | None] = contextvars.ContextVar(
    "community_socket", default=None
)


class BoundedInbox(asyncio.Queue[Any]):
    """A queue that never blocks its producer: past ``maxsize`` it drops and tells the guard."""

    def __init__(self, guard: SocketGuard) -> None:
        super().__init__(maxsize=guard.max_events)
        self.guard = guard

    def put_nowait(self, item: Any) -> None:
        if self.guard.overflowed:
            return
        try:
            super().put_nowait(item)
        except asyncio.QueueFull:
            self.guard.overflow()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)


def new_inbox() -> asyncio.Queue[Any]:
    """A subscriber's queue: bounded under a websocket's guard, unbounded for internal use."""
    guard = CURRENT_SOCKET.get()
    return BoundedInbox(guard) if guard is not None else asyncio.Queue()


def transport_abort(send: Any) -> Callable[[], None] | None:
    """uvicorn's ``send`` is a method of its protocol object: abort its transport (else None)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    return abort if callable(abort) else None
