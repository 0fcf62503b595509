"""Admission: who may listen now, who waits, and who is turned away, decided without I/O.

Pure logic for the flash crowd (DESIGN.md, "Admission"): signed tokens that
carry each client's state, an O(1) waiting room, per-address limits, a proof
of work, the node's capacity and the attack-mode policy. Every function
takes `now` explicitly, so the HTTP layer calls it in the hot path and the
tests drive it with simulated time.
"""

from townhall.admission.attack_mode import (
    ATTACK_RESTRICTIONS,
    NORMAL_RESTRICTIONS,
    AttackMode,
    AttackThresholds,
    Restrictions,
)
from townhall.admission.capacity import (
    DEFAULT_CAPACITY,
    Action,
    Capacity,
    Decision,
    LoopLagMonitor,
    decide,
)
from townhall.admission.connection_caps import ConnectionCaps
from townhall.admission.proof_of_work import (
    Challenge,
    ChallengeRefused,
    SpentChallenges,
    issue_challenge,
    parse_challenge,
    verify_solution,
)
from townhall.admission.refused import AdmissionRefused
from townhall.admission.signing import InvalidToken, Signer
from townhall.admission.stream_gate import StreamDenied, StreamGate
from townhall.admission.tickets import (
    Ticket,
    TicketClaims,
    TicketRefused,
    check_ticket,
    issue_ticket,
)
from townhall.admission.token_bucket import (
    AddressLimiter,
    BucketSpec,
    KeyedBuckets,
    TokenBucket,
    address_keys,
)
from townhall.admission.waiting_room import (
    Admitted,
    QueuePolicy,
    QueueRefused,
    QueueToken,
    Waiting,
    WaitingRoom,
    WaitingRoomState,
    advance,
)

__all__ = [
    "ATTACK_RESTRICTIONS",
    "DEFAULT_CAPACITY",
    "NORMAL_RESTRICTIONS",
    "Action",
    "AddressLimiter",
    "AdmissionRefused",
    "Admitted",
    "AttackMode",
    "AttackThresholds",
    "BucketSpec",
    "Capacity",
    "Challenge",
    "ChallengeRefused",
    "ConnectionCaps",
    "Decision",
    "InvalidToken",
    "KeyedBuckets",
    "LoopLagMonitor",
    "QueuePolicy",
    "QueueRefused",
    "QueueToken",
    "Restrictions",
    "Signer",
    "SpentChallenges",
    "StreamDenied",
    "StreamGate",
    "Ticket",
    "TicketClaims",
    "TicketRefused",
    "TokenBucket",
    "Waiting",
    "WaitingRoom",
    "WaitingRoomState",
    "address_keys",
    "advance",
    "check_ticket",
    "decide",
    "issue_challenge",
    "issue_ticket",
    "parse_challenge",
    "verify_solution",
]
