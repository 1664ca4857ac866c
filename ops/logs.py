"""Logging: request ids, JSON lines, and no personal data.

Every record carries the request id of the HTTP request or websocket it was
written for (``-`` outside one). ``LOG_FORMAT=json`` writes one JSON object
per line (time, level, logger, message, request_id, and the traceback when
there is one). The app never logs addresses or identity codes; as a second
line of defence both formats replace anything that looks like an email
address or a Finnish identity code (also inside tracebacks, whose exception
messages may quote database values) before the line is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar(
    "community_request_id", default="-"
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HETU = re.compile(r"(?<![0-9A-Za-z])\d{6}[-+A-FU-Ya-fu-y]\d{3}[0-9A-Za-z](?![0-9A-Za-z])")


# Libraries whose DEBUG output quotes what clients sent (SQL parameters, frames).
QUIET_DEBUG = ("tortoise.db_client", "aiosqlite", "asyncpg", "uvicorn.protocols", "websockets")


def redact(text: str) -> str:
    return _HETU.sub("[id-code]", _EMAIL.sub("[email]", text))


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str, level: str) -> None:
    """Route every logger (ours, uvicorn's, Tortoise's) through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_DEBUG:
        # Their DEBUG lines quote SQL parameters and client frames: never written.
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
