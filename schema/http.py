"""The GraphQL endpoint: HTTP (GraphQL-over-HTTP media types) and websockets.

Authentication: ``Authorization: Bearer <token>`` on HTTP; on websockets the
token comes in the ``connection_init`` payload (``{"authorization": "Bearer
<token>"}`` or ``{"token": "<token>"}``), or in the handshake's header.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import HTTPMethod
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET

from config import Settings
from ops import metrics
from ops.shutdown import DRAIN, GOING_AWAY, GOING_AWAY_REASON
from resolvers.sessions import access_session, reload_session
from schema.context import Context, language_from_header
from schema.documents import DocumentStore, requested_document_id
from schema.limits import UNAVAILABLE_MESSAGE, is_unavailable
from subscriptions.connections import CONNECTIONS
from subscriptions.guard import CURRENT_SOCKET, SocketGuard

GRAPHQL_RESPONSE = "application/graphql-response+json"
log = logging.getLogger("community.http")


def bearer(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


def prefers_graphql_response(accept: str | None) -> bool:
    """True when Accept ranks application/graphql-response+json above application/json."""
    best: dict[str, tuple[float, int]] = {}
    for position, part in enumerate((accept or "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best.setdefault(media.lower(), (quality, -position))
    graphql = best.get(GRAPHQL_RESPONSE, (0.0, 0))
    json = max(best.get("application/json", (0.0, 0)), best.get("*/*", (0.0, -999)))
    return graphql[0] > 0 and graphql > json


class RequestError(HTTPException):
    """A request the endpoint cannot run: a status, a machine code, a message."""

    def __init__(self, status_code: int, code: str, reason: str) -> None:
        super().__init__(status_code, reason)
        self.code = code


_STATUS_CODES = {405: "METHOD_NOT_ALLOWED", 404: "NOT_FOUND", 415: "UNSUPPORTED_MEDIA_TYPE"}


def error_code(exc: HTTPException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    if exc.reason == "Batching is not enabled":
        return "BATCHING_NOT_SUPPORTED"
    return _STATUS_CODES.get(exc.status_code, "BAD_REQUEST")


class TokenBucket:
    """``burst`` messages at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _closed(adapter: Any) -> bool:
    socket = getattr(adapter, "ws", None)
    return socket is not None and socket.application_state == WebSocketState.DISCONNECTED


class _Limits:
    """What both websocket protocols share: message rate, operation count, documents."""

    view: Any  # the CommunityGraphQL view (typed in the protocol base classes)
    websocket: Any
    bucket: TokenBucket | None = None
    closing = False

    def _bucket(self) -> TokenBucket:
        if self.bucket is None:
            settings = self.view.settings
            self.bucket = TokenBucket(settings.ws_messages_per_second, settings.ws_message_burst)
        return self.bucket

    async def _refuse(self, code: int, reason: str) -> None:
        self.closing = True
        metrics.WEBSOCKET_CLOSES.labels(str(code)).inc()
        await self.websocket.close(code=code, reason=reason)

    async def _admit(self, message: Any, starts: str, running: int) -> str | None:
        """None to go on; else the message was answered (socket closed or error sent)."""
        if self.closing:
            return "closing"
        if not self._bucket().take():
            await self._refuse(4429, "Too many messages")
            return "flood"
        if not isinstance(message, dict):
            await self._refuse(4400, "Messages must be JSON objects")
            return "invalid"
        if message.get("type") != starts:
            return None
        if DRAIN.draining:
            await self._refuse(GOING_AWAY, GOING_AWAY_REASON)
            return "draining"
        if running >= self.view.settings.ws_max_subscriptions:
            await self._refuse(4429, "Too many subscriptions")
            return "too many"
        payload = message.get("payload")
        if isinstance(payload, dict):
            socket = getattr(self.websocket, "ws", self.websocket)
            problem = self.view.resolve_document(payload, self.view.is_staff(socket))
            if problem is not None:
                await self._send_error(message.get("id"), problem)
                return "refused"
        return None

    async def _send_error(self, op_id: Any, problem: RequestError) -> None:
        raise NotImplementedError


