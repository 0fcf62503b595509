"""GET /hls/{space_id}/... on an edge: the origin's HLS through the edge's cache
(townhall.service.edge_hls). Only an edge has these routes; elsewhere the packager's
own (api/listening.py) answer.

The cache key is the path and the LL-HLS query alone (`_HLS_msn`, `_HLS_part`): other
query parameters cannot make a crowd's requests miss it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from townhall.api.auth import client_address
from townhall.api.paths import space_id as path_space_id

if TYPE_CHECKING:
    from townhall.services import Services

KEYED_QUERY = ("_HLS_msn", "_HLS_part")
"""The query parameters that name a playlist state (a blocking reload)."""


def cache_key(request: Request) -> str:
    query = [
        (name, request.query_params[name]) for name in KEYED_QUERY if name in request.query_params
    ]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


async def edge_hls(services: Services, request: Request) -> Response:
    space_id = path_space_id(request)
    space = await services.spaces.record(space_id)
    space.require_live("listen")
    assert services.edge_hls is not None  # routed only on an edge
    answer = await services.edge_hls.get(space_id, cache_key(request))
    relayed = services.relayed_programs
    if relayed is not None and answer.status == 200 and request.url.path.endswith(".m3u8"):
        user_agent = request.headers.get("user-agent", "")
        relayed.saw_hls(space_id, client_address(request), user_agent)
    headers = {**answer.headers, "access-control-allow-origin": "*"}  # the join's page
    return Response(answer.body, status_code=answer.status, headers=headers)


def routes(services: Services) -> list[Route]:
    if services.edge_hls is None:
        return []
    return [
        Route("/hls/{space_id}/{path:path}", partial(edge_hls, services), methods=["GET", "HEAD"])
    ]
