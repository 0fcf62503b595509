"""Spaces as X's public API v2 shows them, made from our snapshots. Pure: no I/O.

Scripts written for `api.x.com/2/spaces` read `data` (one object or a list), `includes`
(the users that `expansions` asked for), `errors` (one entry per id that names nothing,
with X's problem type) and `meta.result_count`. Fields are asked for with
`space.fields` / `user.fields`; `id` and `state` always come, like on X; a field we
have no value for is left out, as X leaves out what does not apply (ended_at of a
live space). Timestamps are X's `2021-07-06T18:40:40.000Z`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SPACE_FIELDS = (
    "created_at", "creator_id", "ended_at", "host_ids", "id", "invited_user_ids", "is_ticketed",
    "lang", "participant_count", "scheduled_start", "speaker_ids", "started_at", "state",
    "subscriber_count", "title", "topic_ids", "updated_at",
)  # fmt: skip
"""Every `space.fields` value X accepts (the ones we have no data for are omitted)."""
DEFAULT_SPACE_FIELDS = ("id", "state")
EXPANSIONS = ("creator_id", "host_ids", "invited_user_ids", "speaker_ids", "topic_ids")
USER_FIELDS = (
    "affiliation", "connection_status", "created_at", "description", "entities", "id",
    "location", "most_recent_tweet_id", "name", "pinned_tweet_id", "profile_banner_url",
    "profile_image_url", "protected", "public_metrics", "receives_your_dm", "subscription_type",
    "url", "username", "verified", "verified_type", "withheld",
)  # fmt: skip
DEFAULT_USER_FIELDS = ("id", "name", "username")
SEARCH_STATES = ("live", "scheduled", "all")
MAX_IDS = 100
MAX_QUERY_LENGTH = 512
ID_SHAPE_MAX = 64
PROBLEM_NOT_FOUND = "https://api.twitter.com/2/problems/resource-not-found"
PROBLEM_INVALID = "https://api.twitter.com/2/problems/invalid-request"
STAGE_HOST_ROLES = ("host", "cohost")


class XInvalid(ValueError):
    """A parameter X would refuse with 400 "Invalid Request"."""

    def __init__(self, parameter: str, values: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.values = list(values)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "errors": [{"parameters": {self.parameter: self.values}, "message": self.message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": PROBLEM_INVALID,
        }


def comma_list(
    value: str | None, parameter: str, allowed: Iterable[str] | None = None, *,
    required: bool = False, max_items: int | None = None,
) -> list[str]:  # fmt: skip
    """`a,b,c` as a list without duplicates, each checked against `allowed`."""
    if value is None or not value.strip():
        if required:
            raise XInvalid(parameter, [], f"The `{parameter}` query parameter can not be empty")
        return []
    items = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if allowed is not None:
        known = set(allowed)
        for item in items:
            if item not in known:
                message = (f"The `{parameter}` query parameter value [{item[:ID_SHAPE_MAX]}] "
                           f"is not one of [{','.join(sorted(known))}]")  # fmt: skip
                raise XInvalid(parameter, [item[:ID_SHAPE_MAX]], message)
    if max_items is not None and len(items) > max_items:
        message = f"The `{parameter}` query parameter takes at most {max_items} values"
        raise XInvalid(parameter, [value[:ID_SHAPE_MAX]], message)
    return items


def x_time(iso: str | None) -> str | None:
    """Our ISO-8601 (microseconds) as X writes it: milliseconds and a Z."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _role_ids(snapshot: dict[str, Any], roles: Iterable[str]) -> list[str]:
    wanted = set(roles)
    return [seat["user"]["id"] for seat in snapshot["stage"] if seat["role"] in wanted]


