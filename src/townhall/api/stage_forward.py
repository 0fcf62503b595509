"""POST /internal/stage/{space_id}/offer: a speaker's offer forwarded by another node
of the deployment (see townhall.nodes.peers), answered here where the stage is; and
POST /internal/spaces/{space_id}/start: a host's go-live forwarded by an edge, which
holds no stage (townhall.nodes.roles)."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.bodies import read_json
from townhall.api.errors import error_response
from townhall.nodes.peers import (
    GO_LIVE_KIND,
    GO_LIVE_PATH,
    HEADER,
    PATH,
    ForwardRefused,
    check_token,
)

if TYPE_CHECKING:
    from townhall.services import Services

MAX_SDP_BYTES = 64 * 1024


async def forwarded_offer(services: Services, request: Request) -> Response:
    space_id = request.path_params["space_id"]
    try:
        user_id = check_token(
            services.signer, request.headers.get(HEADER, ""), space_id, time.time()
        )
    except ForwardRefused as refused:
        return error_response(403, "forward_refused", f"not a node of ours ({refused.code})")
    body = await read_json(request, MAX_SDP_BYTES)
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        return error_response(422, "bad_sdp", "sdp must be a non-empty string")
    answer = await services.spaces.connect_forwarded_speaker(user_id, space_id, sdp)
    return JSONResponse({"type": "answer", "sdp": answer}, headers={"cache-control": "no-store"})


async def forwarded_go_live(services: Services, request: Request) -> Response:
    space_id = request.path_params["space_id"]
    token = request.headers.get(HEADER, "")
    try:
        user_id = check_token(services.signer, token, space_id, time.time(), GO_LIVE_KIND)
    except ForwardRefused as refused:
        return error_response(403, "forward_refused", f"not a node of ours ({refused.code})")
    snapshot = await services.spaces.go_live_forwarded(user_id, space_id)
    return Response(
        snapshot.body, media_type="application/json", headers={"cache-control": "no-store"}
    )


def routes(services: Services) -> list[Route]:
    return [
        Route(PATH, partial(forwarded_offer, services), methods=["POST"]),
        Route(GO_LIVE_PATH, partial(forwarded_go_live, services), methods=["POST"]),
    ]
