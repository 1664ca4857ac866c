"""Password hashing (argon2id at OWASP's minimum or above) and strength checks."""

from __future__ import annotations

import asyncio
import gzip
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from resolvers.errors import Code, UserError

MIN_LENGTH = 10
MAX_LENGTH = 128

# OWASP's minimum for argon2id is m=19 MiB, t=2, p=1; we use exactly that floor
# so that a login costs the same ~20-40 ms of one core on every path.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)

# A hash of a random password, verified against when no account matches, so a
# failed login does the same work whether or not the account exists.
_DUMMY_HASH = HASHER.hash("no-such-account-placeholder-password")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of 20,000 common passwords (from Django, BSD licence)."""
    path = Path(__file__).parent / "data" / "common-passwords.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip().lower() for line in handle if line.strip())


def check_password(password: str, *avoid: str, field: str = "password") -> None:
    if len(password) < MIN_LENGTH:
        raise UserError(Code.PASSWORD_TOO_SHORT, field=field, min=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise UserError(Code.PASSWORD_TOO_LONG, field=field, max=MAX_LENGTH)
    lowered = password.lower()
    if lowered in common_passwords() or len(set(lowered)) < 4:
        raise UserError(Code.PASSWORD_TOO_COMMON, field=field)
    for value in avoid:
        if value and len(value) >= 3 and value.lower() in lowered:
            raise UserError(Code.PASSWORD_LIKE_NAME, field=field)


async def hash_password(password: str) -> str:
    # argon2 holds the GIL-free C code for tens of milliseconds: keep the loop free.
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; always does one full verification."""

    def verify() -> bool:
        try:
            return HASHER.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)
