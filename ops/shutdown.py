"""Graceful shutdown: finish in-flight writes, close websockets with 1001, then stop.

uvicorn, on SIGTERM, closes websockets itself with 1012 (service restart)
before the application hears of it, and cancels operations on them. The
server process instead wraps uvicorn's signal handler (at lifespan startup,
so it works the same with one worker or several): on the first SIGTERM or
SIGINT it stops taking new websockets and new websocket operations, waits
until the mutations being executed have committed (at most
``SHUTDOWN_GRACE_SECONDS``), closes every websocket with 1001 (going away),
and only then hands the signal to uvicorn, which finishes in-flight HTTP
requests before it stops. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("community.shutdown")

GOING_AWAY = 1001
GOING_AWAY_REASON = "Server shutting down"


class Drain:
    """Open websockets and in-flight writes of this process."""

    def __init__(self) -> None:
        self.sockets: set[Any] = set()
        self.writes = 0
        self.draining = False
        self._idle: asyncio.Event | None = None
        self._report: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    def _idle_event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @contextlib.contextmanager
    def write(self) -> Any:
        """Around the execution of a mutation."""
        self.writes += 1
        self._idle_event().clear()
        try:
            yield
        finally:
            self.writes -= 1
            if self.writes == 0:
                self._idle_event().set()

    async def drain(self, grace: float) -> None:
        self.draining = True
        try:
            async with asyncio.timeout(grace):
                await self._idle_event().wait()
        except TimeoutError:
            log.error("shutdown: %s writes still running after %.0f s", self.writes, grace)
        sockets = list(self.sockets)
        for socket in sockets:
            with contextlib.suppress(Exception):  # already closing
                async with asyncio.timeout(1):
                    await socket.close(code=GOING_AWAY, reason=GOING_AWAY_REASON)
        log.info("shutdown: closed %d websockets", len(sockets))

    def install(self, grace: float) -> None:
        """Wrap the server's SIGTERM/SIGINT handlers (call from the running loop)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                signal.signal(sig, self._handler(loop, previous, grace))

    def _handler(
        self,
        loop: asyncio.AbstractEventLoop,
        previous: Callable[[int, FrameType | None], Any],
        grace: float,
    ) -> Callable[[int, FrameType | None], None]:
        def handle(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                previous(signum, frame)  # a second signal: stop now
                return

            async def drain_then_stop() -> None:
                try:
                    await self.drain(grace)
                finally:
                    previous(signum, frame)
                    self._report = loop.create_task(report_stragglers(STRAGGLER_SECONDS))

            self.draining = True
            loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop()))

        return handle


STRAGGLER_SECONDS = 5.0


async def report_stragglers(after: float) -> None:
    """Log where every task still running this long after the signal is waiting.

    uvicorn waits for request tasks to end by themselves before it cancels
    them; one that does not end is a bug, and this names it in the log.
    """
    await asyncio.sleep(after)
    me = asyncio.current_task()
    stragglers = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
    for task in stragglers:
        out = io.StringIO()
        task.print_stack(file=out)
        log.warning("shutdown: still running after %.0f s: %s", after, out.getvalue())


DRAIN = Drain()
