"""Request and response models of the captions API (see api/captions.py)."""

from __future__ import annotations

from pydantic import Field

from townhall.api.models import QueryParameters, ResponseBody

MAX_SINCE_S = 7 * 24 * 3600.0
"""No space runs a week; a larger `since` is a mistake, not a position."""


class CaptionsQuery(QueryParameters):
    """`?since=`: the end (program seconds) of the newest cue the client already has."""

    since: float | None = Field(default=None, ge=0, le=MAX_SINCE_S, allow_inf_nan=False)


class CueOut(ResponseBody):
    start_s: float
    end_s: float
    text: str


class CaptionsAnswer(ResponseBody):
    """Cues in order, each timed in seconds of the program (the replay's clock)."""

    cues: list[CueOut]
