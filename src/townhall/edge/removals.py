"""Removals reach the stream workers on the answer to their count reports.

A worker checks tickets by HMAC alone, so it cannot know that a host removed
someone from a space; the origin does (``LiveRoom.removed``). Every worker
already POSTs its counts once per ``report_interval_s``; the origin answers
``{"removed": {space_id: [listener_id, ...]}}`` for the spaces that report
named and that have removals, so a removal reaches every worker within one
report interval, and costs nothing extra when nobody was removed.

Each answer *replaces* the removed set of every space its report named (a
space missing from the answer has none), so a worker never needs to have seen
an earlier answer. Pure logic, no I/O: the origin's route builds the answer
with ``removed_answer``, the worker checks it with ``parse_removed``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Final

MAX_REMOVED_PER_SPACE: Final = 10_000
"""Removed listener ids a worker takes for one space; removals are a host's hand-made
decisions, so more than this means a broken origin, and the answer is refused whole."""
MAX_ANSWER_BYTES: Final = 1024 * 1024
"""Largest report answer a worker reads (~50,000 removed ids); a larger one is refused
whole, counted, and the removals it carried wait for the next answer."""


class RemovalsRefused(ValueError):
    pass


def removed_answer(
    space_ids: Iterable[str], removed_in: Callable[[str], Collection[str] | None]
) -> dict[str, list[str]]:
    """The origin's answer: each reported space that has removals, with its removed ids
    (``removed_in`` gives a space's removed set, or None when it is not live here)."""
    answer: dict[str, list[str]] = {}
    for space_id in space_ids:
        removed = removed_in(space_id)
        if removed:
            answer[space_id] = sorted(removed)
    return answer


def parse_removed(value: object) -> dict[str, frozenset[str]]:
    """The ``removed`` object of an origin's answer, checked: space id -> listener ids.
    None (an origin that answers 204, from before removals reached workers) is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RemovalsRefused("removed must be an object")
    parsed: dict[str, frozenset[str]] = {}
    for space_id, ids in value.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise RemovalsRefused("each space's removals must be a list of listener ids")
        if len(ids) > MAX_REMOVED_PER_SPACE:
            raise RemovalsRefused(f"at most {MAX_REMOVED_PER_SPACE} removals per space")
        parsed[str(space_id)] = frozenset(ids)
    return parsed
