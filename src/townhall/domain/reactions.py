"""The emoji a listener can send: a fixed set keeps totals meaningful and cheap."""

from __future__ import annotations

from townhall.domain.errors import Invalid

ALLOWED_REACTIONS = ("👏", "😂", "❤️", "💯", "🔥", "🙌", "😮", "😢")


def check_reaction(emoji: object) -> str:
    if not isinstance(emoji, str) or emoji not in ALLOWED_REACTIONS:
        raise Invalid(
            "emoji must be one of " + " ".join(ALLOWED_REACTIONS), code="invalid_emoji"
        )
    return emoji
