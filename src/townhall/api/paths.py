"""Ids in request paths, checked for shape once, before any service sees them.

Every id the server hands out has one shape (service/ids.py). A path segment that
does not have it names nothing, so it is refused here, as the same 404 an unknown
id gets, without touching a store, a cache or a per-id lock: a 60 KB made-up id
costs a regular-expression match and nothing is kept for it. The Starlette routes
read their ids through `space_id` / `user_id`; the listener fast path
(api/fastpath.py) calls `check_space_id` on the segment it cut from the path.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from townhall.api.models import ID_PATTERN
from townhall.domain.errors import NotFound

_ID = re.compile(ID_PATTERN.removesuffix("$") + r"\Z")
SHOWN_ID_CHARS = 40
"""A refusal quotes at most this much of a made-up id."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN_ID_CHARS else value[:SHOWN_ID_CHARS] + "…")


def is_id(value: str) -> bool:
    return _ID.match(value) is not None


def check_space_id(value: str) -> str:
    if not is_id(value):
        raise NotFound(f"there is no space with id {_shown(value)}", code="space_not_found")
    return value


def check_user_id(value: str, code: str = "user_not_found") -> str:
    """`code` is the route's own word for "not here" (not_on_stage, no_request)."""
    if not is_id(value):
        raise NotFound(f"there is no user with id {_shown(value)} here", code=code)
    return value


def space_id(request: Request) -> str:
    """The `{space_id}` of the route, or a 404 if it cannot be one."""
    return check_space_id(request.path_params["space_id"])


def user_id(request: Request, code: str = "user_not_found") -> str:
    """The `{user_id}` of the route, or a 404 with `code` if it cannot be one."""
    return check_user_id(request.path_params["user_id"], code)
