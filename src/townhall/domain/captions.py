"""Whether a space has live captions: the host's choice and the node's answer.

A space asks for captions when it is created (kept with its record, so the choice
survives a restart and holds on whichever node starts it). The node that starts it
answers: captions on, or live without them and why (its captioner is full, or it
runs none). Nothing here does I/O; the captions service counts what is running.
"""

from __future__ import annotations

from enum import StrEnum

from townhall.domain.errors import Invalid


class CaptionsWithheld(StrEnum):
    """Why a space that asked for captions is live without them (never a refusal)."""

    NODE_LIMIT = "node_limit"
    """The node running it already captions as many spaces as it may."""
    NO_CAPTIONER = "no_captioner"
    """The node running it runs no captioner (captions off, or another node's choice)."""


def choose_captions(wanted: object, available: bool) -> bool:
    """A new space's choice: None means the creating node's default (on where it runs a
    captioner); asking for captions where none runs is refused at once rather than
    promised and silently dropped."""
    if wanted is None:
        return available
    if not isinstance(wanted, bool):
        raise Invalid("captions must be true or false", code="invalid_captions")
    if wanted and not available:
        raise Invalid("this server runs no captioner", code="captions_unavailable")
    return wanted


def captions_outcome(
    wanted: bool, *, available: bool, running: int, limit: int
) -> CaptionsWithheld | None:
    """What a node answers a space going live: None is captions on (wanted, and a
    recognizer slot is free), else why not. `limit` is the node-wide cap on captioned
    live spaces, `running` how many it has now."""
    if not wanted:
        return None
    if not available:
        return CaptionsWithheld.NO_CAPTIONER
    if running >= limit:
        return CaptionsWithheld.NODE_LIMIT
    return None
