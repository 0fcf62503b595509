"""Request and response bodies of the clip routes (api/clips.py)."""

from __future__ import annotations

from pydantic import Field

from townhall.api.models import RequestBody, ResponseBody

MAX_CLIP_SECONDS = 24 * 3_600.0
"""Bounds for the schema; the domain (domain/clips.py) has the real limits."""


class NewClip(RequestBody):
    """`{}` or `{"seconds"}`: the last seconds of the live space (default 30).
    `{"start_s", "end_s"}`: that range of the finished recording (host)."""

    seconds: float | None = Field(default=None, ge=0, le=MAX_CLIP_SECONDS)
    start_s: float | None = Field(default=None, ge=0, le=MAX_CLIP_SECONDS)
    end_s: float | None = Field(default=None, ge=0, le=MAX_CLIP_SECONDS)


class ClipOut(ResponseBody):
    id: str
    url: str
    """The audio (audio/mp4)."""
    page_url: str
    """The clip's page, with a player and a share link."""
    expires_at: str
    space_id: str
    source: str = Field(json_schema_extra={"enum": ["live", "recording"]})
    duration_s: float
    created_at: str
    start_s: float | None = None


class ClipList(ResponseBody):
    clips: list[ClipOut]
