"""A minimal graphql-transport-ws client for the tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

RECEIVE_SECONDS = 5.0  # longest wait for a message that must arrive


class WsClient:
    """A minimal graphql-transport-ws client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"type": "subscribe", "id": op_id, "payload": payload})

    async def receive(self, timeout: float = RECEIVE_SECONDS) -> dict[str, Any]:
        """The next protocol message, answering pings and skipping pongs."""
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message["type"] == "ping":
                    await self.send({"type": "pong"})
                    continue
                if message["type"] == "pong":
                    continue
                return message

    async def next_data(self, op_id: str, field: str, timeout: float = RECEIVE_SECONDS) -> Any:
        """The `field` of the next `next` message of `op_id` (asserts no errors)."""
        message = await self.receive(timeout)
        assert message["type"] == "next", message
        assert message["id"] == op_id, message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"][field]

    async def next_event(self, op_id: str = "events") -> dict[str, Any]:
        event: dict[str, Any] = await self.next_data(op_id, "threadEvents")
        assert event["__typename"] == "ThreadEvent", event
        return event

    async def events_until(self, position: int, op_id: str = "events") -> list[dict[str, Any]]:
        """Events received until (and including) the one at `position`."""
        events: list[dict[str, Any]] = []
        while True:
            event = await self.next_event(op_id)
            events.append(event)
            if event["position"] >= position:
                return events

    async def expect_silence(self, seconds: float) -> None:
        try:
            message = await self.receive(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message}")

    async def refusal(self, op_id: str) -> list[dict[str, Any]]:
        """The errors a refused subscription answers with; asserts it carried no data.

        A refusal is an `error` message, or `next` messages with errors and no
        data followed by `complete`.
        """
        errors: list[dict[str, Any]] = []
        while True:
            message = await self.receive()
            assert message["id"] == op_id, message
            if message["type"] == "error":
                errors.extend(message["payload"])
                return errors
            if message["type"] == "complete":
                assert errors, "completed without an error"
                return errors
            assert message["type"] == "next", message
            assert message["payload"].get("data") is None, message
            errors.extend(message["payload"]["errors"])
