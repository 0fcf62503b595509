"""The one shape of "no" that admission gives: a stable code and a human message.

Every refusal here is cheap by construction (decided from a token and a clock,
never from shared state), so the HTTP layer can answer all of them the same
way (403 with ``{"error": {"code", "message"}}``) and count them by code.
"""

from __future__ import annotations


class AdmissionRefused(Exception):
    """Base of ticket, queue-token and challenge refusals.

    Codes shared by the subclasses: ``forged`` (signature does not check out),
    ``malformed`` (not one of our tokens of this kind), ``expired``,
    ``wrong_space``; subclasses add their own.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


FORGED_REASONS = frozenset({"bad_signature", "unknown_key"})
"""InvalidToken reasons that mean someone made the token up (or it predates a key)."""


def refusal_code(reason: str) -> str:
    """Maps an InvalidToken reason to the refusal code clients and counters see."""
    return "forged" if reason in FORGED_REASONS else "malformed"
