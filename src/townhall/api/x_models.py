"""Query strings and answers of the X-compatible read API (api/x_spaces.py), for the
OpenAPI document. The values are comma lists checked by domain/x_spaces.py, which
refuses them as X does (400 "Invalid Request")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from townhall.api.models import QueryParameters, ResponseBody
from townhall.domain.x_spaces import MAX_QUERY_LENGTH

LIST_CHARS = 512
"""Every field name X has, comma separated, is ~250 characters."""
IDS_CHARS = 1_400
"""100 ids of up to 13 characters and their commas."""


class XFieldsQuery(QueryParameters):
    space_fields: str | None = Field(
        default=None, alias="space.fields", max_length=LIST_CHARS,
        description="Comma list, e.g. title,host_ids",
    )  # fmt: skip
    expansions: str | None = Field(
        default=None, max_length=LIST_CHARS, description="Comma list, e.g. host_ids,creator_id"
    )
    user_fields: str | None = Field(default=None, alias="user.fields", max_length=LIST_CHARS)


class XIdsQuery(XFieldsQuery):
    ids: str = Field(max_length=IDS_CHARS, description="Up to 100 space ids, comma separated")


class XCreatorsQuery(XFieldsQuery):
    user_ids: str = Field(max_length=IDS_CHARS, description="Up to 100 user ids")


class XSearchQuery(XFieldsQuery):
    query: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH,
                       description="Words that must all be in the title")  # fmt: skip
    state: Literal["live", "scheduled", "all"] = "all"
    max_results: int = Field(default=100, ge=1, le=100)


class XSpacesAnswer(ResponseBody):
    """X's envelope: `data` is one Space (by id) or a list; `errors` lists ids that name
    nothing; `meta.result_count` comes with searches and creator lookups."""

    data: dict[str, Any] | list[dict[str, Any]] | None = None
    includes: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
