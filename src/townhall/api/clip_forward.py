"""Clips asked of this node by another node of the deployment (see townhall.nodes.peers):
POST /internal/spaces/{space_id}/clips cuts a live clip here, where the space's program
runs; GET /internal/clips/{clip_id} hands over the audio of a clip whose file is here,
and DELETE deletes that file (its row was deleted by the node that asks).
Each request carries a token signed with the deployment's secret."""

from __future__ import annotations

import math
import time
from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from townhall.api.bodies import read_json
from townhall.api.errors import error_response
from townhall.nodes.peers import (
    CLIP_AUDIO_KIND,
    CLIP_AUDIO_PATH,
    CLIP_HEADER,
    CLIP_KIND,
    CLIP_PATH,
    ForwardRefused,
    check_token,
)

if TYPE_CHECKING:
    from townhall.services import Services

MAX_BODY_BYTES = 1024
NO_STORE = {"cache-control": "no-store"}


def _refused(refused: ForwardRefused) -> Response:
    return error_response(403, "forward_refused", f"not a node of ours ({refused.code})")


async def forwarded_clip(services: Services, request: Request) -> Response:
    space_id = request.path_params["space_id"]
    token = request.headers.get(CLIP_HEADER, "")
    try:
        user_id = check_token(services.signer, token, space_id, time.time(), CLIP_KIND)
    except ForwardRefused as refused:
        return _refused(refused)
    seconds = (await read_json(request, MAX_BODY_BYTES)).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return error_response(422, "invalid_seconds", "seconds must be a number")
    if not math.isfinite(seconds):
        return error_response(422, "invalid_seconds", "seconds must be finite")
    clip = await services.clips.clip_forwarded(user_id or None, space_id, float(seconds))
    return JSONResponse({"id": clip.id}, status_code=201, headers=NO_STORE)


async def clip_file(services: Services, request: Request) -> Response:
    clip_id = request.path_params["clip_id"]
    token = request.headers.get(CLIP_HEADER, "")
    try:
        check_token(services.signer, token, clip_id, time.time(), CLIP_AUDIO_KIND)
    except ForwardRefused as refused:
        return _refused(refused)
    path = await services.clips.local_audio(clip_id)
    return FileResponse(path, media_type="audio/mp4", headers=NO_STORE)


async def forget_clip_file(services: Services, request: Request) -> Response:
    clip_id = request.path_params["clip_id"]
    token = request.headers.get(CLIP_HEADER, "")
    try:
        check_token(services.signer, token, clip_id, time.time(), CLIP_AUDIO_KIND)
    except ForwardRefused as refused:
        return _refused(refused)
    services.clips.forget_local(clip_id)
    return Response(status_code=204)


def routes(services: Services) -> list[Route]:
    return [
        Route(CLIP_PATH, partial(forwarded_clip, services), methods=["POST"]),
        Route(CLIP_AUDIO_PATH, partial(clip_file, services), methods=["GET"]),
        Route(CLIP_AUDIO_PATH, partial(forget_clip_file, services), methods=["DELETE"]),
    ]
