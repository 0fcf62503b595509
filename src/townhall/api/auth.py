"""Who is calling: a bearer token (scripts) or a session cookie (browsers).

Cookie-authenticated requests that change something must come from our own
pages (cross-site request forgery): SameSite=Lax stops most cross-site sends;
an Origin header, when the browser sends one, must name this host (not another
site, not "null", which sandboxed frames and data: pages send); and the body must
be declared JSON, which a cross-site form cannot do and a cross-site fetch cannot
do without a CORS preflight we never answer. Our pages send both (web/static/api.js).
A bearer token is held by a script, not sent by a browser on its own: no checks.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from townhall.api.errors import RequestError
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


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _check_same_site(request: Request) -> None:
    """Refuses a cookie-authenticated unsafe request that a foreign page could make."""
    origin = request.headers.get("origin")
    if origin is not None and (
        origin.strip().lower() == "null" or urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise Forbidden("cross-site requests are not accepted", code="bad_origin")
    if not _is_json(request.headers.get("content-type", "")):
        raise RequestError(
            415, "json_required", "send this request with Content-Type: application/json"
        )


async def optional_user(request: Request, accounts: Accounts) -> User | None:
    token, from_cookie = presented_token(request)
    if token is None:
        return None
    user = await accounts.user_for(token)
    if user is None:
        if from_cookie:
            return None  # a stale cookie is just a signed-out browser
        raise Unauthorized("the token is invalid or expired", code="bad_token")
    if from_cookie and request.method not in SAFE_METHODS:
        _check_same_site(request)
    return user


async def require_user(request: Request, accounts: Accounts) -> User:
    user = await optional_user(request, accounts)
    if user is None:
        raise Unauthorized("sign in first", code="sign_in_required")
    return user
