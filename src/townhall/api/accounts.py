"""Sign up, tokens for scripts, sessions for browsers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import SESSION_COOKIE, client_address, presented_token, require_user
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.models import Credentials, SessionOut, TokenOut, UserOut
from townhall.service.accounts import TokenKind

if TYPE_CHECKING:
    from townhall.services import Services


def _admit_body_cap(services: Services, request: Request) -> int:
    """Body cap; also where every account call passes the per-address buckets
    (password guessing and sign-up floods are writes like any other)."""
    services.door.check_address(client_address(request))
    return services.settings.http.max_body_bytes


async def _credentials(services: Services, request: Request) -> Credentials:
    return await read_model(request, Credentials, _admit_body_cap(services, request))


async def sign_up(services: Services, request: Request) -> Response:
    body = await _credentials(services, request)
    services.write_limits.sign_up(client_address(request))
    user = await services.accounts.sign_up(body.username, body.password)
    return JSONResponse(user.to_json(), status_code=201)


async def create_token(services: Services, request: Request) -> Response:
    body = await _credentials(services, request)
    services.write_limits.sign_in(client_address(request), body.username)
    accounts = services.accounts
    user = await accounts.check_credentials(body.username, body.password)
    token = await accounts.issue_token(user, TokenKind.API)
    return JSONResponse({"token": token}, status_code=201)


async def sign_in(services: Services, request: Request) -> Response:
    body = await _credentials(services, request)
    services.write_limits.sign_in(client_address(request), body.username)
    accounts = services.accounts
    user = await accounts.check_credentials(body.username, body.password)
    token = await accounts.issue_token(user, TokenKind.SESSION)
    response = JSONResponse({"user": user.to_json()}, status_code=201)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=services.settings.session_ttl_days * 86_400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def sign_out(services: Services, request: Request) -> Response:
    token, _ = presented_token(request)
    if token:
        await services.accounts.revoke(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def me(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
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


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
