"""Sign up, tokens for scripts, sessions for browsers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from townhall.api.auth import SESSION_COOKIE, client_address, presented_token, require_user
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.models import Credentials, SessionOut, TokenOut, UserOut
from townhall.service.accounts import Accounts, TokenKind
from townhall.service.write_limits import WriteLimiter


def _accounts(request: Request) -> Accounts:
    return request.app.state.accounts


def _admit_body_cap(request: Request) -> int:
    """Body cap; also where every account call passes the per-address buckets
    (password guessing and sign-up floods are writes like any other)."""
    request.app.state.door.check_address(client_address(request))
    return request.app.state.settings.http.max_body_bytes


async def _credentials(request: Request) -> Credentials:
    return await read_model(request, Credentials, _admit_body_cap(request))


def _write_limits(request: Request) -> WriteLimiter:
    return request.app.state.write_limits


async def sign_up(request: Request) -> Response:
    body = await _credentials(request)
    _write_limits(request).sign_up(client_address(request))
    user = await _accounts(request).sign_up(body.username, body.password)
    return JSONResponse(user.to_json(), status_code=201)


async def create_token(request: Request) -> Response:
    body = await _credentials(request)
    _write_limits(request).sign_in(client_address(request), body.username)
    accounts = _accounts(request)
    user = await accounts.check_credentials(body.username, body.password)
    token = await accounts.issue_token(user, TokenKind.API)
    return JSONResponse({"token": token}, status_code=201)


async def sign_in(request: Request) -> Response:
    body = await _credentials(request)
    _write_limits(request).sign_in(client_address(request), body.username)
    accounts = _accounts(request)
    user = await accounts.check_credentials(body.username, body.password)
    token = await accounts.issue_token(user, TokenKind.SESSION)
    response = JSONResponse({"user": user.to_json()}, status_code=201)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=request.app.state.settings.session_ttl_days * 86_400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def sign_out(request: Request) -> Response:
    token, _ = presented_token(request)
    if token:
        await _accounts(request).revoke(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: Request) -> Response:
    user = await require_user(request)
    return JSONResponse(user.to_json())


OPERATIONS = [
    Operation(
        "POST", "/api/users", sign_up, "Sign up", UserOut, 201, Credentials, refusals=(409, 429)
    ),
    Operation(
        "POST", "/api/tokens", create_token, "An API token for scripts (Bearer)", TokenOut, 201,
        Credentials, refusals=(401, 429, 503),
    ),
    Operation(
        "POST", "/api/sessions", sign_in, "Browser sign-in: sets the session cookie",
        SessionOut, 201, Credentials, refusals=(401, 429, 503),
    ),
    Operation(
        "DELETE", "/api/sessions", sign_out, "Sign out (revokes the token or cookie)",
        status=204, auth=Auth.OPTIONAL,
    ),
    Operation("GET", "/api/me", me, "The signed-in user", UserOut, auth=Auth.USER),
]  # fmt: skip
routes = routes_of(OPERATIONS)
