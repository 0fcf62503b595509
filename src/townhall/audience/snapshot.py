"""A space's public details as one pre-serialized JSON document.

Everything a listener's page shows is rendered once per change (at most once
per tick for counts) and then served from memory to every listener with an
ETag: a flash crowd costs a dictionary lookup and a socket write per request,
never a database query or a JSON encode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from townhall.domain.spaces import Space, User, iso
from townhall.domain.stage import Role, Stage

ROLE_ORDER = {Role.HOST: 0, Role.COHOST: 1, Role.SPEAKER: 2}


@dataclass(frozen=True)
class Snapshot:
    body: bytes
    etag: str
    data: dict[str, Any]


def audience_json(
    people: Iterable[User], stage_ids: Iterable[str], listeners: int
) -> dict[str, Any]:
    """The audience every page shows: signed-in listeners' names (those on stage are
    shown there instead) and how many others listen. Bounded by what the state keeps
    (AUDIENCE_REPORT_MAX); public: ids and usernames, as the stage shows them."""
    on_stage = set(stage_ids)
    shown = [person.to_json() for person in people if person.id not in on_stage]
    return {"people": shown, "others": max(0, listeners - len(shown))}


def snapshot_data(
    space: Space,
    stage: Stage | None,
    *,
    listeners: int,
    reactions: dict[str, int],
    peak_listeners: int = 0,
    speaking: Iterable[str] = (),
    connected: Iterable[str] = (),
    recording_url: str | None = None,
    captions: bool = False,
    audience: Iterable[User] = (),
) -> dict[str, Any]:
    speaking, connected = set(speaking), set(connected)
    seats = stage.seats.items() if stage else []
    names = stage.names if stage else {}
    on_stage = sorted(seats, key=lambda item: (ROLE_ORDER[item[1].role], names.get(item[0], "")))
    stage_json = [
        {
            "user": {
                "id": uid,
                "username": space.host.username if uid == space.host.id else names.get(uid, ""),
            },
            "role": seat.role.value,
            "muted": seat.muted,
            "speaking": uid in speaking and not seat.muted,
            "connected": uid in connected,
        }
        for uid, seat in on_stage
    ]
    if not stage_json:
        stage_json = [
            {
                "user": space.host.to_json(),
                "role": Role.HOST.value,
                "muted": False,
                "speaking": False,
                "connected": False,
            }
        ]
    return {
        "id": space.id,
        "title": space.title,
        "state": space.state.value,
        "host": space.host.to_json(),
        "stage": stage_json,
        "listeners": listeners,
        "audience": audience_json(audience, (seat["user"]["id"] for seat in stage_json), listeners),
        "peak_listeners": max(peak_listeners, listeners),
        "reactions": reactions,
        "scheduled_for": iso(space.scheduled_for),
        "started_at": iso(space.started_at),
        "ended_at": iso(space.ended_at),
        "created_at": iso(space.created_at),
        "description": space.description,
        "pinned_url": space.pinned_url,
        "topics": list(space.topics),
        "record": space.record,
        "speak_policy": (stage.speak_policy if stage else space.speak_policy).value,
        "recording_url": recording_url,
        "page_url": f"/s/{space.id}",
        "captions": captions,
        "captions_requested": space.captions,
        "captions_withheld": space.captions_withheld.value if space.captions_withheld else None,
    }


def render(data: dict[str, Any]) -> Snapshot:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    return Snapshot(body=body, etag=etag, data=data)
