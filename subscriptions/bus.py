"""The broadcast bus: broadcaster, made correct for redis-py 8 and restarts.

broadcaster 0.3.1 has three defects with redis-py 8 (see the README):
1. its Redis backend wakes the listener before SUBSCRIBE is sent, so the first
   subscription of a process never receives;
2. ``Broadcast.subscribe`` awaits the backend before registering the queue,
   so concurrent first subscribers of a channel overwrite each other;
3. a Redis restart kills the listener task silently.

:class:`ResilientRedisBackend` subscribes before waking the listener and
reconnects with backoff (redis-py resubscribes its channels on reconnect);
:class:`SafeBroadcast` registers each subscriber's queue before any await.
Publishing never raises: the bus is at-most-once and every stream replays
from the database, so a failed publish only delays delivery until the
subscriber's next replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

from broadcaster import Broadcast, Event
from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("community.bus")


class ResilientRedisBackend(BroadcastBackend):
    """Redis pub/sub backend that never loses its listener."""

    def __init__(self, url: str) -> None:
        self._conn = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, health_check_interval=10
        )
        self._pubsub = self._conn.pubsub()
        self._has_channels = asyncio.Event()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listener: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-bus-listener")

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        # Subscribe first, then wake the listener (defect 1).
        try:
            await self._pubsub.subscribe(channel)
        except (RedisError, OSError) as exc:
            # redis-py remembers the channel and subscribes again on reconnect.
            log.warning("bus subscribe deferred until Redis is back: %s", type(exc).__name__)
        self._has_channels.set()

    async def unsubscribe(self, channel: str) -> None:
        try:
            await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError):
            pass

    async def publish(self, channel: str, message: Any) -> None:
        await self._conn.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def ping(self) -> bool:
        return bool(await self._conn.ping())

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            await self._has_channels.wait()
            try:
                if not self._pubsub.subscribed:
                    # Nothing to listen to (all unsubscribed): wait for a subscription.
                    self._has_channels.clear()
                    continue
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
                if backoff > 0.1:
                    log.info("bus reconnected to Redis")
                    self.reconnects += 1
                    backoff = 0.1
                if message is not None and message["type"] == "message":
                    channel = message["channel"]
                    data = message["data"]
                    await self._queue.put(
                        Event(
                            channel=channel.decode() if isinstance(channel, bytes) else channel,
                            message=data.decode() if isinstance(data, bytes) else data,
                        )
                    )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # Defect 3: log, back off, and let redis-py reconnect and resubscribe.
                log.warning("bus lost Redis (%s); retrying in %.1fs", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        channels = list(self._pubsub.channels)
        if not channels:
            return
        try:
            await self._pubsub.subscribe(
                *[c.decode() if isinstance(c, bytes) else c for c in channels]
            )
        except (RedisError, OSError):
            pass


class SafeBroadcast(Broadcast):
    """``Broadcast`` whose subscribe registers the queue before any await (defect 2)."""

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Any]:
        from broadcaster._base import Subscriber

        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        first = channel not in self._subscribers
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            if first:
                await self._backend.subscribe(channel)
            yield Subscriber(queue)
        finally:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[channel]
                    await self._backend.unsubscribe(channel)
            await queue.put(None)


class Bus:
    """The project's one place to publish and subscribe (JSON payloads, prefixed channels)."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        scheme = urlparse(url).scheme
        self.backend: BroadcastBackend
        if scheme in ("redis", "rediss"):
            self.backend = ResilientRedisBackend(url)
        elif scheme == "memory":
            self.backend = MemoryBackend(url)
        else:
            raise ValueError(f"unsupported broadcast URL scheme: {scheme}")
        self.broadcast = SafeBroadcast(backend=self.backend)
        self.publish_failures = 0

    async def connect(self) -> None:
        await self.broadcast.connect()

    async def disconnect(self) -> None:
        await self.broadcast.disconnect()

    async def publish(self, channel: str, payload: dict[str, Any]) -> bool:
        """Publish; never raises. False when the bus could not take the event."""
        try:
            await self.broadcast.publish(self.prefix + channel, json.dumps(payload))
            return True
        except (RedisError, OSError) as exc:
            self.publish_failures += 1
            log.warning("bus publish failed (%s); subscribers will replay", type(exc).__name__)
            return False

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of payloads from all ``channels``, registered before this returns."""
        merged: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        async with _Merged(self.broadcast, [self.prefix + c for c in channels], merged):
            yield merged

    async def ready(self) -> bool:
        if isinstance(self.backend, ResilientRedisBackend):
            try:
                return await asyncio.wait_for(self.backend.ping(), timeout=2)
            except (RedisError, OSError, TimeoutError):
                return False
        return True


class _Merged:
    """Subscribe to several channels and pump their events into one queue."""

    def __init__(
        self, broadcast: SafeBroadcast, channels: list[str], out: asyncio.Queue[Any]
    ) -> None:
        self.broadcast = broadcast
        self.channels = channels
        self.out = out
        self.tasks: list[asyncio.Task[None]] = []
        self._stack: list[Any] = []

    async def __aenter__(self) -> _Merged:
        for channel in self.channels:
            context = self.broadcast.subscribe(channel)
            subscriber = await context.__aenter__()
            self._stack.append(context)
            self.tasks.append(asyncio.create_task(self._pump(subscriber)))
        return self

    async def _pump(self, subscriber: Any) -> None:
        async for event in subscriber:
            if event is None:
                return
            try:
                await self.out.put(json.loads(event.message))
            except ValueError:
                log.warning("bus dropped a malformed event")

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        for context in reversed(self._stack):
            await context.__aexit__(None, None, None)


_bus: Bus | None = None


def get_bus() -> Bus:
    if _bus is None:
        raise RuntimeError("the broadcast bus is not open")
    return _bus


def set_bus(bus: Bus | None) -> None:
    global _bus
    _bus = bus
