"""The broadcast bus: broadcaster, made correct for redis-py 8 and restarts.

broadcaster 0.3.1 has three defects with redis-py 8 (see the README):
1. its Redis backend wakes the listener before SUBSCRIBE is sent, so the first
   subscription of a process never receives;
2. ``Broadcast.subscribe`` awaits the backend before registering the queue,
   so concurrent first subscribers of a channel overwrite each other;
3. a Redis restart kills the listener task silently.

:class:`ResilientRedisBackend` owns its pub/sub connection: one listener task
reads it, every (un)subscription is written under one lock, and when the
connection fails the listener logs it, backs off, opens a new connection and
subscribes again to every wanted channel (and logs that too). A subscription
returns once Redis has confirmed it (or after a short wait while Redis is
down), so an event published after ``subscribe`` returns is delivered.
Whatever was published while a channel was not subscribed is lost, so once
Redis confirms a channel again after an outage, its subscribers get a
``{"type": "resync"}`` message: every stream re-reads the database then,
instead of at the next event or its periodic resync.
:class:`SafeBroadcast` registers each subscriber's queue before any await.
Publishing never raises: the bus is at-most-once and every stream replays
from the database, so a failed publish only delays delivery until the
subscriber's next replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlparse

from broadcaster import Broadcast, Event
from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ops import metrics
from subscriptions.guard import new_inbox

log = logging.getLogger("community.bus")

_ERRORS = (RedisError, OSError)
RESYNC = json.dumps({"type": "resync"})  # to a channel's subscribers after an outage


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ResilientRedisBackend(BroadcastBackend):
    """Redis pub/sub backend that never loses its listener nor its subscriptions."""

    read_timeout = 1.0  # the listener wakes at least this often
    ping_after = 10.0  # a silent connection is pinged after this long ...
    pong_timeout = 5.0  # ... and given up when the pong does not come
    confirm_timeout = 2.0  # longest wait for Redis to confirm a subscription
    max_backoff = 2.0

    def __init__(self, url: str) -> None:
        self.url = url
        # PUBLISH and PING: one quick retry replaces a pooled connection that
        # died with a Redis restart; more would only delay the failure.
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        # The pub/sub connection never retries inside redis-py: the listener
        # replaces it, so what is subscribed is always what this class wrote.
        self._pool = aioredis.ConnectionPool.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        self._conn: AbstractConnection | None = None
        self._wanted: set[str] = set()  # channels with subscribers in this process
        self._sent: set[str] = set()  # SUBSCRIBE written on the current connection
        self._unconfirmed: Counter[str] = Counter()  # SUBSCRIBEs not yet confirmed
        self._confirmations: dict[str, asyncio.Event] = {}
        self._resync: set[str] = set()  # channels resubscribed after an outage
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listener: asyncio.Task[None] | None = None
        self._lost = False
        self._last_seen = 0.0
        self._ping_sent: float | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-bus-listener")

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._conn is not None:
            await self._close(self._conn)
            self._conn = None
        await self._pool.aclose()
        await self._client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Subscribe (idempotent); returns once Redis confirmed, or after a short wait."""
        self._wanted.add(channel)
        self._wake.set()
        conn = self._conn
        if conn is not None:
            try:
                await self._sync(conn)
            except _ERRORS as exc:
                await self._abandon(conn, exc)
        if self._confirmed(channel):
            return
        confirmed = self._confirmations.setdefault(channel, asyncio.Event())
        try:
            async with asyncio.timeout(self.confirm_timeout):
                await confirmed.wait()
        except TimeoutError:
            # Redis is down: the listener subscribes when it is back, and the
            # streams replay from the database, so carry on.
            log.info("bus subscription to %s not confirmed yet (Redis unreachable)", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._confirmations.pop(channel, None)  # nobody waits: the last subscriber left
        conn = self._conn
        if conn is not None:
            try:
                await self._sync(conn)
            except _ERRORS as exc:
                await self._abandon(conn, exc)

    async def publish(self, channel: str, message: Any) -> None:
        await self._client.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def ready(self) -> bool:
        """Redis answers, and the subscriptions of this process are live."""
        if not await self._client.ping():
            return False
        return not self._wanted or (self._conn is not None and not self._lost)

    # --- the listener -------------------------------------------------------

    def _confirmed(self, channel: str) -> bool:
        return channel in self._sent and self._unconfirmed.get(channel, 0) <= 0

    async def _sync(self, conn: AbstractConnection) -> None:
        """Make what is subscribed on ``conn`` what is wanted (one writer at a time)."""
        async with self._lock:
            if conn is not self._conn:
                return
            missing = sorted(self._wanted - self._sent)
            extra = sorted(self._sent - self._wanted)
            if missing:
                self._sent.update(missing)
                self._unconfirmed.update(missing)
                await conn.send_command("SUBSCRIBE", *missing)
            if extra:
                self._sent.difference_update(extra)
                await conn.send_command("UNSUBSCRIBE", *extra)

    async def _open(self) -> AbstractConnection:
        async with self._lock:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            channels = sorted(self._wanted)
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                if channels:
                    await conn.send_command("SUBSCRIBE", *channels)
            except BaseException:
                await self._close(conn)
                raise
            self._conn = conn
            self._sent = set(channels)
            self._unconfirmed = Counter(channels)
            if self._lost:  # events published meanwhile were lost: wake every stream
                self._resync = set(channels)
            self._last_seen = asyncio.get_running_loop().time()
            self._ping_sent = None
        if self._lost:
            self._lost = False
            self.reconnects += 1
            log.warning("bus reconnected to Redis and resubscribed to %d channel(s)", len(channels))
        return conn

    async def _abandon(self, conn: AbstractConnection, exc: BaseException) -> None:
        """Give up ``conn``: the listener opens a new one and subscribes again."""
        async with self._lock:
            if conn is self._conn:
                self._conn = None
                self._sent = set()
                self._unconfirmed = Counter()
        if not self._lost:
            self._lost = True
            log.warning(
                "bus lost its Redis connection (%s: %s); reconnecting",
                type(exc).__name__,
                exc,
            )
        await self._close(conn)

    @staticmethod
    async def _close(conn: AbstractConnection) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            conn = self._conn
            try:
                if conn is None:
                    if not self._wanted:
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    conn = await self._open()
                    backoff = 0.1
                await self._sync(conn)
                response = await conn.read_response(timeout=self.read_timeout, push_request=True)
                if conn is not self._conn:
                    raise RedisConnectionError("connection abandoned after a failed write")
                await self._handle(conn, response)
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                if conn is not None:
                    await self._abandon(conn, exc)
                elif not self._lost:
                    self._lost = True
                    log.warning(
                        "bus cannot reach Redis (%s: %s); retrying", type(exc).__name__, exc
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _handle(self, conn: AbstractConnection, response: Any) -> None:
        now = asyncio.get_running_loop().time()
        if response is None:  # nothing within read_timeout: keep the connection honest
            if self._ping_sent is None and now - self._last_seen > self.ping_after:
                async with self._lock:
                    await conn.send_command("PING")
                self._ping_sent = now
            elif self._ping_sent is not None and now - self._ping_sent > self.pong_timeout:
                raise RedisConnectionError("Redis did not answer PING")
            return
        self._last_seen = now
        self._ping_sent = None
        if not isinstance(response, list) or len(response) < 2:
            return  # PONG outside subscribed mode
        kind = _text(response[0])
        if kind == "message" and len(response) == 3:
            await self._queue.put(Event(channel=_text(response[1]), message=_text(response[2])))
        elif kind == "subscribe":
            channel = _text(response[1])
            self._unconfirmed[channel] -= 1
            if self._unconfirmed[channel] <= 0:
                del self._unconfirmed[channel]
            if self._confirmed(channel):
                confirmed = self._confirmations.pop(channel, None)
                if confirmed is not None:
                    confirmed.set()
                if channel in self._resync:
                    self._resync.discard(channel)
                    await self._queue.put(Event(channel=channel, message=RESYNC))


class SafeBroadcast(Broadcast):
    """``Broadcast`` whose subscribe registers the queue before any await (defect 2).

    Every subscriber, not only the first, waits for the backend's subscription
    (idempotent), so an event published after ``subscribe`` returns reaches it.
    """

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Any]:
        from broadcaster._base import Subscriber

        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
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
            metrics.EVENTS_PUBLISHED.inc()
            return True
        except (RedisError, OSError) as exc:
            self.publish_failures += 1
            metrics.PUBLISH_FAILURES.inc()
            log.warning("bus publish failed (%s); subscribers will replay", type(exc).__name__)
            return False

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of payloads from all ``channels``, registered before this returns."""
        # Under a websocket's guard the queue is bounded: a subscriber that
        # falls too far behind has its socket closed (subscriptions.guard).
        merged: asyncio.Queue[dict[str, Any]] = new_inbox()
        async with _Merged(self.broadcast, [self.prefix + c for c in channels], merged):
            yield merged

    async def ready(self) -> bool:
        """False while Redis is unreachable or this process's subscriptions are not live."""
        if isinstance(self.backend, ResilientRedisBackend):
            try:
                async with asyncio.timeout(2):
                    return await self.backend.ready()
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
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> _Merged:
        async with AsyncExitStack() as stack:
            for channel in self.channels:
                subscriber = await stack.enter_async_context(self.broadcast.subscribe(channel))
                self.tasks.append(asyncio.create_task(self._pump(subscriber)))
            self._stack = stack.pop_all()
        return self

    async def _pump(self, subscriber: Any) -> None:
        async for event in subscriber:
            if event is None:
                return
            try:
                self.out.put_nowait(json.loads(event.message))
            except ValueError:
                log.warning("bus dropped a malformed event")

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._stack.aclose()


_bus: Bus | None = None


def get_bus() -> Bus:
    if _bus is None:
        raise RuntimeError("the broadcast bus is not open")
    return _bus


def set_bus(bus: Bus | None) -> None:
    global _bus
    _bus = bus