def _all_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    stage = snapshot["stage"]
    live = snapshot["state"] == "live"
    return {
        "id": snapshot["id"],
        "state": snapshot["state"],
        "title": snapshot["title"],
        "creator_id": snapshot["host"]["id"],
        "host_ids": _role_ids(snapshot, STAGE_HOST_ROLES),
        "speaker_ids": _role_ids(snapshot, (*STAGE_HOST_ROLES, "speaker")),
        "participant_count": snapshot["listeners"] + len(stage) if live else None,
        "scheduled_start": x_time(snapshot.get("scheduled_for")),
        "started_at": x_time(snapshot.get("started_at")),
        "ended_at": x_time(snapshot.get("ended_at")),
        "created_at": x_time(snapshot.get("created_at")),
        "lang": snapshot.get("lang") or None,
        "is_ticketed": False,
    }


def x_space(snapshot: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The snapshot as an X Space object with `fields` (plus id and state)."""
    values = _all_fields(snapshot)
    wanted = [*DEFAULT_SPACE_FIELDS, *(f for f in fields if f not in DEFAULT_SPACE_FIELDS)]
    return {name: values[name] for name in wanted if values.get(name) is not None}


def _people(snapshot: dict[str, Any]) -> dict[str, str]:
    """User id -> username of everyone the snapshot names."""
    people = {snapshot["host"]["id"]: snapshot["host"]["username"]}
    for seat in snapshot["stage"]:
        people[seat["user"]["id"]] = seat["user"]["username"]
    return people


def x_users(
    snapshots: Iterable[dict[str, Any]], expansions: Sequence[str], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """`includes.users`: the people the expanded id fields name, each once."""
    users: dict[str, dict[str, Any]] = {}
    wanted = [*DEFAULT_USER_FIELDS, *(f for f in fields if f not in DEFAULT_USER_FIELDS)]
    for snapshot in snapshots:
        space = _all_fields(snapshot)
        people = _people(snapshot)
        for expansion in expansions:
            value = space.get(expansion)
            ids = [value] if isinstance(value, str) else (value or [])
            for user_id in ids:
                if expansion != "topic_ids" and user_id in people and user_id not in users:
                    name = people[user_id]
                    known = {"id": user_id, "name": name, "username": name}
                    users[user_id] = {f: known[f] for f in wanted if f in known}
    return list(users.values())


def not_found(value: str, parameter: str) -> dict[str, Any]:
    """One `errors` entry for an id that names no space, as X words it."""
    return {
        "value": value,
        "detail": f"Could not find space with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": "space",
        "parameter": parameter,
        "resource_id": value,
        "type": PROBLEM_NOT_FOUND,
    }


@dataclass(frozen=True)
class Fields:
    """What one request asked for."""

    space: list[str]
    expansions: list[str]
    user: list[str]

    @classmethod
    def parse(cls, query: dict[str, str]) -> Fields:
        return cls(
            space=comma_list(query.get("space.fields"), "space.fields", SPACE_FIELDS),
            expansions=comma_list(query.get("expansions"), "expansions", EXPANSIONS),
            user=comma_list(query.get("user.fields"), "user.fields", USER_FIELDS),
        )


def envelope(
    found: Sequence[dict[str, Any]],
    fields: Fields,
    *,
    single: bool = False,
    errors: Sequence[dict[str, Any]] = (),
    meta: bool = False,
) -> dict[str, Any]:
    """`{"data", "includes", "errors", "meta"}`, each only when it has something."""
    body: dict[str, Any] = {}
    if found:
        spaces = [x_space(snapshot, fields.space) for snapshot in found]
        body["data"] = spaces[0] if single else spaces
    users = x_users(found, fields.expansions, fields.user) if fields.expansions else []
    if users:
        body["includes"] = {"users": users}
    if errors:
        body["errors"] = list(errors)
    if meta:
        body["meta"] = {"result_count": len(found)}
    return body


def matches(snapshot: dict[str, Any], query: str, state: str) -> bool:
    """Search: every word of `query` in the title (any case), in the asked state."""
    if state != "all" and snapshot["state"] != state:
        return False
    title = snapshot["title"].casefold()
    return all(word in title for word in query.casefold().split())
