"""Sign-up, sign-in and bearer tokens.

Passwords are hashed with argon2id by service/passwords.py, off the event loop and
with bounded concurrency: a hash costs tens of milliseconds of CPU by design and
must not stall (or crowd out) the loop that carries everyone's audio. Tokens are
random; only their SHA-256 is stored, and a small in-process cache keeps token checks
off the database on hot paths (join).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from townhall.config import Settings
from townhall.domain.accounts import check_password, check_username
from townhall.domain.errors import Unauthorized
from townhall.domain.moderation import Suspended
from townhall.domain.spaces import User
from townhall.service.ids import new_id
from townhall.service.passwords import PasswordLimits, Passwords
from townhall.store.base import Store

TOKEN_CACHE_SIZE = 10_000
TOKEN_CACHE_TTL_S = 30.0
"""A signed-out token stays usable on this node for at most this long."""


class TokenKind(StrEnum):
    API = "api"
    SESSION = "session"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_limits(settings: Settings) -> PasswordLimits:
    return PasswordLimits(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        max_in_flight=settings.argon2_max_in_flight,
        max_waiting=settings.argon2_max_waiting,
    )


class Accounts:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        passwords: Passwords,
        suspension: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        """`suspension` gives the statement of reasons that suspended a user, or None
        (townhall.service.standing): a suspended user cannot sign in, and is told why."""
        self._store = store
        self._settings = settings
        self._passwords = passwords
        self._cache: OrderedDict[str, tuple[float, User | None]] = OrderedDict()
        self._suspension = suspension

    async def sign_up(self, username: object, password: object) -> User:
        name, secret = check_username(username), check_password(password)
        hashed = await self._passwords.hash(secret)
        return await self._store.create_user(new_id(), name, hashed)

    async def check_credentials(self, username: object, password: object) -> User:
        refused = Unauthorized("wrong username or password", code="bad_credentials")
        if not isinstance(username, str) or not isinstance(password, str):
            raise refused
        found = await self._store.credentials(username)
        hashed = found[1] if found is not None else None
        if not await self._passwords.verify(hashed, password) or found is None:
            raise refused  # the same work and time whether or not the user exists
        user = found[0]
        statement = await self._suspension(user.id) if self._suspension is not None else None
        if statement is not None:
            raise Suspended(statement)
        if self._passwords.needs_rehash(found[1]):
            await self._store.set_password_hash(user.id, await self._passwords.hash(password))
        return user

    async def issue_token(self, user: User, kind: TokenKind) -> str:
        token = secrets.token_urlsafe(32)
        days = (
            self._settings.session_ttl_days
            if kind is TokenKind.SESSION
            else self._settings.token_ttl_days
        )
        expires = datetime.now(UTC) + timedelta(days=days)
        await self._store.create_token(token_hash(token), user.id, kind.value, expires)
        return token

    async def revoke(self, token: str) -> None:
        digest = token_hash(token)
        self._cache.pop(digest, None)
        await self._store.delete_token(digest)

    def forget_user(self, user_id: str) -> None:
        """Drops the user's cached tokens here (their rows are deleted by the caller);
        other nodes stop accepting them within TOKEN_CACHE_TTL_S."""
        cached = self._cache.items()
        for digest in [key for key, (_, user) in cached if user and user.id == user_id]:
            del self._cache[digest]

    async def user_for(self, token: str | None) -> User | None:
        if not token or len(token) > 128:
            return None
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(digest)
            return cached[1]
        user = await self._store.user_for_token(digest, datetime.now(UTC))
        self._cache[digest] = (now + TOKEN_CACHE_TTL_S, user)
        if len(self._cache) > TOKEN_CACHE_SIZE:
            self._cache.popitem(last=False)
        return user

    def close(self) -> None:
        self._passwords.close()
