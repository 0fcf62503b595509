"""Reading request bodies without trusting them.

The declared length is checked before a byte is read, the actual length while
reading (chunked uploads can lie by omission), and the bytes go straight into a
request model (api/models.py) through pydantic's JSON parser: JSON nested thousands
deep, integers of thousands of digits and lone surrogates are refused there as
invalid JSON (the standard library's parser would raise RecursionError or ValueError
out of the handler, a 500), and a field of the wrong type or shape is a 422 that
names the field and says why.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from townhall.api.errors import RequestError
from townhall.api.models import RequestBody, error_code

Body = TypeVar("Body", bound=RequestBody)

ANY_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
MAX_PROBLEMS_SHOWN = 3


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
    async for chunk in request.stream():  # a hang-up raises ClientDisconnect: api/errors.py
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(
                413, "body_too_large", f"request body is larger than {max_bytes} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _not_json(problem: ErrorDetails) -> RequestError:
    if problem["type"] == "json_invalid":
        return RequestError(400, "bad_json", f"request body is not valid JSON: {problem['msg']}")
    return RequestError(400, "bad_json", "request body must be a JSON object")


def _field(problem: ErrorDetails) -> str:
    return ".".join(str(part) for part in problem["loc"])


def validation_refusal(model: type[RequestBody], error: ValidationError) -> RequestError:
    """A pydantic error as our refusal: malformed JSON is a 400 `bad_json`; a wrong
    field a 422 whose code names the (first) field and whose message says why."""
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    if not first["loc"]:
        return _not_json(first)
    shown = "; ".join(f"{_field(p)}: {p['msg']}" for p in problems[:MAX_PROBLEMS_SHOWN])
    return RequestError(422, error_code(model, str(first["loc"][0])), shown)


def parse_model(model: type[Body], body: bytes, *, optional: bool = False) -> Body:
    """A body as `model`; `optional` lets an empty body mean `{}`.

    Shared by the Starlette routes and the listener fast path (api/fastpath.py),
    so both refuse bad bodies with the same words."""
    try:
        if not body.strip():
            if not optional:
                raise RequestError(400, "missing_body", "this endpoint expects a JSON object body")
            return model.model_validate({})
        return model.model_validate_json(body)
    except ValidationError as error:
        raise validation_refusal(model, error) from None


def parse_json_object(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """A body as any JSON object, for routes without a model (same refusals)."""
    if not body.strip():
        if optional:
            return {}
        raise RequestError(400, "missing_body", "this endpoint expects a JSON object body")
    try:
        return ANY_OBJECT.validate_json(body)
    except ValidationError as error:
        raise _not_json(error.errors(include_url=False, include_input=False)[0]) from None


def parse_query(model: type[Body], request: Request) -> Body:
    """The query string as `model` (the last value of a repeated name counts)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as error:
        raise validation_refusal(model, error) from None


async def read_model(
    request: Request, model: type[Body], max_bytes: int, *, optional: bool = False
) -> Body:
    """The request's body as `model` (see parse_model)."""
    return parse_model(model, await read_body(request, max_bytes), optional=optional)


async def read_json(request: Request, max_bytes: int, *, optional: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object (see parse_json_object)."""
    return parse_json_object(await read_body(request, max_bytes), optional=optional)
