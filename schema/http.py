"""The GraphQL endpoint: HTTP (GraphQL-over-HTTP media types) and websockets.

Authentication: ``Authorization: Bearer <token>`` on HTTP; on websockets the
token comes in the ``connection_init`` payload (``{"authorization": "Bearer
<token>"}`` or ``{"token": "<token>"}``), or in the handshake's header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET

from resolvers.sessions import access_session, reload_session
from schema.context import Context, language_from_header
from subscriptions.connections import CONNECTIONS

GRAPHQL_RESPONSE = "application/graphql-response+json"


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


class CommunityGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, websocket auth and media types."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        session = await access_session(bearer(request.headers.get("authorization")))
        return Context(
            request=request,
            response=response,
            session=session,
            header_language=language_from_header(request.headers.get("accept-language")),
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
            try:
                return await super().run(request, context, root_value)
            finally:
                member_id = getattr(request.state, "registered_member", None)
                if member_id is not None:
                    CONNECTIONS.discard(member_id, request)
        if not prefers_graphql_response(request.headers.get("accept")):
            return await super().run(request, context, root_value)
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as exc:
            return JSONResponse(
                {"errors": [{"message": exc.reason}]},
                status_code=exc.status_code,
                media_type=GRAPHQL_RESPONSE,
            )
        if (
            isinstance(response, Response)
            and response.headers.get("content-type") == "application/json"
        ):
            response.headers["content-type"] = GRAPHQL_RESPONSE + "; charset=utf-8"
            if getattr(request.state, "graphql_request_error", False):
                response.status_code = 400
        return response


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
