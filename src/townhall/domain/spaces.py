"""A space's durable record and its lifecycle: scheduled -> live -> ended.

Nothing here touches a clock or a database: callers pass `now` and persist the
returned copy, which keeps every rule testable in isolation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from townhall.domain.captions import CaptionsWithheld
from townhall.domain.errors import Conflict, Invalid

MAX_TITLE_LENGTH = 120


class SpaceState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class SpeakPolicy(StrEnum):
    """Who may ask to come on stage."""

    EVERYONE = "everyone"
    INVITED = "invited"


@dataclass(frozen=True)
class User:
    id: str
    username: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


@dataclass(frozen=True)
class Space:
    id: str
    title: str
    host: User
    state: SpaceState
    created_at: datetime
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    record: bool = False
    speak_policy: SpeakPolicy = SpeakPolicy.EVERYONE
    recording_seconds: float | None = None
    """Length of the finished recording; None while there is none to replay."""
    description: str = ""
    pinned_url: str | None = None
    """A link the host pins for listeners (domain/space_details.py checks it)."""
    topics: tuple[str, ...] = ()
    captions: bool = False
    """The host asked for live captions (domain/captions.py: chosen at creation)."""
    captions_withheld: CaptionsWithheld | None = None
    """Why it went live without the captions it asked for; set by the node starting it."""

    @property
    def is_live(self) -> bool:
        return self.state is SpaceState.LIVE

    def require_not_ended(self, action: str) -> None:
        if self.state is SpaceState.ENDED:
            raise Conflict(f"cannot {action}: the space has ended", code="space_ended")

    def require_live(self, action: str) -> None:
        self.require_not_ended(action)
        if self.state is not SpaceState.LIVE:
            raise Conflict(f"cannot {action}: the space is not live yet", code="space_not_live")

    def start(self, now: datetime) -> Space:
        self.require_not_ended("start")
        if self.state is SpaceState.LIVE:
            raise Conflict("the space is already live", code="already_live")
        return replace(self, state=SpaceState.LIVE, started_at=now)

    def end(self, now: datetime) -> Space:
        self.require_not_ended("end")
        return replace(self, state=SpaceState.ENDED, ended_at=now)


def check_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip():
        raise Invalid("title must be a non-empty string", code="invalid_title")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_LENGTH:
        raise Invalid(f"title must be at most {MAX_TITLE_LENGTH} characters", code="invalid_title")
    return title


def parse_timestamp(value: str, field: str) -> datetime:
    """ISO-8601 with an offset, or naive meaning UTC (what datetime-local inputs send)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        message = f"{field} must be an ISO-8601 date and time"
        raise Invalid(message, code="invalid_" + field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_schedule(value: object, now: datetime, max_days: int) -> datetime | None:
    """A start time in the future, no further ahead than `max_days`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("scheduled_for must be an ISO-8601 string", code="invalid_scheduled_for")
    moment = parse_timestamp(value, "scheduled_for")
    if moment <= now:
        raise Invalid("scheduled_for must be in the future", code="invalid_scheduled_for")
    if moment > now + timedelta(days=max_days):
        raise Invalid(
            f"scheduled_for must be at most {max_days} days ahead", code="invalid_scheduled_for"
        )
    return moment


def check_speak_policy(value: object) -> SpeakPolicy:
    if value is None:
        return SpeakPolicy.EVERYONE
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return SpeakPolicy(value)
    allowed = ", ".join(p.value for p in SpeakPolicy)
    raise Invalid(f"speak_policy must be one of: {allowed}", code="invalid_speak_policy")


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
