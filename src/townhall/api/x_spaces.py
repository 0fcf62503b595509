"""Read-only endpoints shaped like X's public API v2 for Spaces (`/2/spaces...`), so
scripts written for api.x.com work against a townhall deployment.

Answers come from the snapshots (service/x_directory.py), never the database on
the way; they may be cached for a second like the snapshots themselves. A parameter
X would refuse is a 400 with X's body (`errors`, `title`, `detail`, `type`) and ours
(`error.code`, `error.message`) side by side.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.contract import Operation, routes_of
from townhall.api.x_models import (
    XCreatorsQuery,
    XFieldsQuery,
    XIdsQuery,
    XSearchQuery,
    XSpacesAnswer,
)
from townhall.domain.x_spaces import (
    MAX_IDS,
    MAX_QUERY_LENGTH,
    SEARCH_STATES,
    Fields,
    XInvalid,
    comma_list,
    envelope,
    matches,
    not_found,
)

X_ID = re.compile(r"[A-Za-z0-9]{1,13}\Z")
"""What X accepts as a Space id (and a user id, here: ours are 12 of those characters)."""
CACHE_CONTROL = "public, max-age=1"
DEFAULT_MAX_RESULTS = 100
X_REFUSALS = (400, 431)
"""431: a request line past the server's head limit (HttpLimits.max_header_bytes), which
a query string of long multi-byte values can reach before any route sees it."""

if TYPE_CHECKING:
    from townhall.services import Services


def _answer(body: dict[str, object]) -> Response:
    return JSONResponse(body, headers={"cache-control": CACHE_CONTROL})


def _refusal(invalid: XInvalid) -> Response:
    body = {**invalid.body(), "error": {"code": "invalid_request", "message": invalid.message}}
    return JSONResponse(body, status_code=400)


def _ids(value: str | None, parameter: str) -> list[str]:
    ids = comma_list(value, parameter, required=True, max_items=MAX_IDS)
    for one in ids:
        if not X_ID.match(one):
            message = f"The `{parameter}` query parameter value [{one[:40]}] is not a valid id"
            raise XInvalid(parameter, [one[:40]], message)
    return ids


def _search_terms(query: dict[str, str]) -> tuple[str, str, int]:
    text = query.get("query", "")
    if not text.strip() or len(text) > MAX_QUERY_LENGTH:
        message = f"The `query` query parameter must be 1 to {MAX_QUERY_LENGTH} characters"
        raise XInvalid("query", [text[:40]], message)
    state = query.get("state", "all")
    if state not in SEARCH_STATES:
        message = (
            f"The `state` query parameter value [{state[:40]}] is not one of {list(SEARCH_STATES)}"
        )
        raise XInvalid("state", [state[:40]], message)
    limit = query.get("max_results", str(DEFAULT_MAX_RESULTS))
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= DEFAULT_MAX_RESULTS):
        message = f"The `max_results` query parameter must be 1 to {DEFAULT_MAX_RESULTS}"
        raise XInvalid("max_results", [limit[:40]], message)
    return text, state, int(limit)


async def x_space_by_id(services: Services, request: Request) -> Response:
    try:
        fields = Fields.parse(dict(request.query_params))
        (space_id,) = _ids(request.path_params["space_id"], "id")
    except XInvalid as invalid:
        return _refusal(invalid)
    found = await services.x_directory.snapshot(space_id)
    if found is None:
        return _answer(envelope([], fields, errors=[not_found(space_id, "id")]))
    return _answer(envelope([found], fields, single=True))


async def x_spaces_by_ids(services: Services, request: Request) -> Response:
    try:
        fields = Fields.parse(dict(request.query_params))
        ids = _ids(request.query_params.get("ids"), "ids")
    except XInvalid as invalid:
        return _refusal(invalid)
    found, missing = [], []
    for space_id in ids:
        snapshot = await services.x_directory.snapshot(space_id)
        if snapshot is None:
            missing.append(not_found(space_id, "ids"))
        else:
            found.append(snapshot)
    return _answer(envelope(found, fields, errors=missing))


async def x_spaces_by_creators(services: Services, request: Request) -> Response:
    try:
        fields = Fields.parse(dict(request.query_params))
        creators = set(_ids(request.query_params.get("user_ids"), "user_ids"))
    except XInvalid as invalid:
        return _refusal(invalid)
    spaces = await services.x_directory.open_spaces()
    found = [s for s in spaces if s["host"]["id"] in creators]
    return _answer(envelope(found, fields, meta=True))


async def x_search_spaces(services: Services, request: Request) -> Response:
    try:
        query = dict(request.query_params)
        fields = Fields.parse(query)
        text, state, limit = _search_terms(query)
    except XInvalid as invalid:
        return _refusal(invalid)
    spaces = await services.x_directory.open_spaces()
    found = [s for s in spaces if matches(s, text, state)][:limit]
    return _answer(envelope(found, fields, meta=True))


OPERATIONS = [
    Operation("GET", "/2/spaces/search", x_search_spaces,
              "X API v2: live or scheduled spaces whose title has the words",
              XSpacesAnswer, query=XSearchQuery, refusals=X_REFUSALS),
    Operation("GET", "/2/spaces/by/creator_ids", x_spaces_by_creators,
              "X API v2: live or scheduled spaces of these hosts",
              XSpacesAnswer, query=XCreatorsQuery, refusals=X_REFUSALS),
    Operation("GET", "/2/spaces", x_spaces_by_ids, "X API v2: spaces by ids",
              XSpacesAnswer, query=XIdsQuery, refusals=X_REFUSALS),
    Operation("GET", "/2/spaces/{space_id}", x_space_by_id, "X API v2: a space by id",
              XSpacesAnswer, query=XFieldsQuery, refusals=X_REFUSALS),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
