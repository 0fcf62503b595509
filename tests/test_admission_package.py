"""The admission package's public surface, and its promise of no I/O."""

from __future__ import annotations

import subprocess
import sys

import townhall.admission as admission

EXPECTED = {
    # tokens
    "Signer", "InvalidToken", "AdmissionRefused",
    "Ticket", "TicketClaims", "TicketRefused", "issue_ticket", "check_ticket",
    "StreamGate", "StreamDenied",
    # waiting room
    "WaitingRoom", "WaitingRoomState", "QueuePolicy", "QueueToken", "QueueRefused",
    "Admitted", "Waiting", "advance",
    # limits
    "TokenBucket", "KeyedBuckets", "AddressLimiter", "BucketSpec", "address_keys",
    "ConnectionCaps",
    # proof of work
    "Challenge", "ChallengeRefused", "SpentChallenges", "issue_challenge", "parse_challenge",
    "verify_solution",
    # capacity and attack mode
    "Capacity", "DEFAULT_CAPACITY", "Decision", "Action", "decide", "LoopLagMonitor",
    "AttackMode", "AttackThresholds", "Restrictions", "NORMAL_RESTRICTIONS",
    "ATTACK_RESTRICTIONS",
}  # fmt: skip


def test_exports_are_what_we_mean():
    assert set(admission.__all__) == EXPECTED
    for name in admission.__all__:
        assert getattr(admission, name) is not None


def test_refusals_share_one_base():
    for refusal in (
        admission.TicketRefused,
        admission.QueueRefused,
        admission.ChallengeRefused,
        admission.StreamDenied,
    ):
        assert issubclass(refusal, admission.AdmissionRefused)


def test_importing_admission_pulls_in_no_io_or_server_code():
    probe = (
        "import sys, townhall.admission; "
        "bad = ('asyncio', 'socket', 'starlette', 'redis', 'aiortc', 'sqlite3', 'threading'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
