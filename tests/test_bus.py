"""The broadcast bus against a private, restartable Redis.

Each known defect of broadcaster 0.3.1 with redis-py 8 is run twice, against
stock ``broadcaster.Broadcast`` (to prove the scenario shows the defect) and
against our :class:`subscriptions.bus.Bus` (which must not have it):

1. the first subscription in a fresh process never receives;
2. concurrent first subscribers of one channel overwrite each other;
3. a Redis restart kills the listener silently, so subscribers hang.

The Redis server here is private to this module (its own port and directory):
these tests kill and restart it, which must never happen to a shared Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import broadcaster
import pytest
from redis import asyncio as aioredis

from subscriptions.bus import Bus, ResilientRedisBackend
from tests.private_redis import PrivateRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary"
)

WAIT = 3.0  # longest wait for an event that must arrive
RESYNC = {"type": "resync"}  # what a subscriber gets once Redis confirms its channel again
QUIET = 1.5  # how long an event that must not arrive is awaited


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis(redis_server: PrivateRedis) -> PrivateRedis:
    """The private Redis, running (a test that killed it gets it back)."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    return redis_server


def channel(name: str) -> str:
    return f"test-bus:{uuid.uuid4().hex[:8]}:{name}"


async def raw_publish(url: str, name: str, message: str) -> int:
    """PUBLISH from a connection of its own; the number of receiving connections."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return int(await client.publish(name, message))
    finally:
        await client.aclose()


@asynccontextmanager
async def stock(url: str) -> AsyncIterator[broadcaster.Broadcast]:
    """Stock broadcaster with its stock RedisBackend."""
    b = broadcaster.Broadcast(url)
    await b.connect()
    try:
        yield b
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(b.disconnect(), 5)
        task = getattr(b._backend, "_listener", None)
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


@asynccontextmanager
async def ours(url: str, prefix: str = "") -> AsyncIterator[Bus]:
    bus = Bus(url, prefix)
    await bus.connect()
    try:
        yield bus
    finally:
        await asyncio.wait_for(bus.disconnect(), 5)


async def stock_warm_up(b: broadcaster.Broadcast, stack: contextlib.AsyncExitStack) -> None:
    """Get the stock listener running despite defect 1.

    The first subscription wakes the listener too early and it goes back to
    sleep; the second wakes it when a channel is subscribed. Both are kept
    open, so the listener keeps listening.
    """
    await stack.enter_async_context(b.subscribe(channel("warm-1")))
    name = channel("warm-2")
    warm = await stack.enter_async_context(b.subscribe(name))
    await asyncio.sleep(0.1)
    await b.publish(name, "warm")
    event = await asyncio.wait_for(warm.get(), WAIT)
    assert event.message == "warm"


async def receives(get: Any, timeout: float) -> Any | None:
    try:
        return await asyncio.wait_for(get(), timeout)
    except TimeoutError:
        return None


# ------------------------------------------------------------------ defect 1


async def test_first_subscription_in_a_fresh_broadcast_receives(redis: PrivateRedis) -> None:
    name = channel("first")
    async with stock(redis.url) as b, b.subscribe(name) as subscriber:
        await asyncio.sleep(0.2)  # generous: the stock listener has all the time it wants
        await b.publish(name, "hello")
        assert await receives(subscriber.get, QUIET) is None, (
            "stock broadcaster received on its first subscription: defect 1 did not reproduce"
        )

    async with ours(redis.url, "p:") as bus, bus.subscribe("first") as queue:
        # No sleep: subscribe returns once Redis confirmed the subscription.
        assert await bus.publish("first", {"n": 1}) is True
        assert await receives(queue.get, WAIT) == {"n": 1}


# ------------------------------------------------------------------ defect 2


async def gathered(subscribe: Any, publish: Any, count: int, wait: float) -> tuple[int, int]:
    """``count`` concurrent first subscribers; (how many received, how many raised)."""
    entered = 0
    go = asyncio.Event()

    async def one() -> bool:
        nonlocal entered
        async with subscribe() as get:
            entered += 1
            await go.wait()
            return await receives(get, wait) is not None

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    try:
        async with asyncio.timeout(10):
            while entered < count and not all(t.done() for t in tasks):
                await asyncio.sleep(0.01)
    finally:
        await publish()
        go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    received = sum(1 for r in results if r is True)
    raised = sum(1 for r in results if isinstance(r, BaseException))
    return received, raised


async def test_concurrent_first_subscribers_all_receive(redis: PrivateRedis) -> None:
    count = 250
    name = channel("crowd")
    async with stock(redis.url) as b, contextlib.AsyncExitStack() as stack:
        await stock_warm_up(b, stack)  # isolate defect 2 from defect 1

        @asynccontextmanager
        async def stock_subscribe() -> AsyncIterator[Any]:
            async with b.subscribe(name) as subscriber:
                yield subscriber.get

        async def stock_publish() -> None:
            await b.publish(name, "event")

        received, raised = await gathered(stock_subscribe, stock_publish, count, QUIET)
        # The last subscriber's set wins; the others never get the event and
        # raise KeyError when they leave.
        assert received < count, "stock broadcaster: defect 2 did not reproduce"
        assert raised > 0

    async with ours(redis.url, "p:") as bus:

        @asynccontextmanager
        async def our_subscribe() -> AsyncIterator[Any]:
            async with bus.subscribe("crowd") as queue:
                yield queue.get

        async def our_publish() -> None:
            assert await bus.publish("crowd", {"n": 1}) is True

        assert await gathered(our_subscribe, our_publish, count, WAIT) == (count, 0)
        assert bus.broadcast._subscribers == {}  # every subscriber left cleanly


async def test_every_subscriber_is_live_when_subscribe_returns(redis: PrivateRedis) -> None:
    """A subscriber that joins a channel whose SUBSCRIBE is still in flight waits for it.

    Each subscriber publishes from another connection the moment its
    ``subscribe`` returns: it must receive its own event.
    """
    async with ours(redis.url, "p:") as bus:

        async def one(n: int) -> dict[str, Any] | None:
            async with bus.subscribe("live") as queue:
                await raw_publish(redis.url, "p:live", f'{{"n": {n}}}')
                while True:
                    payload = await receives(queue.get, WAIT)
                    if payload is None or payload["n"] == n:
                        return payload

        results = await asyncio.gather(*(one(n) for n in range(20)))
        assert results == [{"n": n} for n in range(20)]


# ------------------------------------------------------------------ defect 3


async def publish_until_received(publish: Any, get: Any, deadline: float) -> Any | None:
    """Publish every 100 ms until the subscriber gets something, or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        await publish()
        got = await receives(get, 0.1)
        if got is not None:
            return got
    return None


