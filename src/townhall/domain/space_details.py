"""What a host tells listeners about a space beyond its title: a description, a pinned
link and topics. The rules for each value live here, without I/O; the host edits them
(and the title) at any time before the end."""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlsplit

from townhall.domain.errors import Forbidden, Invalid
from townhall.domain.spaces import Space, check_title

MAX_DESCRIPTION_LENGTH = 1_000
MAX_URL_LENGTH = 500
MAX_TOPICS = 5
MAX_TOPIC_LENGTH = 32
TOPIC = re.compile(r"[\w][\w \-.&+]*\Z")
"""Letters (any script), digits, spaces and a few joiners; no commas (the store's separator)."""
LINK_SCHEMES = ("https", "http")
UNSET = object()
"""An edit that leaves the field as it is (None means "clear" for the pinned link)."""


def check_description(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("description must be a string", code="invalid_description")
    text = value.strip()
    if len(text) > MAX_DESCRIPTION_LENGTH:
        message = f"description must be at most {MAX_DESCRIPTION_LENGTH} characters"
        raise Invalid(message, code="invalid_description")
    return text


def check_pinned_url(value: object) -> str | None:
    """An absolute http(s) link, or None to unpin; never javascript: or data: links."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        message = f"pinned_url must be a link of at most {MAX_URL_LENGTH} characters"
        raise Invalid(message, code="invalid_pinned_url")
    link = value.strip()
    parts = urlsplit(link)
    spaced = any(c.isspace() for c in link)
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc or spaced:
        raise Invalid("pinned_url must be an http:// or https:// link", code="invalid_pinned_url")
    return link


def check_topics(value: object) -> tuple[str, ...]:
    """Up to MAX_TOPICS short topics, each once (case-insensitive), in the order given."""
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise Invalid("topics must be a list of strings", code="invalid_topics")
    topics: dict[str, str] = {}
    for raw in value:
        topic = " ".join(raw.split())
        if not topic or len(topic) > MAX_TOPIC_LENGTH or not TOPIC.match(topic):
            message = (f"each topic is 1 to {MAX_TOPIC_LENGTH} letters, digits or spaces "
                       f"(got {topic[:MAX_TOPIC_LENGTH]!r})")  # fmt: skip
            raise Invalid(message, code="invalid_topics")
        topics.setdefault(topic.casefold(), topic)
    if len(topics) > MAX_TOPICS:
        raise Invalid(f"at most {MAX_TOPICS} topics", code="invalid_topics")
    return tuple(topics.values())


def edit_details(
    space: Space,
    actor_id: str,
    *,
    title: object = UNSET,
    description: object = UNSET,
    pinned_url: object = UNSET,
    topics: object = UNSET,
) -> Space:
    """The space with the fields given changed, by its host, before its end."""
    if actor_id != space.host.id:
        raise Forbidden("only the host can edit the space")
    space.require_not_ended("edit the space")
    changes: dict[str, object] = {}
    if title is not UNSET:
        changes["title"] = check_title(title)
    if description is not UNSET:
        changes["description"] = check_description(description)
    if pinned_url is not UNSET:
        changes["pinned_url"] = check_pinned_url(pinned_url)
    if topics is not UNSET:
        changes["topics"] = check_topics(topics)
    return replace(space, **changes)  # type: ignore[arg-type]
