"""Clip routes: make one, fetch its audio and details, delete it.

The audio answer is an immutable file (a clip never changes; it only goes away), so
any HTTP cache in front can serve a clip that goes viral.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address, optional_user, require_user
from townhall.api.bodies import read_model
from townhall.api.clip_models import ClipList, ClipOut, NewClip
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.paths import space_id
from townhall.domain.clips import Clip
from townhall.domain.errors import Invalid
from townhall.domain.spaces import iso

CLIP = "/api/clips/{clip_id}"
AUDIO_MAX_AGE_S = 86_400
LISTED_CLIPS = 50

if TYPE_CHECKING:
    from townhall.services import Services


def clip_json(clip: Clip) -> dict[str, object]:
    return {
        "id": clip.id,
        "url": f"/api/clips/{clip.id}",
        "page_url": f"/c/{clip.id}",
        "expires_at": iso(clip.expires_at),
        "space_id": clip.space_id,
        "source": clip.source.value,
        "duration_s": clip.duration_s,
        "created_at": iso(clip.created_at),
        "start_s": clip.start_s,
    }


async def create_clip(services: Services, request: Request) -> Response:
    body = await read_model(request, NewClip, services.settings.http.max_body_bytes, optional=True)
    address = client_address(request)
    if body.start_s is not None or body.end_s is not None:
        if body.start_s is None or body.end_s is None:
            raise Invalid("a recording clip needs both start_s and end_s",
                          code="invalid_end_s")  # fmt: skip
        host = await require_user(request, services.accounts)
        clip = await services.clips.clip_recording(
            host, address, space_id(request), body.start_s, body.end_s
        )
    else:
        user = await optional_user(request, services.accounts)
        clip = await services.clips.clip_live(user, address, space_id(request), body.seconds)
    return JSONResponse(clip_json(clip), status_code=201, headers={"cache-control": "no-store"})


async def space_clips(services: Services, request: Request) -> Response:
    found = await services.clips.of_space(space_id(request), LISTED_CLIPS)
    return JSONResponse(
        {"clips": [clip_json(c) for c in found]}, headers={"cache-control": "no-store"}
    )


async def clip_audio(services: Services, request: Request) -> Response:
    clip, audio = await services.clips.audio(request.path_params["clip_id"])
    lifetime_s = int((clip.expires_at - clip.created_at).total_seconds())
    max_age = max(0, min(AUDIO_MAX_AGE_S, lifetime_s))
    disposition = "attachment" if request.query_params.get("download") else "inline"
    headers = {"cache-control": f"public, max-age={max_age}, immutable"}
    if isinstance(audio, bytes):  # held by another node, fetched from there
        headers["content-disposition"] = f'{disposition}; filename="clip-{clip.id}.m4a"'
        return Response(audio, media_type="audio/mp4", headers=headers)
    return FileResponse(
        audio,
        media_type="audio/mp4",
        filename=f"clip-{clip.id}.m4a",
        content_disposition_type=disposition,
        headers=headers,
    )


async def clip_info(services: Services, request: Request) -> Response:
    clip = await services.clips.get(request.path_params["clip_id"])
    return JSONResponse(clip_json(clip), headers={"cache-control": "public, max-age=60"})


async def delete_clip(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    await services.clips.delete(user, request.path_params["clip_id"])
    return Response(status_code=204)


OPERATIONS = [
    Operation("POST", "/api/spaces/{space_id}/clips", create_clip,
              "Clip the last seconds of a live space, or (host) a range of its recording",
              ClipOut, 201, NewClip, body_required=False, auth=Auth.OPTIONAL,
              refusals=(403, 409, 429)),
    Operation("GET", "/api/spaces/{space_id}/clips", space_clips,
              "The space's clips, newest first", ClipList),
    Operation("GET", CLIP, clip_audio, "A clip's audio (immutable)",
              media_type="audio/mp4"),
    Operation("GET", f"{CLIP}/info", clip_info, "A clip's details", ClipOut),
    Operation("DELETE", CLIP, delete_clip, "Delete a clip (the host, or its author)",
              status=204, auth=Auth.USER),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
