"""A real SMTP server (aiosmtpd) that keeps what it receives, for tests."""

from __future__ import annotations

import asyncio
import re
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

TOKEN_RE = re.compile(r"token=([A-Za-z0-9_\-]+)")


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        with self.server.lock:
            self.server.messages.append(message)
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.controller: Controller | None = None
        self.port = 0

    def start(self, port: int = 0) -> None:
        from tests.conftest import free_port

        self.port = port or self.port or free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def sent_to(self, address: str, template: str | None = None) -> list[EmailMessage]:
        with self.lock:
            return [
                m
                for m in self.messages
                if m["To"] == address
                and (template is None or m["X-Community-Template"] == template)
            ]

    async def wait_for(self, address: str, template: str, timeout: float = 10) -> EmailMessage:
        for _ in range(int(timeout / 0.05)):
            found = self.sent_to(address, template)
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {template!r} email to {address} within {timeout}s")


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def token_in(message: EmailMessage) -> str:
    match = TOKEN_RE.search(body_of(message))
    assert match, body_of(message)
    return match.group(1)
