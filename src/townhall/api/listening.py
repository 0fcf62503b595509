"""The listener path: join, HLS and the recording.

None of these routes reads the database: the space record, the snapshot and
the media all live in memory, and tickets are checked by HMAC alone.
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from townhall.api import stream_urls
from townhall.api.auth import client_address, optional_user
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.errors import JsonError, error_body
from townhall.api.models import JoinAnswer, JoinRequest
from townhall.api.paths import space_id as path_space_id
from townhall.audience.hls import HlsPackager
from townhall.audience.llhls import BLOCKING_TIMEOUT_TARGETS, ReloadRequest
from townhall.audience.opus_rendition import OPUS_FOLDER, OPUS_PLAYLIST_URI
from townhall.audience.program import ProgramOutput
from townhall.config import Settings
from townhall.domain.errors import Forbidden, Invalid, NotFound
from townhall.domain.spaces import User
from townhall.edge.relay_token import HEADER as RELAY_HEADER
from townhall.edge.relay_token import RelayRefused, check_relay_token
from townhall.service.door import Door
from townhall.service.listener_nodes import StreamBases
from townhall.service.spaces import Spaces

if TYPE_CHECKING:
    from townhall.services import Services

HEADABLE = ["GET", "HEAD"]
HLS_PLAYLIST_CACHE = "public, max-age=1"
HLS_IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
SEGMENT_NAME = re.compile(r"^(\d{1,12})\.m4s$")
PART_NAME = re.compile(r"^(\d{1,12})\.(\d{1,6})\.m4s$")
HLS_BLOCKING_CACHE = "public, max-age=6"
"""A blocking reload's answer lists the part it asked for; later copies only add more."""


async def join(services: Services, request: Request) -> Response:
    """A ticket for the live stream, or a place in line (API.md); never a wait on I/O."""
    spaces = services.spaces
    door: Door = services.door
    door.check_address(client_address(request))
    space_id = path_space_id(request)
    space = await spaces.record(space_id)
    space.require_live("join")
    user = await optional_user(request, services.accounts)
    await refuse_if_removed(spaces, space_id, user)
    settings = services.settings
    body = await read_model(request, JoinRequest, settings.http.max_body_bytes, optional=True)
    answer = await door.join(space_id, user, join_fields(body))
    if "ticket" in answer:
        bases = await listener_bases(services, space_id, rejoin=body.ticket is not None)
        base = bases.live or live_base(request, settings)
        add_stream_urls(answer, space_id, settings, base, bases.hls)
    return JSONResponse(answer, headers={"cache-control": "no-store"})


async def listener_bases(services: Services, space_id: str, rejoin: bool) -> StreamBases:
    """Where a join answer sends its listener. `rejoin`: the join brought a ticket back,
    so the listener's stream dropped: first find out whether the stage's node died."""
    if rejoin:
        await services.spaces.stream_dropped(space_id)
    return await services.listener_nodes.bases(space_id, rejoin)


def join_fields(body: JoinRequest) -> dict[str, Any]:
    """The join body as the door reads it: only the fields that were sent."""
    return body.model_dump(exclude_none=True)


async def refuse_if_removed(spaces: Spaces, space_id: str, user: User | None) -> None:
    if user is not None and await spaces.is_removed(space_id, user.id):
        raise Forbidden("you were removed from this space", code="removed")


def add_stream_urls(
    answer: dict[str, Any],
    space_id: str,
    settings: Settings,
    live_url_base: str,
    stage_url: str | None = None,
) -> None:
    """A ticket comes with where to use it: the live stream (here, on the stream port,
    or on the node that holds the stage: `stage_url`) and the HLS playlist, which needs
    no ticket (townhall.api.stream_urls, shared with the stream workers)."""
    hls_base = stage_url or settings.public_url
    stream_urls.add_stream_urls(
        answer, space_id, live_url_base, hls_base, settings.audio.opus_bitrate > 0
    )


def live_base(request: Request, settings: Settings) -> str:
    """Where the live stream is served (townhall.api.stream_urls.live_url_base)."""
    edge = settings.edge
    return stream_urls.live_url_base(
        edge,
        edge.resolved_stream_port(settings.port),
        settings.public_url,
        settings.host,
        request.url.scheme,
        request.url.hostname,
    )


def _room_program(services: Services, request: Request) -> ProgramOutput:
    room = services.spaces.rooms.get(path_space_id(request))
    if room is None:
        raise NotFound("this space is not live on this server", code="not_live")
    return room.program


def _opus_hls(program: ProgramOutput) -> HlsPackager:
    opus = program.opus
    if opus is None:
        raise NotFound("this server makes no Opus rendition", code="not_found")
    opus.demand()  # encoded only once someone asks for it (townhall.audience.opus_rendition)
    return opus.hls


async def hls_playlist(services: Services, request: Request) -> Response:
    """The live playlist; with `_HLS_msn` (and `_HLS_part`) a blocking reload answered
    as soon as that segment (part) exists (LL-HLS, see townhall.audience.llhls). The
    answer to a blocking reload names a playlist state, so caches may keep it."""
    program = _room_program(services, request)
    return await _playlist(request, program, opus=False, listener=_listener(services, request))


