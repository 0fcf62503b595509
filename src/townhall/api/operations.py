"""For operators: the node's vital signs and the attack-mode switch."""

from __future__ import annotations

import hmac
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.errors import RequestError
from townhall.api.models import AttackModeChange, AttackModeState, Health, Stats
from townhall.domain.errors import Forbidden, Unauthorized
from townhall.service.door import Door

ATTACK_MODES = {"on": True, "off": False, "auto": None}


async def stats(request: Request) -> Response:
    """CPU, loop lag, listeners, queues and refusals: what the load test plots."""
    door: Door = request.app.state.door
    guard = request.app.state.guard
    body = door.stats()
    body["cut_slow_headers"] = guard.cut_slow_headers
    body["cut_slow_bodies"] = guard.cut_slow_bodies
    body["refused_connections"] = guard.caps.refused
    body["fanout"] = {
        room.space_id: asdict(room.program.live.stats) for room in request.app.state.spaces.rooms
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


def _require_operator(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    if not expected:
        raise Forbidden("operator endpoints are off: set TOWNHALL_ADMIN_TOKEN", code="no_admin")
    presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not presented:
        raise Unauthorized("send the operator token as a Bearer token", code="sign_in_required")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("that is not the operator token", code="forbidden")


async def set_attack_mode(request: Request) -> Response:
    """POST /api/admin/attack-mode {"mode": "on" | "off" | "auto"}."""
    _require_operator(request)
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
