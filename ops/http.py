"""The outermost ASGI layer: request ids, request metrics, and the websocket's transport.

It gives every HTTP request and websocket a request id (the client's
``X-Request-ID`` when it is a short token, else a new one), sets it for the
logs, and returns it in the response headers. It counts requests and their
latency by route and open websockets, and remembers how to abort a
websocket's transport (for :mod:`subscriptions.guard`).
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops import metrics
from ops.logs import REQUEST_ID, redact
from subscriptions.guard import transport_abort

ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _SAFE_ID.match(candidate) and redact(candidate) == candidate:
                return candidate
            break
    return uuid.uuid4().hex


class Observability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        token = REQUEST_ID.set(request_id)
        try:
            if kind == "websocket":
                scope.setdefault("state", {})["transport_abort"] = transport_abort(send)
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, request_id)
        finally:
            REQUEST_ID.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        started = time.perf_counter()
        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text; with METRICS_TOKEN set, only for ``Authorization: Bearer <token>``."""
    from config import get_settings
    from resolvers.mail import outbox_counts
    from subscriptions.bus import get_bus

    token = get_settings().metrics_token
    if token and request.headers.get("authorization", "") != f"Bearer {token}":
        return PlainTextResponse("unauthorized\n", status_code=401)
    try:
        for state, value in (await outbox_counts()).items():
            metrics.OUTBOX_BACKLOG.labels(state).set(value)
    except Exception:  # a database outage must not hide the other metrics
        metrics.OUTBOX_BACKLOG.labels("pending").set(float("nan"))
    metrics.BUS_READY.set(1 if await get_bus().ready() else 0)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
