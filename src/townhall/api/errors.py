"""Every refusal is a JSON body `{"error": {"code", "message"}}` with a 4xx status.

The one place that turns refusals into HTTP: `status_for` maps the domain's refusal
kinds (townhall.domain.errors, raised by the domain, admission and services, which
know nothing of HTTP) to statuses, and `error_body` writes the body's bytes for every
server that answers (api/error_body.py: Starlette's handlers here, the fast path, the
live stream, the connection guard below HTTP in server.py, the stream workers).

A 500 means a bug: it is logged with its traceback and the client still gets
JSON, never an HTML page or a dropped connection.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from townhall.api.error_body import error_body
from townhall.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_BY_KIND: dict[type[DomainError], int] = {
    Invalid: 422,
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    Unavailable: 503,
    TooManyRequests: 429,
}

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def retry_after_header(retry_after_s: float) -> str:
    """Retry-After in whole seconds, as every refusal with a retry time sends it."""
    return str(round(retry_after_s))


class JsonError(Response):
    """An error response whose body error_body wrote."""

    media_type = "application/json"

    def __init__(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body, status_code=status, headers=headers)


class RequestError(DomainError):
    """A request the HTTP layer itself refuses (malformed JSON, oversized body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status = status


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JsonError(status, error_body(code, message), headers=headers)


def status_for(error: DomainError) -> int:
    if isinstance(error, RequestError):
        return error.status
    for kind, status in STATUS_BY_KIND.items():
        if isinstance(error, kind):
            return status
    return 400


def refusal_response(refusal: DomainError) -> Response:
    """A domain refusal as HTTP: its status, the one body, Retry-After if it has one."""
    extra = dict(refusal.extra)
    retry_after = getattr(refusal, "retry_after_s", None)
    headers = None
    if retry_after is not None:
        headers = {"retry-after": retry_after_header(retry_after)}
        extra["retry_after_s"] = retry_after
    body = error_body(refusal.code, refusal.message, **extra)
    return JsonError(status_for(refusal), body, headers=headers)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return refusal_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        message = f"no such page or endpoint: {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its body arrived: nobody will read an answer, and it
    is not our bug, so no log line (uvicorn drops the response on the closed socket)."""
    return error_response(400, "client_gone", "the request body did not arrive")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "something went wrong on our side; it was logged")


EXCEPTION_HANDLERS = {
    DomainError: domain_error,
    HTTPException: http_error,
    ClientDisconnect: client_gone,
    Exception: unexpected_error,
}
