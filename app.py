"""The ASGI application: routes, the lifespan that opens both registers and the bus.

Serve it with ``community serve`` (which applies migrations first) or
``uvicorn app:app``. Configuration comes only from environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from tortoise.connection import get_connection
from tortoise.contrib.starlette import RegisterTortoise

from config import Settings, get_settings
from ops.http import Observability, metrics_endpoint
from ops.logs import configure as configure_logging
from ops.shutdown import DRAIN
from resolvers.mail import MailWorker
from schema import create_schema
from schema.http import BodySizeLimit, CommunityGraphQL
from subscriptions.bus import Bus, get_bus, set_bus
from subscriptions.connections import CONNECTIONS

log = logging.getLogger("community.app")


async def database_ready(name: str) -> bool:
    try:
        async with asyncio.timeout(3):
            await get_connection(name).execute_query("SELECT 1")
        return True
    except Exception:  # any failure means "not ready"; the probe must answer, not raise
        return False


async def healthz(request: Request) -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Both registers and the broadcast bus are reachable."""
    checks = {
        "community": await database_ready("community"),
        "contacts": await database_ready("contacts"),
        "bus": await get_bus().ready(),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def every(seconds: float, job: Callable[[], Awaitable[object]], stop: asyncio.Event) -> None:
    """Run ``job`` every ``seconds`` until ``stop`` (the first run after one period)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
        if stop.is_set():
            return
        try:
            await job()
        except Exception:  # the loop must outlive one failed round
            log.exception("scheduled job %s failed", getattr(job, "__name__", job))


def create_app(settings: Settings | None = None, attach: bool = False) -> Starlette:
    """The application; ``attach=True`` serves with the databases and bus this process
    already has open (tests run a second server with other limits beside the first)."""
    settings = settings or get_settings()
    settings.validate()
    if not logging.getLogger().handlers:
        # A worker process spawned by uvicorn's supervisor starts unconfigured.
        configure_logging(settings.log_format, settings.log_level)
    graphql = CommunityGraphQL(
        create_schema(settings),
        settings,
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        # Our handlers close the socket (4429) at the limit; Strawberry's own
        # check (an error message) stays as a backstop one above it.
        max_subscriptions_per_connection=settings.ws_max_subscriptions + 1,
        allowed_origins=settings.allowed_origins,
    )

    @contextlib.asynccontextmanager
    async def attached(app: Starlette) -> AsyncIterator[None]:
        yield

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=settings.tortoise_config()):
            # Tortoise connects lazily: fail at start, not at the first request.
            for name in ("community", "contacts"):
                await get_connection(name).execute_query("SELECT 1")
            bus = Bus(settings.broadcast_url, settings.channel_prefix)
            await bus.connect()
            set_bus(bus)
            stop = asyncio.Event()
            DRAIN.draining = False
            DRAIN.install(settings.shutdown_grace_seconds)
            closer = asyncio.create_task(CONNECTIONS.run(bus), name="connections")
            from resolvers.lifecycle import run_lifecycle
            from resolvers.studies import run_research_job

            research = asyncio.create_task(
                every(settings.research_job_seconds, run_research_job, stop), name="research-job"
            )
            lifecycle = asyncio.create_task(
                every(settings.lifecycle_job_seconds, run_lifecycle, stop), name="lifecycle"
            )
            worker = (
                asyncio.create_task(MailWorker(settings).run(stop), name="mail-worker")
                if settings.mail_worker
                else None
            )
            try:
                yield
            finally:
                stop.set()
                for task in (closer, research, lifecycle):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if worker is not None:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                await bus.disconnect()
                set_bus(None)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
        middleware=[
            Middleware(Observability),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=attached if attach else lifespan,
    )


def __getattr__(name: str) -> Starlette:
    # ``uvicorn app:app`` builds the app on first access, so importing this
    # module (tests, tools) reads no environment and opens nothing.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
