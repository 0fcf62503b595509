"""argon2id hashing with its cost bounded: few hashes at a time, a short line, and the
same work whether or not the account exists.

A hash costs tens of milliseconds of CPU and tens of MiB by design, which is what
makes guessing expensive for an attacker and, unbounded, cheap for them to turn on
us: 40 concurrent wrong sign-ins took the default executor's threads, times argon2's
own lanes, across both cores for seconds, stealing them from everyone's audio. Here
hashes run on a dedicated pool of `max_in_flight` threads (argon2-cffi releases the
GIL), each hash on one lane (parallelism 1, so one hash is one core), and at most
`max_waiting` more wait their turn; past that the caller is told to come back
(`PasswordsBusy`, a 503 with Retry-After) instead of queueing without bound.

A sign-in for a username that does not exist verifies the password against a dummy
hash made with the same parameters: the same CPU, the same place in line, the same
answer time, so timing does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from townhall.domain.errors import Unavailable

T = TypeVar("T")

BUSY_RETRY_AFTER_S: Final = 2.0


@dataclass(frozen=True)
class PasswordLimits:
    time_cost: int = 3
    memory_kib: int = 65_536
    parallelism: int = 1
    """Lanes per hash; argon2 runs each lane on its own thread, so 1 keeps one hash on
    one core (RFC 9106's second recommendation is t=3, m=64 MiB)."""
    max_in_flight: int = 1
    """Hashes computed at once: the most cores password work can take."""
    max_waiting: int = 32
    """Hash requests that may wait for a free slot; past it, `PasswordsBusy`."""


class PasswordsBusy(Unavailable):
    """Too many sign-ins and sign-ups are being hashed; come back shortly."""

    def __init__(self, retry_after_s: float) -> None:
        message = "too many sign-ins at once; try again in a moment"
        super().__init__(message, retry_after_s, code="busy")


class Passwords:
    """Hash and verify passwords on a bounded pool; the one place argon2 runs."""

    def __init__(self, limits: PasswordLimits) -> None:
        self._hasher = PasswordHasher(
            time_cost=limits.time_cost,
            memory_cost=limits.memory_kib,
            parallelism=limits.parallelism,
        )
        self._limits = limits
        self._pool = ThreadPoolExecutor(limits.max_in_flight, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._waiting = 0
        self._dummy_hash: str | None = None

    async def _run(self, work: Callable[[], T]) -> T:
        if self._waiting >= self._limits.max_in_flight + self._limits.max_waiting:
            raise PasswordsBusy(BUSY_RETRY_AFTER_S)
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether `password` matches `hashed`; with no hash (no such user) the same
        work is done against a dummy hash, and the answer is False."""
        if hashed is None:
            hashed = await self._dummy()
            await self._run(lambda: self._matches(hashed, password))
            return False
        return await self._run(lambda: self._matches(hashed, password))

    def _matches(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
