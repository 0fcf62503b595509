"""Identifiers that are short enough for a link and too many to guess."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable

ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no look-alikes (l, 1, o, 0)
ID_LENGTH = 12  # 60 bits


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def looks_like_id(value: str) -> bool:
    """Cheap shape check so floods of random paths never reach the store."""
    return len(value) == ID_LENGTH and all(ch in ID_ALPHABET for ch in value)


def signed_in_ids(listener_ids: Iterable[str], scan_at_most: int) -> list[str]:
    """The ids among the first `scan_at_most` listener ids that are users' (a ticket
    carries a user id when signed in, an opaque token otherwise)."""
    return [i for i in itertools.islice(listener_ids, scan_at_most) if looks_like_id(i)]
