"""Calls from one node to another of the same deployment.

A speaker's WebRTC offer sent to a node that does not hold the stage is forwarded
(proxied) to the node that does, and its answer handed back.

Why a proxy and not a 307: a browser drops the Authorization header on a redirect to
another origin, and a cross-origin POST needs CORS; forwarding keeps the speaker's
one request to one origin. The media then flows to the stage's node directly (its ICE
candidates are in the answer). Node to node, the speaker is vouched for by a token
signed with the deployment's shared secret (TOWNHALL_SECRET):
``("stage-offer", user_id, space_id, expires_at)``.
"""

from __future__ import annotations

import math
import time
from typing import Final, Protocol

import httpx

from townhall.admission.signing import InvalidToken, Signer
from townhall.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound

KIND: Final = "stage-offer"
HEADER: Final = "x-townhall-stage-offer"
PATH: Final = "/internal/stage/{space_id}/offer"
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


HEALTH_PATH: Final = "/api/health"
HEALTH_TIMEOUT_S: Final = 2.0


class PeerNodes(Protocol):
    async def offer(self, node_url: str, space_id: str, user_id: str, sdp: str) -> str:
        """The stage node's SDP answer, or the refusal it gave (as a DomainError)."""

    async def answers(self, node_url: str) -> bool:
        """Whether the node is up (its registration may outlive it by a few seconds)."""


class ForwardRefused(Exception):
    """The token is not a valid stage-offer token; `code` says why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def issue_token(signer: Signer, user_id: str, space_id: str, now: float) -> str:
    return signer.sign((KIND, user_id, space_id, math.floor(now + TOKEN_TTL_S)))


def check_token(signer: Signer, token: str, space_id: str, now: float) -> str:
    """The speaker's user id if the token is ours, for this space and current."""
    try:
        fields = signer.verify(token)
    except InvalidToken as exc:
        raise ForwardRefused(exc.reason) from None
    if len(fields) != _FIELDS or fields[0] != KIND or not fields[3].isdecimal():
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
        if len(answer.content) > MAX_ANSWER_BYTES:
            raise Conflict("the stage's node answered nonsense", code="stage_node_unreachable")
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code == 200 and isinstance(body.get("sdp"), str):
            return str(body["sdp"])
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and answer.status_code in _REFUSAL_BY_STATUS:
            kind = _REFUSAL_BY_STATUS[answer.status_code]
            raise kind(str(error.get("message", "refused")), code=str(error.get("code")))
        raise Conflict(
            f"the node that holds this space's stage refused ({answer.status_code})",
            code="stage_node_unreachable",
        )

    async def answers(self, node_url: str) -> bool:
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as http:
                return (await http.get(node_url.rstrip("/") + HEALTH_PATH)).status_code == 200
        except httpx.HTTPError:
            return False
