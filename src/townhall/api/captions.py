"""Captions of a space: JSON cues for the page, WebVTT for players and the replay, and
the HLS master playlist with the captions as a subtitle rendition.

`/hls/{id}/index.m3u8` stays the audio media playlist every existing player reads
(and the `hls_url` of a join answer); `/hls/{id}/master.m3u8` is the multivariant
playlist that adds the subtitle group. A master playlist at the old URL would have
broken the LL-HLS blocking reloads (`_HLS_msn`) that players send to it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.bodies import parse_query
from townhall.api.caption_models import CaptionsAnswer, CaptionsQuery
from townhall.api.contract import Operation, routes_of
from townhall.api.listening import HEADABLE, HLS_PLAYLIST_CACHE
from townhall.api.paths import space_id as path_space_id
from townhall.audience.hls import HlsSegment
from townhall.audience.program import HLS_PLAYLIST_CONTENT_TYPE
from townhall.audience.subtitles import (
    caption_segment,
    captions_playlist,
    master_playlist,
    settled_segments,
)
from townhall.domain.errors import NotFound
from townhall.media import SAMPLE_RATE
from townhall.service.captions import Captions

if TYPE_CHECKING:
    from townhall.services import Services

CAPTIONS_CACHE = "public, max-age=1"
"""Every listener polls the same few `since` values: a cache in front absorbs them."""
WEBVTT_CONTENT_TYPE = "text/vtt; charset=utf-8"


async def captions(services: Services, request: Request) -> Response:
    """The cues, or only those ending after `since`."""
    query = parse_query(CaptionsQuery, request)
    cues = services.captions.cues(path_space_id(request), query.since)
    return JSONResponse(
        {"cues": [cue.to_json() for cue in cues]}, headers={"cache-control": CAPTIONS_CACHE}
    )


async def captions_vtt(services: Services, request: Request) -> Response:
    body = services.captions.webvtt(path_space_id(request))
    return Response(body, media_type=WEBVTT_CONTENT_TYPE, headers={"cache-control": CAPTIONS_CACHE})


async def hls_master(services: Services, request: Request) -> Response:
    space_id = path_space_id(request)
    program = services.captions.program(space_id)
    body = master_playlist(
        program.settings.bitrate,
        captions=services.captions.captioner(space_id) is not None,
        opus_bitrate=program.opus.bitrate if program.opus is not None else None,
    )
    return _playlist(body)


async def hls_captions(services: Services, request: Request) -> Response:
    space_id = path_space_id(request)
    segments, target_duration, _ = _settled(services.captions, space_id)
    ended = services.captions.program(space_id).hls.ended
    return _playlist(captions_playlist(segments, target_duration, ended=ended))


async def hls_caption_segment(services: Services, request: Request) -> Response:
    space_id = path_space_id(request)
    try:
        sequence = int(request.path_params["sequence"])
    except ValueError:
        raise NotFound("no such captions segment", code="not_found") from None
    segments, _, priming_s = _settled(services.captions, space_id)
    for segment in segments:
        if segment.sequence == sequence:
            cues = services.captions.cues(space_id)
            body = caption_segment(cues, segment, priming_s=priming_s)
            return Response(
                body,
                media_type=WEBVTT_CONTENT_TYPE,
                headers={"cache-control": "public, max-age=31536000, immutable"},
            )
    raise NotFound("that captions segment is not available (yet)", code="not_found")


def _settled(captions: Captions, space_id: str) -> tuple[list[HlsSegment], int, float]:
    """The settled caption segments, the target duration and the encoder priming."""
    program = captions.program(space_id)
    captioner = captions.captioner(space_id)
    if captioner is None:
        raise NotFound("this space has no captions", code="no_captions")
    hls = program.hls
    latest = hls.latest_sequence
    listed = [] if latest is None else range(hls.media_sequence, latest + 1)
    segments = [s for s in (hls.segment_info(n) for n in listed) if s is not None]
    priming_s = program.priming_samples / SAMPLE_RATE
    settled = settled_segments(segments, captioner.fed_s, priming_s=priming_s, ended=hls.ended)
    return settled, hls.target_duration, priming_s


def _playlist(body: bytes) -> Response:
    return Response(
        body,
        media_type=HLS_PLAYLIST_CONTENT_TYPE,
        headers={"cache-control": HLS_PLAYLIST_CACHE},
    )


OPERATIONS = [
    Operation(
        "GET", "/api/spaces/{space_id}/captions", captions,
        "Live captions of the space, or those of its replay", CaptionsAnswer,
        query=CaptionsQuery, refusals=(422,),
    ),
    Operation(
        "GET", "/api/spaces/{space_id}/captions.vtt", captions_vtt,
        "The captions as WebVTT", media_type="text/vtt",
    ),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    """Before the listener path's `/hls/{space_id}/{name}`, which would take these."""
    return [
        *routes_of(OPERATIONS, services),
        Route("/hls/{space_id}/master.m3u8", partial(hls_master, services), methods=HEADABLE),
        Route("/hls/{space_id}/captions.m3u8", partial(hls_captions, services), methods=HEADABLE),
        Route(
            "/hls/{space_id}/captions/{sequence}.vtt",
            partial(hls_caption_segment, services),
            methods=HEADABLE,
        ),
    ]
