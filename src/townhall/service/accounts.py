"""Sign-up, sign-in and bearer tokens.

Passwords are hashed with argon2id on a worker thread: a hash costs tens of
milliseconds of CPU by design and must not stall the event loop that carries
everyone's audio. Tokens are random; only their SHA-256 is stored, and a small
in-process cache keeps token checks off the database on hot paths (join).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from townhall.config import Settings
from townhall.domain.accounts import check_password, check_username
from townhall.domain.errors import Unauthorized
from townhall.domain.spaces import User
from townhall.service.ids import new_id
from townhall.store.base import Store

TOKEN_CACHE_SIZE = 10_000
TOKEN_CACHE_TTL_S = 30.0
"""A signed-out token stays usable on this node for at most this long."""


class TokenKind(StrEnum):
    API = "api"
    SESSION = "session"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
        )
        self._cache: OrderedDict[str, tuple[float, User | None]] = OrderedDict()

    async def sign_up(self, username: object, password: object) -> User:
        name, secret = check_username(username), check_password(password)
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        return await self._store.create_user(new_id(), name, hashed)

    async def check_credentials(self, username: object, password: object) -> User:
        refused = Unauthorized("wrong username or password", code="bad_credentials")
        if not isinstance(username, str) or not isinstance(password, str):
            raise refused
        found = await self._store.credentials(username)
        if found is None:
            raise refused
        user, hashed = found
        try:
            await asyncio.to_thread(self._hasher.verify, hashed, password)
        except (VerificationError, InvalidHashError):
            raise refused from None
        if self._hasher.check_needs_rehash(hashed):
            rehashed = await asyncio.to_thread(self._hasher.hash, password)
            await self._store.set_password_hash(user.id, rehashed)
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