async def test_subscriber_survives_a_redis_restart(
    redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="community.bus")
    name = channel("restart")

    async with stock(redis.url) as b, contextlib.AsyncExitStack() as stack:
        await stock_warm_up(b, stack)
        subscriber = await stack.enter_async_context(b.subscribe(name))
        await asyncio.sleep(0.1)
        await b.publish(name, "before")
        before = await receives(subscriber.get, WAIT)
        assert before is not None and before.message == "before"

        redis.restart()

        async def stock_publish() -> None:
            # From a fresh connection: stock's own publish may fail on its stale
            # pooled connection, and the subscribing side is what is tested.
            await raw_publish(redis.url, name, "after")

        got = await publish_until_received(stock_publish, subscriber.get, 3.0)
        assert got is None, "stock broadcaster survived the restart: defect 3 did not reproduce"
        listener: asyncio.Task[None] = getattr(b._backend, "_listener")  # noqa: B009
        assert listener.done(), "the stock listener should have died"
        # ... of a connection error that nobody logged.
        assert "Connection" in type(listener.exception()).__name__
        assert not [r for r in caplog.records if r.name.startswith("broadcaster")]

    caplog.clear()
    async with ours(redis.url, "p:") as bus, bus.subscribe("restart") as queue:
        assert await bus.publish("restart", {"n": "before"}) is True
        assert await receives(queue.get, WAIT) == {"n": "before"}

        redis.restart()

        async def our_publish() -> None:
            await bus.publish("restart", {"n": "after"})

        # Once Redis confirms the channel again, its subscribers are told to re-read
        # (what was published meanwhile is lost), before any new event.
        assert await receives(queue.get, 5.0) == RESYNC
        assert await publish_until_received(our_publish, queue.get, 5.0) == {"n": "after"}
        assert isinstance(bus.backend, ResilientRedisBackend)
        assert bus.backend.reconnects == 1
        messages = [r.getMessage() for r in caplog.records if r.name == "community.bus"]
        assert any("lost its Redis connection" in m for m in messages), messages
        assert any("reconnected to Redis and resubscribed to 1 channel" in m for m in messages)


