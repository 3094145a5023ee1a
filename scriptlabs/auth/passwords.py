"""argon2id password hashing, off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from scriptlabs.config import Argon2Params

MIN_LENGTH = 8
MAX_LENGTH = 1024


def make_hasher(params: Argon2Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


class Passwords:
    """Hashes and verifies passwords.

    A fixed dummy hash keeps an unknown email as slow to refuse as a wrong password.
    """

    def __init__(self, params: Argon2Params) -> None:
        self._hasher = make_hasher(params)
        self._dummy = self._hasher.hash("not a real password: timing equaliser")

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def _verify(self, encoded: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(encoded or self._dummy, password) and encoded is not None
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, encoded: str | None, password: str) -> bool:
        """True when `password` matches; with no hash, spends the same time and says False."""
        return await asyncio.to_thread(self._verify, encoded, password)
