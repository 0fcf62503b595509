"""The JSON API as data: each operation's route, models and answers, and the OpenAPI
3.1 document built from them.

Each routes module lists its `Operation`s; its Starlette routes are made from that
list, and `GET /openapi.json` is generated from the very same list and the models of
api/models.py that validate the requests, so the published contract cannot drift
from what the server checks. Every operation documents its refusals with the one
error body (`{"error": {"code", "message"}}`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.models import ID_PATTERN, ErrorBody

if TYPE_CHECKING:
    from townhall.services import Services

Handler = Callable[["Services", Request], Awaitable[Response]]
"""A route's code: the node's services (bound once by `routes_of`) and the request."""

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
PATH_PARAMETER = re.compile(r"{(\w+)}")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ID_PARAMETERS = {"space_id": "a space's id", "user_id": "a user's id"}


class Auth(StrEnum):
    """Who may call an operation."""

    NONE = "none"
    OPTIONAL = "optional"
    """Anyone; a signed-in caller may be treated differently (priority lane)."""
    USER = "user"
    OPERATOR = "operator"
    """The operator token (TOWNHALL_ADMIN_TOKEN) as a Bearer token."""


SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.NONE: [],
    Auth.OPTIONAL: [{}, {"bearer": []}, {"session": []}],
    Auth.USER: [{"bearer": []}, {"session": []}],
    Auth.OPERATOR: [{"operator": []}],
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "POST /api/tokens"},
    "session": {"type": "apiKey", "in": "cookie", "name": "th_session"},
    "operator": {"type": "http", "scheme": "bearer", "description": "TOWNHALL_ADMIN_TOKEN"},
}


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it reads, what it answers, who may call it."""

    method: str
    path: str
    endpoint: Handler
    summary: str
    answer: type[BaseModel] | None = None
    """The success body's model; None for no body (204) or a non-JSON one."""
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    auth: Auth = Auth.NONE
    refusals: tuple[int, ...] = ()
    """Statuses this operation may refuse with, beyond the ones its shape implies."""
    media_type: str = "application/json"
    query: type[BaseModel] | None = None
    """The query string's model, if it reads one."""
    other_media_types: tuple[str, ...] = ()
    """Other bodies the success may carry (e.g. text/csv for `?format=csv`)."""

    def route(self, services: Services) -> Route:
        return Route(
            self.path,
            partial(self.endpoint, services),
            methods=[self.method],
            name=self.operation_id,  # a partial has no name of its own
        )

    @property
    def operation_id(self) -> str:
        name = getattr(self.endpoint, "__name__", "") or type(self.endpoint).__name__
        return name.strip("_")

    def refusal_statuses(self) -> list[int]:
        implied = set(self.refusals)
        implied.add(503)  # the store or the shared state cannot be reached right now
        if self.body is not None:
            implied |= {400, 413, 422}
        if PATH_PARAMETER.search(self.path):
            implied.add(404)
        if self.auth in (Auth.USER, Auth.OPERATOR):
            implied |= {401, 403}
        if self.auth is Auth.OPTIONAL:
            implied.add(401)  # a bearer token that is not (or no longer) valid
        if self.auth is Auth.OPERATOR:
            implied.add(429)  # wrong operator tokens from this address: wait
        if self.method in UNSAFE_METHODS and self.auth in (Auth.USER, Auth.OPTIONAL):
            implied.add(415)  # CSRF: a cookie-authenticated write must be declared JSON
        return sorted(implied)


def routes_of(operations: Iterable[Operation], services: Services) -> list[Route]:
    """The operations' routes, their handlers bound to `services`."""
    return [operation.route(services) for operation in operations]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters = []
    for name in PATH_PARAMETER.findall(operation.path):
        schema: dict[str, Any] = {"type": "string"}
        if name in ID_PARAMETERS:
            schema["pattern"] = ID_PATTERN
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": schema,
                "description": ID_PARAMETERS.get(name, name),
            }
        )
    if operation.query is not None:
        schema = operation.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, field_schema in schema["properties"].items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required,
                 "schema": field_schema}
            )  # fmt: skip
    return parameters


def _responses(operation: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": HTTPStatus(operation.status).phrase}
    if operation.answer is not None:
        success["content"] = _json(_ref(operation.answer))
        for media_type in operation.other_media_types:
            success["content"][media_type] = {"schema": {"type": "string"}}
    elif operation.status != 204:
        success["content"] = {operation.media_type: {"schema": {}}}
    responses: dict[str, Any] = {str(operation.status): success}
    for status in operation.refusal_statuses():
        if status == HTTPStatus.NOT_MODIFIED:  # If-None-Match: no body at all
            responses[str(status)] = {"description": HTTPStatus(status).phrase}
            continue
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": _json(_ref(ErrorBody)),
        }
    return responses


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "responses": _responses(operation),
    }
    if parameters := _parameters(operation):
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            "required": operation.body_required,
            "content": _json(_ref(operation.body)),
        }
    document["security"] = SECURITY[operation.auth]
    return document


def _models(operations: Sequence[Operation]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {ErrorBody.__name__: ErrorBody}
    for operation in operations:
        for model in (operation.body, operation.answer):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def openapi_document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    """OpenAPI 3.1 (JSON Schema 2020-12, as pydantic writes it) of `operations`."""
    models = _models(operations)
    _, schemas = models_json_schema(
        [(model, "validation") for model in models], ref_template=SCHEMA_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "townhall",
            "version": version,
            "description": 'Live audio rooms. Errors are {"error": {"code", "message"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def openapi_route(operations: Sequence[Operation], version: str) -> Route:
    """`GET /openapi.json`, rendered once (the operations do not change at run time)."""
    document = openapi_document(operations, version)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document, headers={"cache-control": "public, max-age=300"})

    return Route("/openapi.json", openapi, methods=["GET"])
