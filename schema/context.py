"""The typed request context shared by HTTP requests and websocket connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from models.community import Member, Session

LANGUAGES = ("fi", "sv", "en")


def language_from_header(accept_language: str | None) -> str:
    """The first of fi, sv, en the client asks for; Finnish by default."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "fi"


@dataclass
class Context:
    """Built once per HTTP request, and once per websocket connection.

    On a websocket, ``session`` is set by ``on_ws_connect`` from the
    ``connection_init`` payload and re-checked by every subscription, since
    the session may end while the socket stays open.
    """

    request: Request | WebSocket
    response: Response | WebSocket | None
    session: Session | None = None
    header_language: str = "fi"
    connection_params: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def member(self) -> Member | None:
        return self.session.member if self.session is not None else None

    @property
    def language(self) -> str:
        member = self.member
        return member.language.value if member is not None else self.header_language

    @property
    def client_address(self) -> str:
        client = self.request.client
        return client.host if client is not None else "unknown"


Info = strawberry.Info[Context, None]
