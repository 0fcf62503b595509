"""The host's controls beyond the stage: edit the space's details, mute everyone, see
who is listening."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from townhall.api.auth import require_user
from townhall.api.bodies import read_model
from townhall.api.contract import Auth, Operation
from townhall.api.models import Snapshot
from townhall.api.paths import space_id
from townhall.api.space_detail_models import ListenerList, SpaceEdit
from townhall.service.audience_list import AudienceList
from townhall.service.spaces import Spaces

SPACE = "/api/spaces/{space_id}"


def _fresh(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


def operations(
    service: Callable[[], Spaces], audience: Callable[[], AudienceList], max_body_bytes: int
) -> list[Operation]:
    async def edit_space(request: Request) -> Response:
        user = await require_user(request)
        body = await read_model(request, SpaceEdit, max_body_bytes)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        snapshot = await service().edit_details(user, space_id(request), **changes)
        return _fresh(snapshot.body)

    async def mute_all(request: Request) -> Response:
        user = await require_user(request)
        snapshot = await service().mute_all(user, space_id(request))
        return _fresh(snapshot.body)

    async def listeners(request: Request) -> Response:
        user = await require_user(request)
        found = await audience().for_host(user, space_id(request))
        return JSONResponse(found, headers={"cache-control": "no-store"})

    return [
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
