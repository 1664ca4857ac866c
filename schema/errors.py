"""Typed expected failures: an ``Error`` interface with a stable code and a message.

Mutations return ``<Verb>Result`` unions of their success type and these
error types; :func:`failure` is the one place that turns a
:class:`resolvers.errors.UserError` into one of them, in the caller's language.
"""

from __future__ import annotations

from enum import Enum

import strawberry

from resolvers.errors import Code, ErrorKind, UserError
from schema.context import Info

_ErrorCode = Enum("ErrorCode", {c.value: c.value for c in Code})  # type: ignore[misc]
ErrorCode = strawberry.enum(_ErrorCode, name="ErrorCode", description="Stable error codes.")


@strawberry.interface(description="An expected failure the client can act on.")
class Error:
    code: ErrorCode = strawberry.field(description="Stable machine-readable code.")  # type: ignore[valid-type]
    message: str = strawberry.field(description="Human-readable message in the member's language.")


@strawberry.type(description="The input is invalid; `field` names the input field when known.")
class InputError(Error):
    field: str | None = None


@strawberry.type(description="The caller may not do this now (for example: rules not accepted).")
class NotAllowedError(Error):
    pass


@strawberry.type(description="Too many attempts; try again after `retryAfterSeconds`.")
class RateLimitedError(Error):
    retry_after_seconds: int


def failure(exc: UserError, info: Info) -> InputError | NotAllowedError | RateLimitedError:
    language = exc.language or info.context.language
    code = ErrorCode[exc.code.value]
    message = exc.message(language)
    if exc.kind == ErrorKind.RATE_LIMITED:
        return RateLimitedError(
            code=code, message=message, retry_after_seconds=exc.retry_after or 1
        )
    if exc.kind == ErrorKind.NOT_ALLOWED:
        return NotAllowedError(code=code, message=message)
    return InputError(code=code, message=message, field=exc.field)
