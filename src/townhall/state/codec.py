"""Space records as JSON for a shared state backend (the store keeps its own rows)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from townhall.domain.captions import CaptionsWithheld
from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def space_to_json(space: Space) -> str:
    data: dict[str, Any] = {
        "id": space.id,
        "title": space.title,
        "host": space.host.to_json(),
        "state": space.state.value,
        "created_at": space.created_at.isoformat(),
        "scheduled_for": space.scheduled_for.isoformat() if space.scheduled_for else None,
        "started_at": space.started_at.isoformat() if space.started_at else None,
        "ended_at": space.ended_at.isoformat() if space.ended_at else None,
        "record": space.record,
        "speak_policy": space.speak_policy.value,
        "recording_seconds": space.recording_seconds,
        "description": space.description,
        "pinned_url": space.pinned_url,
        "topics": list(space.topics),
        "captions": space.captions,
        "captions_withheld": space.captions_withheld.value if space.captions_withheld else None,
    }
    return json.dumps(data, separators=(",", ":"))


def space_from_json(text: str | bytes) -> Space:
    data = json.loads(text)
    created = _moment(data["created_at"])
    assert created is not None
    return Space(
        id=data["id"],
        title=data["title"],
        host=User(data["host"]["id"], data["host"]["username"]),
        state=SpaceState(data["state"]),
        created_at=created,
        scheduled_for=_moment(data["scheduled_for"]),
        started_at=_moment(data["started_at"]),
        ended_at=_moment(data["ended_at"]),
        record=bool(data["record"]),
        speak_policy=SpeakPolicy(data["speak_policy"]),
        recording_seconds=data["recording_seconds"],
        description=data.get("description", ""),
        pinned_url=data.get("pinned_url"),
        topics=tuple(data.get("topics", ())),
        captions=bool(data.get("captions", False)),
        captions_withheld=_withheld(data.get("captions_withheld")),
    )


def _withheld(value: str | None) -> CaptionsWithheld | None:
    return CaptionsWithheld(value) if value else None
