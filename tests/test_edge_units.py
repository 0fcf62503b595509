"""Stream-worker pieces without a server: ADTS framing, count reports, relay tokens."""

from __future__ import annotations

import pytest

from townhall.admission.signing import Signer
from townhall.admission.tickets import issue_ticket
from townhall.audience.adts import adts_header
from townhall.edge import (
    ListenerReports,
    RelayRefused,
    ReportRefused,
    check_relay_token,
    issue_relay_token,
    parse_counts,
)
from townhall.edge.framing import AdtsFramer

FRAME_MS = 1024 * 1000 / 48_000


def _frames(sizes: list[int]) -> bytes:
    return b"".join(
        adts_header(size, sample_rate_index=3, channels=1) + bytes([i % 251]) * size
        for i, size in enumerate(sizes)
    )


def test_framer_publishes_only_whole_frames_whatever_the_split() -> None:
    stream = _frames([100, 7, 300, 1, 250] * 4)
    for piece in (1, 3, 64, 1000):
        framer = AdtsFramer()
        out = bytearray()
        total_ms = 0.0
        for at in range(0, len(stream), piece):
            chunk, ms = framer.feed(stream[at : at + piece])
            if chunk:
                assert chunk[0] == 0xFF and chunk[1] & 0xF0 == 0xF0
            out += chunk
            total_ms += ms
        assert bytes(out) == stream
        assert total_ms == pytest.approx(20 * FRAME_MS)
        assert framer.stats.frames == 20 and framer.stats.skipped_bytes == 0


def test_framer_skips_garbage_to_the_next_syncword() -> None:
    framer = AdtsFramer()
    good = _frames([50, 60])
    chunk, ms = framer.feed(b"junk\x00\xff\x00" + good)
    assert chunk == good and ms == pytest.approx(2 * FRAME_MS)
    assert framer.stats.skipped_bytes == 7


def test_reports_replace_the_last_one_and_zero_what_is_gone() -> None:
    reports = ListenerReports()
    assert sorted(reports.replace("w0", {"a": 3, "b": 2})) == [("a", 3), ("b", 2)]
    assert reports.replace("w0", {"a": 3, "b": 2}) == []  # nothing changed
    assert sorted(reports.replace("w0", {"a": 5})) == [("a", 5), ("b", 0)]
    assert reports.replace("w1", {"a": 1}) == [("a", 1)]
    assert reports.replace("w0", {}) == [("a", 0)]  # a restarted worker's first report


def test_report_counts_are_checked() -> None:
    assert parse_counts({"a": 1, "b": -1}) == {"a": 1, "b": -1}
    for bad in ([], {"a": "1"}, {"a": True}, {"a": 1.5}, None):
        with pytest.raises(ReportRefused):
            parse_counts(bad)


def test_relay_tokens_are_not_tickets_and_expire() -> None:
    signer = Signer(b"k" * 32)
    token = issue_relay_token(signer, "edge-1", now=1000.0, ttl_s=60)
    assert check_relay_token(signer, token, now=1030.0) == "edge-1"
    with pytest.raises(RelayRefused, match="expired"):
        check_relay_token(signer, token, now=1061.0)
    with pytest.raises(RelayRefused, match="bad_signature"):
        check_relay_token(Signer(b"x" * 32), token, now=1030.0)
    ticket = issue_ticket(signer, "space", "listener", now=1000.0, ttl_s=60)
    with pytest.raises(RelayRefused, match="malformed"):
        check_relay_token(signer, ticket.token, now=1030.0)