class TransportWSHandler(_Limits, BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_message(self, message: Any) -> None:
        if await self._admit(message, "subscribe", len(self.operations)) is None:
            await super().handle_message(message)

    async def _send_error(self, op_id: Any, problem: RequestError) -> None:
        metrics.GRAPHQL_ERRORS.labels(problem.code).inc()
        await self.send_message(
            {
                "id": str(op_id),
                "type": "error",
                "payload": [{"message": problem.reason, "extensions": {"code": problem.code}}],
            }
        )

    async def run_operation(self, operation: Any) -> None:
        metrics.SUBSCRIPTIONS_ACTIVE.inc()
        try:
            await super().run_operation(operation)
        finally:
            metrics.SUBSCRIPTIONS_ACTIVE.dec()

    async def send_message(self, message: Any) -> None:
        if _closed(self.websocket):
            return  # closed by us (limits, shutdown, slow consumer): nothing more to send
        if message.get("type") == "next":
            metrics.EVENTS_DELIVERED.inc()
        await super().send_message(message)


class LegacyWSHandler(_Limits, BaseGraphQLWSHandler[Context, None]):
    async def handle_message(self, message: Any) -> None:
        if await self._admit(message, "start", len(self.tasks)) is None:
            await super().handle_message(message)

    async def _send_error(self, op_id: Any, problem: RequestError) -> None:
        metrics.GRAPHQL_ERRORS.labels(problem.code).inc()
        await self.send_message(
            {
                "type": "error",
                "id": str(op_id),
                "payload": {"message": problem.reason, "extensions": {"code": problem.code}},
            }
        )

    async def handle_async_results(self, *args: Any, **kwargs: Any) -> None:
        metrics.SUBSCRIPTIONS_ACTIVE.inc()
        try:
            await super().handle_async_results(*args, **kwargs)
        finally:
            metrics.SUBSCRIPTIONS_ACTIVE.dec()

    async def send_message(self, message: Any) -> None:
        if _closed(self.websocket):
            return
        if message.get("type") == "data":
            metrics.EVENTS_DELIVERED.inc()
        await super().send_message(message)


STAFF_ROLES = frozenset({"moderator", "researcher", "admin"})


class CommunityGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, websocket auth and limits, and media types."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, schema: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.settings = settings
        self.documents = DocumentStore(settings.documents_dir or None)

    @staticmethod
    def is_staff(request: Any) -> bool:
        return bool(getattr(request.state, "staff", False))

    def resolve_document(self, data: dict[str, Any], staff: bool) -> RequestError | None:
        """Put a persisted document's text in ``data["query"]``; refuse text if trusted-only."""
        key = requested_document_id(data)
        if key is not None:
            text = self.documents.get(key)
            if text is None:
                return RequestError(
                    400, "PERSISTED_DOCUMENT_NOT_FOUND", "No registered document has this id."
                )
            data["query"] = text
            return None
        if self.settings.trusted_documents_only and not staff and data.get("query") is not None:
            return RequestError(
                400,
                "PERSISTED_DOCUMENT_REQUIRED",
                "This server runs registered documents only: send a documentId.",
            )
        return None

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        session = await access_session(bearer(request.headers.get("authorization")))
        request.state.staff = session is not None and str(session.member.role) in STAFF_ROLES
        return Context(
            request=request,
            response=response,
            session=session,
            header_language=language_from_header(request.headers.get("accept-language")),
        )

    async def parse_http_body(self, request: Any) -> GraphQLRequestData:  # type: ignore[override]
        """The request's operation, or a typed request error (never a 500)."""
        method: HTTPMethod = request.method
        if method == "GET":
            data: Any = self.parse_query_params(request.query_params)
        else:
            content_type = (request.content_type or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise RequestError(
                    415, "UNSUPPORTED_MEDIA_TYPE", "Send the operation as application/json."
                )
            try:
                data = json.loads(await request.get_body())
            except (ValueError, RecursionError) as exc:
                raise RequestError(
                    400, "BAD_REQUEST", "Unable to parse request body as JSON"
                ) from exc
        if isinstance(data, list):
            raise RequestError(
                400, "BATCHING_NOT_SUPPORTED", "Send one operation per request (no batches)."
            )
        if not isinstance(data, dict):
            raise RequestError(400, "BAD_REQUEST", "The body must be a JSON object.")
        problem = self.resolve_document(data, self.is_staff(request._request))
        if problem is not None:
            raise problem
        query, variables = data.get("query"), data.get("variables")
        operation_name, extensions = data.get("operationName"), data.get("extensions")
        if not isinstance(query, str | None):
            raise RequestError(400, "BAD_REQUEST", "`query` must be a string.")
        if not isinstance(variables, dict | None):
            raise RequestError(400, "BAD_REQUEST", "`variables` must be an object.")
        if not isinstance(operation_name, str | None):
            raise RequestError(400, "BAD_REQUEST", "`operationName` must be a string.")
        if not isinstance(extensions, dict | None):
            raise RequestError(400, "BAD_REQUEST", "`extensions` must be an object.")
        return GraphQLRequestData(
            query=query, variables=variables, operation_name=operation_name, extensions=extensions
        )

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params or {}
        if not isinstance(params, dict):
            raise ConnectionRejectionError({"message": "Bad connection_init payload."})
        token = bearer(params.get("authorization")) or params.get("token")
        if token:
            session = await access_session(str(token))
            if session is None:
                # A token that does not name a live session is refused outright (4403).
                raise ConnectionRejectionError({"message": "Invalid or expired token."})
            context.session = session
        if context.session is None:
            return None
        member_id: int = context.session.member_id  # type: ignore[attr-defined]
        if isinstance(context.request, WebSocket):
            context.request.state.staff = str(context.session.member.role) in STAFF_ROLES
            # A ban or a lock closes this socket at once (subscriptions.connections).
            CONNECTIONS.add(member_id, context.request)
            context.request.state.registered_member = member_id
        return {"member": member_id}

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        body = await super().process_result(request, result)
        if isinstance(result, PreExecutionError):
            # Parse and validation errors are request errors: 4xx and no "data" (spec).
            request.state.graphql_request_error = True
            if prefers_graphql_response(request.headers.get("accept")):
                body.pop("data", None)
        return body

    async def run(
        self, request: Request | WebSocket, context: Any = UNSET, root_value: Any = UNSET
    ) -> Any:
        if self.is_websocket_request(request):
            return await self._run_websocket(request, context, root_value)
        graphql_response = prefers_graphql_response(request.headers.get("accept"))
        try:
            response = await super().run(request, context, root_value)
        except Exception as exc:
            if isinstance(exc, HTTPException):
                return self._request_error(exc, graphql_response)
            if isinstance(exc, ClientDisconnect):
                # The client left while sending its body: no one to answer.
                return Response(status_code=400)
            if not is_unavailable(exc):
                raise
            # The database went away before execution (the session look-up).
            log.warning("database or network unavailable before execution (%s)", type(exc).__name__)
            metrics.GRAPHQL_ERRORS.labels("SERVICE_UNAVAILABLE").inc()
            return JSONResponse(
                {
                    "data": None,
                    "errors": [
                        {
                            "message": UNAVAILABLE_MESSAGE,
                            "extensions": {"code": "SERVICE_UNAVAILABLE"},
                        }
                    ],
                },
                status_code=503 if graphql_response else 200,
                media_type=GRAPHQL_RESPONSE if graphql_response else "application/json",
            )
        if (
            graphql_response
            and isinstance(response, Response)
            and response.headers.get("content-type") == "application/json"
        ):
            response.headers["content-type"] = GRAPHQL_RESPONSE + "; charset=utf-8"
            if getattr(request.state, "graphql_request_error", False):
                response.status_code = 400
        return response

    @staticmethod
    def _request_error(exc: HTTPException, graphql_response: bool) -> Response:
        code = error_code(exc)
        metrics.GRAPHQL_ERRORS.labels(code).inc()
        return JSONResponse(
            {"errors": [{"message": exc.reason, "extensions": {"code": code}}]},
            status_code=exc.status_code,
            media_type=GRAPHQL_RESPONSE if graphql_response else "application/json",
        )

    async def _run_websocket(self, websocket: Any, context: Any, root_value: Any) -> Any:
        if DRAIN.draining:
            await websocket.close(code=GOING_AWAY, reason=GOING_AWAY_REASON)
            return None
        guard = SocketGuard(
            websocket,
            self.settings.ws_queue_events,
            getattr(websocket.state, "transport_abort", None),
        )
        token = CURRENT_SOCKET.set(guard)
        DRAIN.sockets.add(websocket)
        metrics.WEBSOCKETS_OPEN.inc()
        try:
            return await super().run(websocket, context, root_value)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("database or network unavailable for a websocket (%s)", type(exc).__name__)
            with contextlib.suppress(Exception):  # the client may be gone already
                await websocket.close(code=1013, reason="Service unavailable, try again later")
            return None
        finally:
            metrics.WEBSOCKETS_OPEN.dec()
            DRAIN.sockets.discard(websocket)
            CURRENT_SOCKET.reset(token)
            member_id = getattr(websocket.state, "registered_member", None)
            if member_id is not None:
                CONNECTIONS.discard(member_id, websocket)


class WebsocketSessionCheck(SchemaExtension):
    """Re-check a websocket's session before every operation on it.

    A websocket's context (and session) is built once per connection, so
    without this a socket would stay signed in after logout, a password
    change or resignation. Each operation (query, mutation, or the start of a
    subscription) sees the session as it is now, with a freshly loaded member.
    """

    async def on_operation(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if (
            isinstance(context, Context)
            and isinstance(context.request, WebSocket)
            and context.session is not None
        ):
            context.session = await reload_session(context.session.id)
        yield


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "errors": [
                    {"message": "Request body too large.", "extensions": {"code": "BODY_TOO_LARGE"}}
                ]
            },
            status_code=413,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
