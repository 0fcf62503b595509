"""What the API process does for its stream workers' joins (townhall.edge.joins).

A worker answers an anonymous join with no token itself, from a grant of admissions
the door made for it (``POST /internal/admissions``, ``Door.grant``): the same
decision, taken ahead for a handful of arrivals, so most joins of a crowd never
cross a process. Every other join (signed in, a queue token, a proof of work, no
grant left) it forwards here, to the ordinary join route, naming the listener's
address in ``x-townhall-client`` beside its relay token: the answer is then the very
one a direct join gets, and per-address limits see the listener, not the worker.
"""

from __future__ import annotations

import ipaddress
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.admission.signing import Signer
from townhall.api.bodies import read_json
from townhall.api.errors import JsonError, error_body
from townhall.domain.errors import DomainError
from townhall.edge.joins import ADMISSIONS_PATH
from townhall.edge.relay_token import HEADER as RELAY_HEADER_NAME
from townhall.edge.relay_token import RelayRefused, check_relay_token
from townhall.nodes.roles import EDGE
from townhall.service.listener_nodes import StreamBases

if TYPE_CHECKING:
    from townhall.services import Services

CLIENT_HEADER: Final = b"x-townhall-client"
"""The listener's address, set by a stream worker that forwards its join."""
RELAY_HEADER: Final = RELAY_HEADER_NAME.encode("latin-1")
MAX_GRANT: Final = 10_000
"""Admissions one request may ask for (a worker asks for ~a quarter second's worth)."""
MAX_GRANT_BODY_BYTES: Final = 1_024
GRANT_VALID_S: Final = 0.5
"""How long a worker may use a grant: a space that ends, a line that forms or attack
mode that comes on reaches the workers' joins within this."""


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def forwarded_client(scope: Any, signer: Signer) -> str | None:
    """The listener's address of a join a stream worker forwarded (relay token checked),
    else None (an ordinary request, or a header nobody may set but our workers)."""
    client = _header(scope, CLIENT_HEADER)
    if client is None:
        return None
    token = _header(scope, RELAY_HEADER)
    if token is None:
        return None
    try:
        check_relay_token(signer, token.decode("latin-1"), time.time())
        return str(ipaddress.ip_address(client.decode("latin-1")))
    except (RelayRefused, ValueError):
        return None


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GRANT:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_GRANT}")
    return value


async def grant_admissions(services: Services, request: Request) -> Response:
    """POST /internal/admissions ``{"space_id", "want", "joins", "returned"}`` from a
    stream worker:
    ``{"granted", "valid_s", "ticket_ttl_s", "stage_url", "hls_url", "limits"}``
    (``stage_url``/``hls_url``: where the listeners go, as a join here would send them,
    None for this node; ``limits``: the
    worker's per-address and per-prefix ``[rate, burst]``, or None when off). ``joins`` is how many
    joins it answered itself since its last request (counted as the door's own);
    ``returned`` the admissions of its grants that expired unused (back to the budget)."""
    try:
        check_relay_token(
            services.signer, (request.headers.get(RELAY_HEADER_NAME) or ""), time.time()
        )
    except RelayRefused as refused:
        return _error(403, "relay_refused", f"not a stream worker ({refused.code})")
    body = await read_json(request, MAX_GRANT_BODY_BYTES)
    space_id = body.get("space_id")
    try:
        if not isinstance(space_id, str):
            raise ValueError("space_id must be a string")
        want, joins = _count(body, "want"), _count(body, "joins")
        returned = _count(body, "returned")
    except ValueError as bad:
        return _error(422, "bad_grant_request", str(bad))
    spaces = services.spaces
    granted = 0
    bases = StreamBases(None, None)
    try:
        (await spaces.record(space_id)).require_live("join")
        if services.settings.role != EDGE:  # an edge's workers serve its own relay
            bases = await services.listener_nodes.bases(space_id)
        granted = services.door.grant(space_id, want, joins, returned)
    except DomainError:  # not live (or gone): the worker forwards, the join says why
        services.door.grant(space_id, 0, joins, returned)
    limits = services.door.worker_limits(services.settings.edge.stream_workers)
    answer = {
        "granted": granted,
        "valid_s": GRANT_VALID_S,
        "ticket_ttl_s": services.settings.ticket_ttl_s,
        "stage_url": bases.live,
        "hls_url": bases.hls,
        "limits": None if limits is None else [[spec.rate, spec.burst] for spec in limits],
    }
    return JSONResponse(answer, headers={"cache-control": "no-store"})


def _error(status: int, code: str, message: str) -> Response:
    return JsonError(status, error_body(code, message), headers={"cache-control": "no-store"})


def routes(services: Services) -> list[Route]:
    return [Route(ADMISSIONS_PATH, partial(grant_admissions, services), methods=["POST"])]
