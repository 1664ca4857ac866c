"""Open websockets by member, so that a ban (or an account lock) closes them at once.

Each worker keeps its own registry and listens on one bus channel; closing
a member's connections is a publish that every worker acts on. Closing the
socket ends every subscription on it: the client sees close code 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from subscriptions.bus import Bus, get_bus

log = logging.getLogger("community.connections")

CONNECTIONS_CHANNEL = "connections"
CLOSE_CODE = 4403  # graphql-transport-ws: Forbidden
CLOSE_REASON = "Membership ended"


class ConnectionRegistry:
    def __init__(self) -> None:
        self.sockets: dict[int, set[Any]] = {}
        # Called with a member id when a membership ends: in-memory caches drop the member.
        self.forget_hooks: list[Callable[[int], None]] = []

    def forget(self, member_id: int) -> None:
        for hook in self.forget_hooks:
            try:
                hook(member_id)
            except Exception:  # one cache must not keep the others from forgetting
                log.exception("forget hook failed")

    def add(self, member_id: int, socket: Any) -> None:
        self.sockets.setdefault(member_id, set()).add(socket)

    def discard(self, member_id: int, socket: Any) -> None:
        sockets = self.sockets.get(member_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.sockets[member_id]

    async def close_member(self, member_id: int) -> int:
        closed = 0
        for socket in list(self.sockets.pop(member_id, ())):
            with contextlib.suppress(Exception):  # already closing: nothing to do
                await socket.close(code=CLOSE_CODE, reason=CLOSE_REASON)
                closed += 1
        return closed

    async def run(self, bus: Bus, ready: asyncio.Event | None = None) -> None:
        """Act on close requests from every worker, until cancelled."""
        async with bus.subscribe(CONNECTIONS_CHANNEL) as queue:
            if ready is not None:
                ready.set()
            while True:
                message = await queue.get()
                kind = message.get("type")
                if kind == "resync":  # the bus was down: requests sent meanwhile are lost
                    continue
                try:
                    member_id = int(message["member"])
                except (KeyError, TypeError, ValueError):
                    log.warning("bad request on the connections channel")
                    continue
                if kind == "close":
                    await self.close_member(member_id)
                elif kind == "forget":
                    self.forget(member_id)


CONNECTIONS = ConnectionRegistry()


async def forget_member_everywhere(member_id: int) -> None:
    """A membership ended: every worker's caches drop what they hold of the member."""
    CONNECTIONS.forget(member_id)
    await get_bus().publish(CONNECTIONS_CHANNEL, {"type": "forget", "member": member_id})


async def close_member_connections(member_id: int) -> None:
    """Close the member's websockets on every worker (this one at once)."""
    await CONNECTIONS.close_member(member_id)
    await get_bus().publish(CONNECTIONS_CHANNEL, {"type": "close", "member": member_id})
