"""Every refusal is a JSON body `{"error": {"code", "message"}}` with a 4xx status.

A 500 means a bug: it is logged with its traceback and the client still gets
JSON, never an HTML page or a dropped connection.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from townhall.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
)
from townhall.state.base import StateUnavailable

log = logging.getLogger(__name__)

STATUS_BY_KIND: dict[type[DomainError], int] = {
    Invalid: 422,
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    StateUnavailable: 503,
}

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class RequestError(DomainError):
    """A request the HTTP layer itself refuses (malformed JSON, oversized body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status = status


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def status_for(error: DomainError) -> int:
    if isinstance(error, RequestError):
        return error.status
    for kind, status in STATUS_BY_KIND.items():
        if isinstance(error, kind):
            return status
    return 400


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    extra = getattr(exc, "extra", None) or {}
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"retry-after": str(round(retry_after))} if retry_after is not None else None
    body = {"error": {"code": exc.code, "message": exc.message, **extra}}
    if retry_after is not None:
        body["error"]["retry_after_s"] = retry_after
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        message = f"no such page or endpoint: {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "something went wrong on our side; it was logged")


EXCEPTION_HANDLERS = {
    DomainError: domain_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
