"""Who is calling: a bearer token (scripts) or a session cookie (browsers).

Cookie-authenticated requests that change something must come from our own
pages: SameSite=Lax stops most cross-site sends, and a present Origin header
must name this host, which stops the rest.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from townhall.domain.errors import Forbidden, Unauthorized
from townhall.domain.spaces import User
from townhall.forwarded import client_origin
from townhall.service.accounts import Accounts

SESSION_COOKIE = "th_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: Request) -> str:
    """The client's address, behind trusted proxies the forwarded one: rate limits key
    on it (townhall.forwarded)."""
    return client_origin(request.scope).address


def presented_token(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'", code="bad_authorization")
        return value.strip(), False
    return request.cookies.get(SESSION_COOKIE), True


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-site requests are not accepted", code="bad_origin")


async def optional_user(request: Request) -> User | None:
    accounts: Accounts = request.app.state.accounts
    token, from_cookie = presented_token(request)
    if token is None:
        return None
    user = await accounts.user_for(token)
    if user is None:
        if from_cookie:
            return None  # a stale cookie is just a signed-out browser
        raise Unauthorized("the token is invalid or expired", code="bad_token")
    if from_cookie and request.method not in SAFE_METHODS:
        _check_origin(request)
    return user


async def require_user(request: Request) -> User:
    user = await optional_user(request)
    if user is None:
        raise Unauthorized("sign in first", code="sign_in_required")
    return user
