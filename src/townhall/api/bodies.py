"""Reading request bodies without trusting them.

The declared length is checked before a byte is read, the actual length while
reading (chunked uploads can lie by omission), and only a JSON object is
accepted: every route then looks fields up in a dict.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from townhall.api.errors import RequestError


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise RequestError(400, "bad_content_length", "Content-Length must be a number")
        if int(declared) > max_bytes:
            raise RequestError(
                413, "body_too_large", f"request body is larger than {max_bytes} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(
                    413, "body_too_large", f"request body is larger than {max_bytes} bytes"
                )
            chunks.append(chunk)
    except ClientDisconnect:  # hung up (or was cut as too slow): nobody to answer, no bug
        raise RequestError(400, "client_gone", "the client left before its body arrived") from None
    return b"".join(chunks)


def parse_json_object(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """A body as a JSON object; `optional` lets an empty body mean `{}`.

    Shared by the Starlette routes and the listener fast path (api/fastpath.py),
    so both refuse bad bodies with the same words."""
    if not body.strip():
        if optional:
            return {}
        raise RequestError(400, "missing_body", "this endpoint expects a JSON object body")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, "bad_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "bad_json", "request body must be a JSON object")
    return data


async def read_json(request: Request, max_bytes: int, *, optional: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object (see parse_json_object)."""
    return parse_json_object(await read_body(request, max_bytes), optional=optional)
