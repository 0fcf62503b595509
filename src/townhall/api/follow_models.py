"""Bodies of the follow, reminder, notification and webhook routes (api/follows.py),
published in GET /openapi.json like api/models.py's."""

from __future__ import annotations

from pydantic import Field

from townhall.api.models import QueryParameters, ResponseBody, UserOut

MAX_FEED_CURSOR = 2**62


class FeedQuery(QueryParameters):
    """`GET /api/me/notifications`: newest first; `before` is the last id seen."""

    limit: int = Field(default=50, ge=1, le=100)
    before: int | None = Field(default=None, ge=1, le=MAX_FEED_CURSOR)


class Relation(ResponseBody):
    user: UserOut
    following: bool
    followers: int


class Reminder(ResponseBody):
    space_id: str
    reminded: bool


class Notification(ResponseBody):
    id: int
    kind: str = Field(examples=["space_live", "space_scheduled"])
    space_id: str
    actor_id: str
    url: str
    created_at: str


class Feed(ResponseBody):
    notifications: list[Notification]
    next_before: int | None = None


class AnnouncementProgress(ResponseBody):
    kind: str
    notified: int
    reached: int
    waves: int
    paced: bool
    done: bool


class NotifyProgress(ResponseBody):
    space_id: str
    followers: int
    reminders: int
    announcements: dict[str, AnnouncementProgress]


class WebhookDelivery(ResponseBody):
    id: str
    event: str
    status: str
    attempts: int
    last_status_code: int | None = None
    last_error: str = ""


class WebhookLog(ResponseBody):
    enabled: bool
    deliveries: list[WebhookDelivery]
