"""Spaces, their stage and reactions: the control-plane routes.

The snapshot route is on the listener path: it answers from memory with an
ETag and a short public cache lifetime, so any HTTP cache in front absorbs
the crowd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address, optional_user, require_user
from townhall.api.bodies import Body, parse_query, read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.models import (
    MAX_SDP_BYTES,
    Accepted,
    AllowedReactions,
    Invited,
    ListingQuery,
    MyStatus,
    NewSpace,
    Reaction,
    Requested,
    SpaceListing,
    SpeakRequests,
    StageAnswer,
    StageChange,
    StageOffer,
    UserChoice,
)
from townhall.api.models import Snapshot as SnapshotOut
from townhall.api.paths import space_id, user_id
from townhall.audience.snapshot import Snapshot
from townhall.domain.reactions import ALLOWED_REACTIONS
from townhall.service.spaces import UserRef

if TYPE_CHECKING:
    from townhall.services import Services

NOT_ON_STAGE = "not_on_stage"
NO_REQUEST = "no_request"
"""The domain's codes (domain/stage.py) for a user id that names nobody on the stage."""
SNAPSHOT_CACHE_CONTROL = "public, max-age=1, stale-while-revalidate=5"




async def _body(services: Services, request: Request, model: type[Body]) -> Body:
    return await read_model(request, model, services.settings.http.max_body_bytes)


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


async def list_spaces(services: Services, request: Request) -> Response:
    page = parse_query(ListingQuery, request)
    body = await services.spaces.listing(page.limit, page.live_offset, page.upcoming_offset)
    return Response(
        body, media_type="application/json", headers={"cache-control": "public, max-age=1"}
    )


async def create_space(services: Services, request: Request) -> Response:
    address = client_address(request)
    services.door.check_address(address)
    user = await require_user(request, services.accounts)
    body = await _body(services, request, NewSpace)
    services.write_limits.create_space(address, user.id)
    snapshot = await services.spaces.create(
        user,
        body.title,
        scheduled_for=body.scheduled_for,
        record=body.record,
        speak_policy=body.speak_policy,
        captions=body.captions,
    )
    return _private(snapshot, status=201)


async def get_space(services: Services, request: Request) -> Response:
    snapshot = await services.spaces.snapshot(space_id(request))
    return snapshot_response(request, snapshot)


