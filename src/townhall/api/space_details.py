"""The host's controls beyond the stage: edit the space's details, mute everyone, see
who is listening."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import require_user
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.models import Snapshot
from townhall.api.paths import space_id
from townhall.api.space_detail_models import ListenerList, SpaceEdit

SPACE = "/api/spaces/{space_id}"

if TYPE_CHECKING:
    from townhall.services import Services


def _fresh(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


async def edit_space(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await read_model(request, SpaceEdit, services.settings.http.max_body_bytes)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    snapshot = await services.spaces.edit_details(user, space_id(request), **changes)
    return _fresh(snapshot.body)


async def mute_all(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    snapshot = await services.spaces.mute_all(user, space_id(request))
    return _fresh(snapshot.body)


async def listeners(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    found = await services.audience_list.for_host(user, space_id(request))
    return JSONResponse(found, headers={"cache-control": "no-store"})


OPERATIONS = [
    Operation("PATCH", SPACE, edit_space,
              "Edit the title, description, pinned link or topics (host)", Snapshot,
              body=SpaceEdit, auth=Auth.USER, refusals=(409,)),
    Operation("POST", f"{SPACE}/mute-all", mute_all,
              "Mute every speaker (host: co-hosts too)", Snapshot, auth=Auth.USER,
              refusals=(409,)),
    Operation("GET", f"{SPACE}/listeners", listeners,
              "Who is listening: signed-in listeners by name, others counted (host, co-host)",
              ListenerList, auth=Auth.USER, refusals=(409,)),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
