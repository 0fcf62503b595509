"""Listening tickets: issued on admission, refused when forged, expired or misplaced."""

from __future__ import annotations

import pytest

from townhall.admission import Signer, TicketRefused, check_ticket, issue_ticket
from townhall.admission.signing import MAX_TOKEN_CHARS

SECRET = b"ticket-test-secret-0123456789abcdef"


def refusal(token: str, space: str = "sp_1", now: float = 1_000.0) -> str:
    with pytest.raises(TicketRefused) as info:
        check_ticket(Signer(SECRET), token, space, now)
    assert info.value.message  # something a person can read
    return info.value.code


def test_a_ticket_is_accepted_by_any_node_until_it_expires():
    ticket = issue_ticket(Signer(SECRET), "sp_1", "listener_9", now=1_000.4, ttl_s=300)
    assert ticket.expires_at == 1_300
    other_node = Signer(SECRET)
    claims = check_ticket(other_node, ticket.token, "sp_1", now=1_299.9)
    assert (claims.space_id, claims.listener_id, claims.expires_at) == ("sp_1", "listener_9", 1_300)
    # Reusable while valid: a dropped stream reconnects without queuing again.
    assert check_ticket(other_node, ticket.token, "sp_1", now=1_100.0) == claims
    assert refusal(ticket.token, now=1_300.0) == "expired"


def test_forged_tickets_are_refused():
    genuine = issue_ticket(Signer(SECRET), "sp_1", "listener_9", 1_000.0, 300).token
    made_up = issue_ticket(Signer(b"attacker-guess-0123456789abcdef"), "sp_1", "x", 1_000.0, 9e9)
    assert refusal(made_up.token) == "forged"
    assert refusal(genuine[:-1] + ("A" if genuine[-1] != "A" else "B")) in ("forged", "malformed")
    assert refusal(genuine[:10] + "Z" + genuine[11:]) == "forged"
    assert refusal("") == "malformed"
    assert refusal("definitely not a ticket") == "malformed"
    assert refusal("A" * (MAX_TOKEN_CHARS + 10)) == "malformed"


def test_a_ticket_for_another_space_or_another_kind_of_token_is_refused():
    signer = Signer(SECRET)
    other = issue_ticket(signer, "sp_2", "listener_9", 1_000.0, 300).token
    assert refusal(other) == "wrong_space"
    queue_token = signer.sign(("q", "sp_1", 1, "n", 0, 1_000, 1_000))
    assert refusal(queue_token) == "malformed"
    challenge = signer.sign(("w", "nonce", 16, 2_000, ""))
    assert refusal(challenge) == "malformed"


def test_ttl_below_the_resolution_is_refused():
    with pytest.raises(ValueError):
        issue_ticket(Signer(SECRET), "sp_1", "l", 0.0, 0.5)
