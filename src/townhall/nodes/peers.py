"""Calls from one node to another of the same deployment.

A speaker's WebRTC offer sent to a node that does not hold the stage is forwarded
(proxied) to the node that does, and its answer handed back. So is a live clip: the
program's last seconds are in the memory of the stage's node, which cuts it; and a
clip's audio is asked of the node whose disk holds it.
A host's go-live sent to an edge (which holds no stage) is forwarded the same way
to an origin (GO_LIVE_PATH).

Why a proxy and not a 307: a browser drops the Authorization header on a redirect to
another origin, and a cross-origin POST needs CORS; forwarding keeps the speaker's
one request to one origin. The media then flows to the stage's node directly (its ICE
candidates are in the answer). Node to node, the speaker is vouched for by a token
signed with the deployment's shared secret (TOWNHALL_SECRET):
``(kind, user_id, subject_id, expires_at)``, kind "stage-offer" (subject: the space),
"live-clip" (the space; user "" for an anonymous listener) or "clip-audio" (the clip).
"""

from __future__ import annotations

import math
import time
from typing import Final, Protocol

import httpx

from townhall.admission.signing import InvalidToken, Signer
from townhall.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unavailable,
)

KIND: Final = "stage-offer"
HEADER: Final = "x-townhall-stage-offer"
PATH: Final = "/internal/stage/{space_id}/offer"
CLIP_KIND: Final = "live-clip"
CLIP_AUDIO_KIND: Final = "clip-audio"
CLIP_HEADER: Final = "x-townhall-node"
CLIP_PATH: Final = "/internal/spaces/{space_id}/clips"
CLIP_AUDIO_PATH: Final = "/internal/clips/{clip_id}"
CLIP_TIMEOUT_S: Final = 30.0
"""A cut waits for a slot on the stage's node (CutSlots), then runs a stream copy."""
MAX_CLIP_ANSWER_BYTES: Final = 4 * 1024
MAX_CLIP_AUDIO_BYTES: Final = 32 * 1024 * 1024
"""A clip's audio fetched from a peer; a longer answer is refused (the longest recording
clip at the highest bitrate is well under it)."""
TOKEN_TTL_S: Final = 30
FORWARD_TIMEOUT_S: Final = 15.0
"""An answer needs ICE gathering on the stage's node: a few seconds at most."""
MAX_ANSWER_BYTES: Final = 64 * 1024
_FIELDS: Final = 4
_REFUSAL_BY_STATUS: Final[dict[int, type[DomainError]]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


GO_LIVE_KIND: Final = "go-live"
GO_LIVE_PATH: Final = "/internal/spaces/{space_id}/start"
MAX_SNAPSHOT_BYTES: Final = 256 * 1024
HEALTH_PATH: Final = "/api/health"
HEALTH_TIMEOUT_S: Final = 2.0


class PeerNodes(Protocol):
    async def offer(self, node_url: str, space_id: str, user_id: str, sdp: str) -> str:
        """The stage node's SDP answer, or the refusal it gave (as a DomainError)."""

    async def answers(self, node_url: str) -> bool:
        """Whether the node is up (its registration may outlive it by a few seconds)."""

    async def go_live(self, node_url: str, space_id: str, user_id: str) -> None:
        """The space goes live on that node (an origin), or its refusal is raised."""

    async def clip_live(
        self, node_url: str, space_id: str, user_id: str | None, seconds: float
    ) -> str:
        """The id of the clip the stage's node cut, or the refusal it gave."""

    async def clip_audio(self, node_url: str, clip_id: str) -> bytes:
        """The clip's audio from the node that holds it; NotFound if it has none."""

    async def forget_clip(self, node_url: str, clip_id: str) -> None:
        """Tells the node that holds a deleted clip's file to delete it."""


CLIP_BUSY_RETRY_S: Final = 2.0


class ForwardRefused(Exception):
    """The token is not a valid stage-offer token; `code` says why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def issue_token(signer: Signer, user_id: str, space_id: str, now: float, kind: str = KIND) -> str:
    return signer.sign((kind, user_id, space_id, math.floor(now + TOKEN_TTL_S)))


def check_token(signer: Signer, token: str, space_id: str, now: float, kind: str = KIND) -> str:
    """The user id the token vouches for, if it is ours, of this kind, for this subject
    (`space_id`: the space, or the clip for CLIP_AUDIO_KIND) and current."""
    try:
        fields = signer.verify(token)
    except InvalidToken as exc:
        raise ForwardRefused(exc.reason) from None
    if len(fields) != _FIELDS or fields[0] != kind or not fields[3].isdecimal():
        raise ForwardRefused("malformed")
    if fields[2] != space_id:
        raise ForwardRefused("other_space")
    if now >= int(fields[3]):
        raise ForwardRefused("expired")
    return fields[1]


class HttpPeerNodes:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    async def offer(self, node_url: str, space_id: str, user_id: str, sdp: str) -> str:
        token = issue_token(self._signer, user_id, space_id, time.time())
        url = node_url.rstrip("/") + PATH.format(space_id=space_id)
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as http:
                answer = await http.post(url, json={"sdp": sdp}, headers={HEADER: token})
        except httpx.HTTPError:
            raise Conflict(
                "the node that holds this space's stage did not answer; try again",
                code="stage_node_unreachable",
            ) from None
        body = _body(answer, MAX_ANSWER_BYTES)
        if answer.status_code == 200 and isinstance(body.get("sdp"), str):
            return str(body["sdp"])
        raise _refusal(answer.status_code, body)

    async def go_live(self, node_url: str, space_id: str, user_id: str) -> None:
        token = issue_token(self._signer, user_id, space_id, time.time(), GO_LIVE_KIND)
        url = node_url.rstrip("/") + GO_LIVE_PATH.format(space_id=space_id)
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as http:
                answer = await http.post(url, headers={HEADER: token})
        except httpx.HTTPError:
            raise Conflict(
                "the origin chosen for this space did not answer; try again",
                code="stage_node_unreachable",
            ) from None
        body = _body(answer, MAX_SNAPSHOT_BYTES)
        if answer.status_code != 200:
            raise _refusal(answer.status_code, body)

    async def clip_live(
        self, node_url: str, space_id: str, user_id: str | None, seconds: float
    ) -> str:
        token = issue_token(self._signer, user_id or "", space_id, time.time(), CLIP_KIND)
        url = node_url.rstrip("/") + CLIP_PATH.format(space_id=space_id)
        unreachable = Conflict(
            "the node that holds this space's audio did not answer; try again",
            code="stage_node_unreachable",
        )
        try:
            async with httpx.AsyncClient(timeout=CLIP_TIMEOUT_S) as http:
                answer = await http.post(
                    url, json={"seconds": seconds}, headers={CLIP_HEADER: token}
                )
        except httpx.HTTPError:
            raise unreachable from None
        if len(answer.content) > MAX_CLIP_ANSWER_BYTES:
            raise unreachable
        try:
            body = answer.json()
        except ValueError:
            raise unreachable from None
        if not isinstance(body, dict):
            raise unreachable
        if answer.status_code == 201 and isinstance(body.get("id"), str):
            return str(body["id"])
        if answer.status_code in (429, 503):
            raise Unavailable("too many clips are being made right now", CLIP_BUSY_RETRY_S,
                              code="clips_busy")  # fmt: skip
        raise _refusal(answer.status_code, body, otherwise=unreachable)

    async def clip_audio(self, node_url: str, clip_id: str) -> bytes:
        token = issue_token(self._signer, "", clip_id, time.time(), CLIP_AUDIO_KIND)
        url = node_url.rstrip("/") + CLIP_AUDIO_PATH.format(clip_id=clip_id)
        gone = NotFound(f"there is no clip with id {clip_id!r}", code="clip_not_found")
        audio = bytearray()
        try:
            async with (
                httpx.AsyncClient(timeout=CLIP_TIMEOUT_S) as http,
                http.stream("GET", url, headers={CLIP_HEADER: token}) as answer,
            ):
                if answer.status_code != 200:
                    raise gone
                async for chunk in answer.aiter_bytes():
                    audio += chunk
                    if len(audio) > MAX_CLIP_AUDIO_BYTES:
                        raise gone
        except httpx.HTTPError:
            raise Unavailable("the node that holds this clip did not answer", CLIP_BUSY_RETRY_S,
                              code="clip_node_unreachable") from None  # fmt: skip
        return bytes(audio)

    async def forget_clip(self, node_url: str, clip_id: str) -> None:
        token = issue_token(self._signer, "", clip_id, time.time(), CLIP_AUDIO_KIND)
        url = node_url.rstrip("/") + CLIP_AUDIO_PATH.format(clip_id=clip_id)
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as http:
                answer = await http.delete(url, headers={CLIP_HEADER: token})
        except httpx.HTTPError:
            raise Unavailable("the node that holds this clip did not answer", CLIP_BUSY_RETRY_S,
                              code="clip_node_unreachable") from None  # fmt: skip
        if answer.status_code != 204:
            raise Conflict(f"the clip's node answered {answer.status_code}", code="clip_kept")

    async def answers(self, node_url: str) -> bool:
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as http:
                return (await http.get(node_url.rstrip("/") + HEALTH_PATH)).status_code == 200
        except httpx.HTTPError:
            return False


def _body(answer: httpx.Response, max_bytes: int) -> dict[str, object]:
    """The peer's JSON answer (an object), or {} when it is not one."""
    if len(answer.content) > max_bytes:
        raise Conflict("the other node answered nonsense", code="stage_node_unreachable")
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(
    status: int, body: dict[str, object], otherwise: DomainError | None = None
) -> DomainError:
    """The other node's refusal as the same domain error, to be passed on (`otherwise`
    when the answer is not a refusal this node knows)."""
    error = body.get("error")
    if isinstance(error, dict) and status in _REFUSAL_BY_STATUS:
        kind = _REFUSAL_BY_STATUS[status]
        return kind(str(error.get("message", "refused")), code=str(error.get("code")))
    if otherwise is not None:
        return otherwise
    return Conflict(
        f"the node that holds this space's stage refused ({status})",
        code="stage_node_unreachable",
    )
