"""The body of a host's edit of a space (api/space_details.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from townhall.api.models import RequestBody, ResponseBody, UserOut
from townhall.domain.space_details import (
    MAX_DESCRIPTION_LENGTH,
    MAX_TOPIC_LENGTH,
    MAX_TOPICS,
    MAX_URL_LENGTH,
)
from townhall.domain.spaces import MAX_TITLE_LENGTH

Topic = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_LENGTH)]


class SpaceEdit(RequestBody):
    """Only the fields sent change; `"pinned_url": null` unpins the link."""

    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    pinned_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH,
                                   examples=["https://example.org/agenda"])  # fmt: skip
    topics: list[Topic] | None = Field(default=None, max_length=MAX_TOPICS)


class ListenerList(ResponseBody):
    """Who is listening: signed-in listeners by name (up to 200), the rest as a count."""

    listeners: int
    signed_in: list[UserOut]
    signed_in_count: int
    anonymous: int