async def test_publish_and_ready_while_redis_is_down(
    redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    async with ours(redis.url, "p:") as bus, bus.subscribe("down") as queue:
        assert await bus.ready() is True

        redis.kill()
        started = time.monotonic()
        assert await bus.publish("down", {"n": 1}) is False  # no exception
        assert await bus.ready() is False
        assert time.monotonic() - started < 5, "a dead Redis must fail fast"
        assert bus.publish_failures == 1
        assert any("publish failed" in r.getMessage() for r in caplog.records)

        redis.start()
        deadline = time.monotonic() + 5
        while not await bus.ready():
            assert time.monotonic() < deadline, "the bus never became ready again"
            await asyncio.sleep(0.05)
        # Ready means live again: the next event arrives at once, the lost one never;
        # a resync comes first, once.
        assert await bus.publish("down", {"n": 2}) is True
        assert await receives(queue.get, WAIT) == RESYNC
        assert await receives(queue.get, WAIT) == {"n": 2}
        await asyncio.sleep(0.2)
        assert queue.empty()


async def test_subscribing_while_redis_is_down_goes_live_when_it_returns(
    redis: PrivateRedis,
) -> None:
    """A channel first subscribed while Redis is down is subscribed when it returns."""
    async with ours(redis.url, "p:") as bus, bus.subscribe("held") as held:
        redis.kill()
        await asyncio.sleep(0.5)  # the listener notices the loss
        started = time.monotonic()
        async with bus.subscribe("late") as queue:
            # Subscribing does not hang while Redis is down (streams replay).
            assert time.monotonic() - started < 5
            assert await bus.ready() is False
            redis.start()

            async def publish() -> None:
                await bus.publish("late", {"n": 1})

            assert await receives(queue.get, 5.0) == RESYNC
            assert await publish_until_received(publish, queue.get, 5.0) == {"n": 1}
            assert await bus.publish("held", {"n": 2}) is True
            assert await receives(held.get, WAIT) == RESYNC
            assert await receives(held.get, WAIT) == {"n": 2}
        assert set(bus.broadcast._subscribers) == {"p:held"}


async def test_unsubscribed_channels_are_released_in_redis(redis: PrivateRedis) -> None:
    async with ours(redis.url, "p:") as bus:
        async with bus.subscribe("a", "b") as queue:
            assert await raw_publish(redis.url, "p:a", '{"n": 1}') == 1
            assert await receives(queue.get, WAIT) == {"n": 1}
        deadline = time.monotonic() + WAIT
        while await raw_publish(redis.url, "p:a", '{"n": 2}') != 0:
            assert time.monotonic() < deadline, "the channel stayed subscribed"
            await asyncio.sleep(0.05)
        # Resubscribing the same channel works again at once.
        async with bus.subscribe("a") as queue:
            assert await raw_publish(redis.url, "p:a", '{"n": 3}') == 1
            assert await receives(queue.get, WAIT) == {"n": 3}


async def test_memory_bus_needs_no_redis() -> None:
    async with ours("memory://", "m:") as bus, bus.subscribe("x", "y") as queue:
        assert await bus.ready() is True
        assert await bus.publish("y", {"n": 1}) is True
        assert await receives(queue.get, WAIT) == {"n": 1}
        assert await bus.publish("z", {"n": 2}) is True  # nobody listens: dropped
        assert await receives(queue.get, 0.2) is None
