"""Spaces, their stage and reactions: the control-plane routes.

The snapshot route is on the listener path: it answers from memory with an
ETag and a short public cache lifetime, so any HTTP cache in front absorbs
the crowd.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address, require_user
from townhall.api.bodies import read_json
from townhall.api.errors import RequestError
from townhall.audience.snapshot import Snapshot
from townhall.domain.reactions import ALLOWED_REACTIONS
from townhall.service.spaces import Spaces, UserRef

SNAPSHOT_CACHE_CONTROL = "public, max-age=1, stale-while-revalidate=5"
MAX_SDP_BYTES = 32 * 1024


def _spaces(request: Request) -> Spaces:
    return request.app.state.spaces


async def _body(request: Request, optional: bool = False) -> dict[str, Any]:
    return await read_json(
        request, request.app.state.settings.http.max_body_bytes, optional=optional
    )


def snapshot_response(request: Request, snapshot: Snapshot, status: int = 200) -> Response:
    headers = {"etag": snapshot.etag, "cache-control": SNAPSHOT_CACHE_CONTROL}
    if status == 200 and snapshot.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(
        snapshot.body, status_code=status, media_type="application/json", headers=headers
    )


def _private(snapshot: Snapshot, status: int = 200) -> Response:
    """A snapshot returned by an action: fresh for its caller, never cached."""
    return Response(
        snapshot.body,
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


async def list_spaces(request: Request) -> Response:
    body = await _spaces(request).listing()
    return Response(
        body, media_type="application/json", headers={"cache-control": "public, max-age=1"}
    )


async def create_space(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request)
    snapshot = await _spaces(request).create(
        user,
        body.get("title"),
        scheduled_for=body.get("scheduled_for"),
        record=body.get("record", False),
        speak_policy=body.get("speak_policy"),
    )
    return _private(snapshot, status=201)


async def get_space(request: Request) -> Response:
    snapshot = await _spaces(request).snapshot(request.path_params["space_id"])
    return snapshot_response(request, snapshot)


async def start_space(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).go_live(user, request.path_params["space_id"])
    return _private(snapshot)


async def end_space(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).end(user, request.path_params["space_id"])
    return _private(snapshot)


async def my_status(request: Request) -> Response:
    user = await require_user(request)
    status = await _spaces(request).my_status(user, request.path_params["space_id"])
    return JSONResponse(status, headers={"cache-control": "no-store"})


async def list_requests(request: Request) -> Response:
    user = await require_user(request)
    found = await _spaces(request).requests(user, request.path_params["space_id"])
    return JSONResponse({"requests": found}, headers={"cache-control": "no-store"})


async def request_to_speak(request: Request) -> Response:
    request.app.state.door.check_address(client_address(request))
    user = await require_user(request)
    await _spaces(request).request_to_speak(user, request.path_params["space_id"])
    return JSONResponse({"requested": True}, status_code=202)


async def drop_request(request: Request) -> Response:
    user = await require_user(request)
    params = request.path_params
    await _spaces(request).drop_request(user, params["space_id"], params["user_id"])
    return Response(status_code=204)


async def invite(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request)
    invited = await _spaces(request).invite(
        user, request.path_params["space_id"], UserRef.from_body(body)
    )
    return JSONResponse({"invited": invited.to_json()}, status_code=201)


async def put_on_stage(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request)
    snapshot = await _spaces(request).put_on_stage(
        user, request.path_params["space_id"], UserRef.from_body(body), body.get("role")
    )
    return _private(snapshot)


async def take_off_stage(request: Request) -> Response:
    user = await require_user(request)
    params = request.path_params
    snapshot = await _spaces(request).take_off_stage(user, params["space_id"], params["user_id"])
    return _private(snapshot)


async def mute(request: Request) -> Response:
    user = await require_user(request)
    params = request.path_params
    snapshot = await _spaces(request).set_muted(user, params["space_id"], params["user_id"], True)
    return _private(snapshot)


async def unmute(request: Request) -> Response:
    user = await require_user(request)
    params = request.path_params
    snapshot = await _spaces(request).set_muted(user, params["space_id"], params["user_id"], False)
    return _private(snapshot)


async def remove_from_space(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request)
    snapshot = await _spaces(request).remove_from_space(
        user, request.path_params["space_id"], UserRef.from_body(body)
    )
    return _private(snapshot)


async def react(request: Request) -> Response:
    request.app.state.door.check_address(client_address(request))
    body = await _body(request)
    await _spaces(request).react(request.path_params["space_id"], body.get("emoji"))
    return JSONResponse({"accepted": True}, status_code=202)


async def allowed_reactions(request: Request) -> Response:
    return JSONResponse(
        {"allowed": list(ALLOWED_REACTIONS)}, headers={"cache-control": "public, max-age=3600"}
    )


async def stage_offer(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, MAX_SDP_BYTES)
    if body.get("type") != "offer":
        raise RequestError(422, "bad_sdp", 'type must be "offer"')
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise RequestError(422, "bad_sdp", "sdp must be a non-empty string")
    answer = await _spaces(request).connect_speaker(user, request.path_params["space_id"], sdp)
    return JSONResponse({"type": "answer", "sdp": answer}, headers={"cache-control": "no-store"})


SPACE = "/api/spaces/{space_id}"

routes = [
    Route("/api/spaces", list_spaces, methods=["GET"]),
    Route("/api/spaces", create_space, methods=["POST"]),
    Route("/api/reactions", allowed_reactions, methods=["GET"]),
    Route(SPACE, get_space, methods=["GET"]),
    Route(f"{SPACE}/start", start_space, methods=["POST"]),
    Route(f"{SPACE}/end", end_space, methods=["POST"]),
    Route(f"{SPACE}/me", my_status, methods=["GET"]),
    Route(f"{SPACE}/requests", list_requests, methods=["GET"]),
    Route(f"{SPACE}/speak-requests", request_to_speak, methods=["POST"]),
    Route(f"{SPACE}/speak-requests/{{user_id}}", drop_request, methods=["DELETE"]),
    Route(f"{SPACE}/invitations", invite, methods=["POST"]),
    Route(f"{SPACE}/stage/offer", stage_offer, methods=["POST"]),
    Route(f"{SPACE}/stage", put_on_stage, methods=["POST"]),
    Route(f"{SPACE}/stage/{{user_id}}", take_off_stage, methods=["DELETE"]),
    Route(f"{SPACE}/stage/{{user_id}}/mute", mute, methods=["POST"]),
    Route(f"{SPACE}/stage/{{user_id}}/unmute", unmute, methods=["POST"]),
    Route(f"{SPACE}/removals", remove_from_space, methods=["POST"]),
    Route(f"{SPACE}/reactions", react, methods=["POST"]),
]
