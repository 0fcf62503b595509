"""Spaces, their stage and reactions: the control-plane routes.

The snapshot route is on the listener path: it answers from memory with an
ETag and a short public cache lifetime, so any HTTP cache in front absorbs
the crowd.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address, require_user
from townhall.api.bodies import Body, read_model
from townhall.api.models import (
    MAX_SDP_BYTES,
    NewSpace,
    Reaction,
    StageChange,
    StageOffer,
    UserChoice,
)
from townhall.api.paths import space_id, user_id
from townhall.audience.snapshot import Snapshot
from townhall.domain.reactions import ALLOWED_REACTIONS
from townhall.service.spaces import Spaces, UserRef

NOT_ON_STAGE = "not_on_stage"
NO_REQUEST = "no_request"
"""The domain's codes (domain/stage.py) for a user id that names nobody on the stage."""
SNAPSHOT_CACHE_CONTROL = "public, max-age=1, stale-while-revalidate=5"


def _spaces(request: Request) -> Spaces:
    return request.app.state.spaces


async def _body(request: Request, model: type[Body]) -> Body:
    return await read_model(request, model, request.app.state.settings.http.max_body_bytes)


def _target(body: UserChoice) -> UserRef:
    return UserRef(body.user_id, body.username)


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
    body = await _body(request, NewSpace)
    snapshot = await _spaces(request).create(
        user,
        body.title,
        scheduled_for=body.scheduled_for,
        record=body.record,
        speak_policy=body.speak_policy,
    )
    return _private(snapshot, status=201)


async def get_space(request: Request) -> Response:
    snapshot = await _spaces(request).snapshot(space_id(request))
    return snapshot_response(request, snapshot)


async def start_space(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).go_live(user, space_id(request))
    return _private(snapshot)


async def end_space(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).end(user, space_id(request))
    return _private(snapshot)


async def my_status(request: Request) -> Response:
    user = await require_user(request)
    status = await _spaces(request).my_status(user, space_id(request))
    return JSONResponse(status, headers={"cache-control": "no-store"})


async def list_requests(request: Request) -> Response:
    user = await require_user(request)
    found = await _spaces(request).requests(user, space_id(request))
    return JSONResponse({"requests": found}, headers={"cache-control": "no-store"})


async def request_to_speak(request: Request) -> Response:
    request.app.state.door.check_address(client_address(request))
    user = await require_user(request)
    await _spaces(request).request_to_speak(user, space_id(request))
    return JSONResponse({"requested": True}, status_code=202)


async def drop_request(request: Request) -> Response:
    user = await require_user(request)
    await _spaces(request).drop_request(user, space_id(request), user_id(request, NO_REQUEST))
    return Response(status_code=204)


async def invite(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request, UserChoice)
    invited = await _spaces(request).invite(user, space_id(request), _target(body))
    return JSONResponse({"invited": invited.to_json()}, status_code=201)


async def put_on_stage(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request, StageChange)
    snapshot = await _spaces(request).put_on_stage(
        user, space_id(request), _target(body), body.role
    )
    return _private(snapshot)


async def take_off_stage(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).take_off_stage(
        user, space_id(request), user_id(request, NOT_ON_STAGE)
    )
    return _private(snapshot)


async def mute(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).set_muted(
        user, space_id(request), user_id(request, NOT_ON_STAGE), True
    )
    return _private(snapshot)


async def unmute(request: Request) -> Response:
    user = await require_user(request)
    snapshot = await _spaces(request).set_muted(
        user, space_id(request), user_id(request, NOT_ON_STAGE), False
    )
    return _private(snapshot)


async def remove_from_space(request: Request) -> Response:
    user = await require_user(request)
    body = await _body(request, UserChoice)
    snapshot = await _spaces(request).remove_from_space(user, space_id(request), _target(body))
    return _private(snapshot)


async def react(request: Request) -> Response:
    request.app.state.door.check_address(client_address(request))
    body = await _body(request, Reaction)
    await _spaces(request).react(space_id(request), body.emoji)
    return JSONResponse({"accepted": True}, status_code=202)


async def allowed_reactions(request: Request) -> Response:
    return JSONResponse(
        {"allowed": list(ALLOWED_REACTIONS)}, headers={"cache-control": "public, max-age=3600"}
    )


async def stage_offer(request: Request) -> Response:
    user = await require_user(request)
    body = await read_model(request, StageOffer, MAX_SDP_BYTES)
    answer = await _spaces(request).connect_speaker(user, space_id(request), body.sdp)
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
