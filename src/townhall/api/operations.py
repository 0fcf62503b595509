"""For operators: the node's vital signs and the attack-mode switch."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.errors import RequestError
from townhall.api.models import AttackModeChange, AttackModeState, Health, Stats
from townhall.service.door import Door

if TYPE_CHECKING:
    from townhall.services import Services

ATTACK_MODES = {"on": True, "off": False, "auto": None}


async def stats(services: Services, request: Request) -> Response:
    """CPU, loop lag, listeners, queues and refusals: what the load test plots."""
    door: Door = services.door
    guard = services.guard
    body = door.stats()
    body["cut_slow_headers"] = guard.cut_slow_headers
    body["cut_slow_bodies"] = guard.cut_slow_bodies
    body["refused_large_heads"] = guard.refused_large_heads
    body["refused_connections"] = guard.caps.refused
    body["fanout"] = {
        room.space_id: asdict(room.program.live.stats) for room in services.spaces.rooms
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def set_attack_mode(services: Services, request: Request) -> Response:
    """POST /api/admin/attack-mode {"mode": "on" | "off" | "auto"}."""
    services.operator_gate.check(request.headers.get("authorization", ""), client_address(request))
    max_bytes = services.settings.http.max_body_bytes
    body = await read_model(request, AttackModeChange, max_bytes)
    door: Door = services.door
    await door.set_attack_mode(ATTACK_MODES[body.mode])
    return JSONResponse({"attack_mode": door.attack.active, "forced": door.attack.forced})


async def health(services: Services, request: Request) -> Response:
    if not services.started:
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


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