async def opus_playlist(services: Services, request: Request) -> Response:
    """The Opus rendition's live playlist: the same LL-HLS as the AAC one."""
    program = _room_program(services, request)
    return await _playlist(request, program, opus=True, listener=_listener(services, request))


def _listener(services: Services, request: Request) -> bool:
    """Whether a playlist poll is a listener's: an edge's cache (townhall.service.edge_hls)
    says it is one with a relay token, and counts its own listeners."""
    token = request.headers.get(RELAY_HEADER)
    if token is None:
        return True
    try:
        check_relay_token(services.signer, token, time.time())
    except RelayRefused:
        return True
    return False


async def _playlist(
    request: Request, program: ProgramOutput, *, opus: bool, listener: bool = True
) -> Response:
    hls = _opus_hls(program) if opus else program.hls
    if listener:
        program.hls_pollers.saw(client_address(request), request.headers.get("user-agent", ""))
    try:
        reload = ReloadRequest.from_query(
            request.query_params.get("_HLS_msn"), request.query_params.get("_HLS_part")
        )
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_hls_request") from None
    cache = HLS_PLAYLIST_CACHE
    if reload is not None:
        if hls.is_too_far_ahead(reload):
            raise Invalid("_HLS_msn is too far ahead of the live edge", code="hls_msn_ahead")
        timeout_s = BLOCKING_TIMEOUT_TARGETS * max(1, hls.target_duration)
        if not await hls.updates.until(lambda: hls.is_ready(reload), timeout_s):
            return JsonError(
                503,
                error_body("hls_not_ready", "that part is late; reload"),
                headers={"cache-control": "no-store", "retry-after": "1"},
            )
        cache = HLS_BLOCKING_CACHE
    playlist = hls.playlist()
    hls.audience.served(len(playlist), time.monotonic())
    return Response(
        playlist, media_type="application/vnd.apple.mpegurl", headers={"cache-control": cache}
    )


async def hls_file(services: Services, request: Request) -> Response:
    return await _file(request, _room_program(services, request).hls)


async def opus_file(services: Services, request: Request) -> Response:
    return await _file(request, _opus_hls(_room_program(services, request)))


async def _file(request: Request, hls: HlsPackager) -> Response:
    name = request.path_params["name"]
    if name == "init.mp4":
        body = hls.init_segment()
    elif match := PART_NAME.match(name):
        body = await _part_when_ready(hls, int(match.group(1)), int(match.group(2)))
    else:
        match = SEGMENT_NAME.match(name)
        if match is None:
            raise NotFound(f"no HLS file named {name!r}", code="not_found")
        body = hls.segment(int(match.group(1)))
    if body is None:
        return JsonError(
            404,
            error_body("not_found", f"{name} is not available (yet)"),
            headers={"cache-control": "public, max-age=1"},
        )
    media_address = None if name == "init.mp4" else client_address(request)
    hls.audience.served(len(body), time.monotonic(), media_address)
    return Response(
        body,
        media_type="video/mp4" if name == "init.mp4" else "audio/mp4",
        headers={"cache-control": HLS_IMMUTABLE_CACHE},
    )


async def _part_when_ready(hls: HlsPackager, sequence: int, index: int) -> bytes | None:
    """A part; the one the playlist hints at next (EXT-X-PRELOAD-HINT) is waited for,
    about a part's time twice over, rather than answered with a 404. A part that will
    never come (skipped, expired, too far ahead) is None at once."""
    wanted = ReloadRequest(sequence, index)

    def settled() -> bool:
        return hls.part(sequence, index) is not None or hls.ended or hls.is_ready(wanted)

    if not hls.is_too_far_ahead(wanted):
        await hls.updates.until(settled, 2 * hls.part_target_s + 1)
    return hls.part(sequence, index)


async def recording(services: Services, request: Request) -> Response:
    spaces = services.spaces
    space_id = path_space_id(request)
    path = await spaces.recording_path(space_id)
    space = await spaces.record(space_id)
    safe_title = re.sub(r"[^A-Za-z0-9 _-]+", "", space.title).strip() or space_id
    disposition = "attachment" if request.query_params.get("download") else "inline"
    return FileResponse(
        path,
        media_type="audio/mp4",
        filename=f"{safe_title}.m4a",
        content_disposition_type=disposition,
        headers={"cache-control": "public, max-age=3600"},
    )


OPERATIONS = [
    Operation(
        "POST", "/api/spaces/{space_id}/join", join,
        "A ticket for the live stream, or a place in line", JoinAnswer, body=JoinRequest,
        body_required=False, auth=Auth.OPTIONAL, refusals=(403, 409, 429, 503),
    ),
    Operation(
        "GET", "/api/spaces/{space_id}/recording", recording,
        "The recorded audio, after the end", media_type="audio/mp4",
    ),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return [
        *routes_of(OPERATIONS, services),
        Route("/hls/{space_id}/index.m3u8", partial(hls_playlist, services), methods=HEADABLE),
        Route(
            f"/hls/{{space_id}}/{OPUS_PLAYLIST_URI}",
            partial(opus_playlist, services),
            methods=HEADABLE,
        ),
        Route(
            f"/hls/{{space_id}}/{OPUS_FOLDER}/{{name}}",
            partial(opus_file, services),
            methods=HEADABLE,
        ),
        Route("/hls/{space_id}/{name}", partial(hls_file, services), methods=HEADABLE),
    ]