async def start_space(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.go_live(user, space_id(request))
    return _private(snapshot)


async def end_space(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.end(user, space_id(request))
    return _private(snapshot)


async def my_status(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    status = await services.spaces.my_status(user, space_id(request))
    return JSONResponse(status, headers={"cache-control": "no-store"})


async def list_requests(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    found = await services.spaces.requests(user, space_id(request))
    return JSONResponse({"requests": found}, headers={"cache-control": "no-store"})


async def request_to_speak(services: Services, request: Request) -> Response:
    services.door.check_address(client_address(request))
    user = await require_user(request, services.accounts)
    await services.spaces.request_to_speak(user, space_id(request))
    return JSONResponse({"requested": True}, status_code=202)


async def drop_request(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    await services.spaces.drop_request(user, space_id(request), user_id(request, NO_REQUEST))
    return Response(status_code=204)


async def invite(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await _body(services, request, UserChoice)
    invited = await services.spaces.invite(user, space_id(request), _target(body))
    return JSONResponse({"invited": invited.to_json()}, status_code=201)


async def put_on_stage(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await _body(services, request, StageChange)
    snapshot = await services.spaces.put_on_stage(
        user, space_id(request), _target(body), body.role
    )
    return _private(snapshot)


async def take_off_stage(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.take_off_stage(
        user, space_id(request), user_id(request, NOT_ON_STAGE)
    )
    return _private(snapshot)


async def mute(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.set_muted(
        user, space_id(request), user_id(request, NOT_ON_STAGE), True
    )
    return _private(snapshot)


async def unmute(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.set_muted(
        user, space_id(request), user_id(request, NOT_ON_STAGE), False
    )
    return _private(snapshot)


async def remove_from_space(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await _body(services, request, UserChoice)
    snapshot = await services.spaces.remove_from_space(user, space_id(request), _target(body))
    return _private(snapshot)


async def react(services: Services, request: Request) -> Response:
    address = client_address(request)
    services.door.check_address(address)
    user = await optional_user(request, services.accounts)
    body = await _body(services, request, Reaction)
    services.write_limits.react(address, user.id if user else None)
    await services.spaces.react(space_id(request), body.emoji)
    return JSONResponse({"accepted": True}, status_code=202)


async def allowed_reactions(services: Services, request: Request) -> Response:
    return JSONResponse(
        {"allowed": list(ALLOWED_REACTIONS)}, headers={"cache-control": "public, max-age=3600"}
    )


async def stage_offer(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await read_model(request, StageOffer, MAX_SDP_BYTES)
    answer = await services.spaces.connect_speaker(user, space_id(request), body.sdp)
    return JSONResponse({"type": "answer", "sdp": answer}, headers={"cache-control": "no-store"})


SPACE = "/api/spaces/{space_id}"
SEAT = f"{SPACE}/stage/{{user_id}}"
USER = Auth.USER

OPERATIONS = [
    Operation("GET", "/api/spaces", list_spaces, "Live and upcoming spaces, paged",
              SpaceListing, query=ListingQuery, refusals=(422,)),
    Operation(
        "POST", "/api/spaces", create_space, "Create a space (scheduled or ready to start)",
        SnapshotOut, 201, NewSpace, auth=USER, refusals=(409, 429),
    ),
    Operation("GET", "/api/reactions", allowed_reactions, "The emoji one can send",
              AllowedReactions),
    Operation("GET", SPACE, get_space, "A space's snapshot (ETag; 304)", SnapshotOut,
              refusals=(304,)),
    Operation("POST", f"{SPACE}/start", start_space, "Go live (host)", SnapshotOut, auth=USER,
              refusals=(409,)),
    Operation("POST", f"{SPACE}/end", end_space, "End the space (host)", SnapshotOut, auth=USER,
              refusals=(409,)),
    Operation("GET", f"{SPACE}/me", my_status, "The caller's role in the space", MyStatus,
              auth=USER),
    Operation("GET", f"{SPACE}/requests", list_requests, "Requests to speak (host, co-host)",
              SpeakRequests, auth=USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/speak-requests", request_to_speak, "Ask to speak", Requested,
              202, auth=USER, refusals=(409, 429)),
    Operation("DELETE", f"{SPACE}/speak-requests/{{user_id}}", drop_request,
              "Decline or withdraw a request to speak", status=204, auth=USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/invitations", invite, "Invite someone to speak", Invited, 201,
              UserChoice, auth=USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/stage/offer", stage_offer,
              "WebRTC offer from someone on stage; the answer carries their mix-minus",
              StageAnswer, body=StageOffer, auth=USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/stage", put_on_stage, "Put someone on stage (host, co-host)",
              SnapshotOut, body=StageChange, auth=USER, refusals=(409,)),
    Operation("DELETE", SEAT, take_off_stage, "Take someone off stage", SnapshotOut,
              auth=USER, refusals=(409,)),
    Operation("POST", f"{SEAT}/mute", mute, "Mute someone on stage", SnapshotOut, auth=USER,
              refusals=(409,)),
    Operation("POST", f"{SEAT}/unmute", unmute, "Unmute oneself", SnapshotOut, auth=USER,
              refusals=(409,)),
    Operation("POST", f"{SPACE}/removals", remove_from_space, "Remove someone from the space",
              SnapshotOut, body=UserChoice, auth=USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/reactions", react, "Send a reaction", Accepted, 202, Reaction,
              auth=Auth.OPTIONAL, refusals=(409, 429)),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
