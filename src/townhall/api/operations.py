"""For operators: the node's vital signs and the attack-mode switch."""

from __future__ import annotations

import hmac
import math
import time
from dataclasses import asdict
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from townhall.admission.token_bucket import KeyedBuckets
from townhall.api.auth import client_address
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.errors import RequestError
from townhall.api.models import AttackModeChange, AttackModeState, Health, Stats
from townhall.config import ADMIN_TOKEN_MIN_CHARS
from townhall.domain.errors import Forbidden, TooManyRequests, Unauthorized
from townhall.service.door import Door

ATTACK_MODES = {"on": True, "off": False, "auto": None}


async def stats(request: Request) -> Response:
    """CPU, loop lag, listeners, queues and refusals: what the load test plots."""
    door: Door = request.app.state.door
    guard = request.app.state.guard
    body = door.stats()
    body["cut_slow_headers"] = guard.cut_slow_headers
    body["cut_slow_bodies"] = guard.cut_slow_bodies
    body["refused_large_heads"] = guard.refused_large_heads
    body["refused_connections"] = guard.caps.refused
    body["fanout"] = {
        room.space_id: asdict(room.program.live.stats) for room in request.app.state.spaces.rooms
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


class OperatorGate:
    """Who may use the operator endpoints: the bearer of the admin token.

    The token is compared in constant time and must be long enough not to be guessed
    (ADMIN_TOKEN_MIN_CHARS; a shorter one turns the endpoints off rather than leave
    them guessable); an address that sends wrong tokens is refused for a while after
    WRONG_TOKENS_BURST of them, whatever it sends next, so guessing cannot be fast
    even from many connections."""

    WRONG_TOKENS_BURST: Final = 5
    WRONG_TOKENS_PER_S: Final = 1 / 60
    """After the burst, one more guess a minute per address."""
    MAX_ADDRESSES: Final = 10_000
    """Addresses whose wrong guesses are remembered (an LRU: bounded however many guess)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._too_short = 0 < len(token) < ADMIN_TOKEN_MIN_CHARS
        self._wrong = KeyedBuckets(
            self.WRONG_TOKENS_PER_S, self.WRONG_TOKENS_BURST, self.MAX_ADDRESSES
        )

    def check(self, authorization: str, address: str) -> None:
        """Raises unless `authorization` is "Bearer <the admin token>"."""
        if not self._token:
            raise Forbidden("operator endpoints are off: set TOWNHALL_ADMIN_TOKEN", code="no_admin")
        if self._too_short:
            raise Forbidden(
                f"operator endpoints are off: TOWNHALL_ADMIN_TOKEN must be at least "
                f"{ADMIN_TOKEN_MIN_CHARS} characters",
                code="admin_token_too_short",
            )
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("send the operator token as a Bearer token", code="sign_in_required")
        now = time.monotonic()
        wait_s = self._wrong.wait_s(address, now)
        if wait_s > 0:
            raise TooManyRequests(
                "too many wrong operator tokens from your address; wait",
                retry_after_s=math.ceil(wait_s),
                code="too_many_attempts",
            )
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            self._wrong.take(address, now)
            raise Forbidden("that is not the operator token", code="forbidden")


async def set_attack_mode(request: Request) -> Response:
    """POST /api/admin/attack-mode {"mode": "on" | "off" | "auto"}."""
    gate: OperatorGate = request.app.state.operator_gate
    gate.check(request.headers.get("authorization", ""), client_address(request))
    max_bytes = request.app.state.settings.http.max_body_bytes
    body = await read_model(request, AttackModeChange, max_bytes)
    door: Door = request.app.state.door
    door.force_attack_mode(ATTACK_MODES[body.mode])
    return JSONResponse({"attack_mode": door.attack.active, "forced": door.attack.forced})


async def health(request: Request) -> Response:
    if getattr(request.app.state, "door", None) is None:
        raise RequestError(503, "starting", "the server is starting")
    return JSONResponse({"ok": True}, headers={"cache-control": "no-store"})


OPERATIONS = [
    Operation("GET", "/api/stats", stats, "The node's vital signs", Stats),
    Operation("GET", "/api/health", health, "Up and serving", Health, refusals=(503,)),
    Operation(
        "POST", "/api/admin/attack-mode", set_attack_mode, "Force attack mode on, off or auto",
        AttackModeState, body=AttackModeChange, auth=Auth.OPERATOR,
    ),
]  # fmt: skip
routes = routes_of(OPERATIONS)
