"""Arrival profiles and the other pure parts of the load generator: maths, no sockets."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET

import pytest

from townhall.loadtest.addresses import parse_addresses
from townhall.loadtest.attacks import TAMPER_FROM_END, forge_ticket
from townhall.loadtest.audio import audio_format
from townhall.loadtest.config import AttackRate
from townhall.loadtest.histogram import LogHistogram
from townhall.loadtest.hls import parse_media_playlist
from townhall.loadtest.metrics import Recorder
from townhall.loadtest.profiles import (
    AUG2024_AT_HALF_HOUR,
    AUG2024_AT_PEAK,
    AUG2024_AT_START,
    Profile,
    arrival_times,
    aug2024,
    build_profile,
    constant,
    ramp,
    spike,
)
from townhall.loadtest.summary import goodput
from townhall.loadtest.svg import bar_chart, line_chart, nice_ceiling, scatter_chart


def numeric_integral(profile: Profile, t: float, steps: int = 20_000) -> float:
    h = t / steps
    return sum(profile.rate((i + 0.5) * h) for i in range(steps)) * h


def test_constant_and_ramp_rates():
    c = constant(40)
    assert c.rate(0) == c.rate(1234.5) == 40
    assert c.expected_arrivals(2.5) == pytest.approx(100)
    r = ramp(100, base_rate=10, ramp_s=60)
    assert r.rate(0) == 10 and r.rate(30) == pytest.approx(55) and r.rate(60) == 100
    assert r.rate(600) == 100  # steady after the ramp
    assert r.expected_arrivals(60) == pytest.approx((10 + 100) / 2 * 60)
    assert ramp(100).rate(0) == pytest.approx(10)  # base defaults to a tenth


def test_spike_is_a_step():
    s = spike(1000, base_rate=20, at_s=5, spike_s=10)
    assert s.rate(4.99) == 20 and s.rate(5.01) == 1000 and s.rate(14.99) == 1000
    assert s.rate(15.01) == 20
    assert s.expected_arrivals(20) == pytest.approx(20 * 10 + 1000 * 10, rel=1e-4)


@pytest.mark.parametrize("profile", [
    constant(7), ramp(90, 3, 17), spike(500, 5, 2, 3), aug2024(),
    ramp(10, 100, 30),  # a falling ramp: negative slope in the inverse
])
def test_expected_arrivals_is_the_integral_and_time_of_arrival_its_inverse(profile: Profile):
    horizon = max(profile.length_s, 10.0)
    for t in (0.3 * horizon, 0.77 * horizon, horizon):
        n = profile.expected_arrivals(t)
        assert n == pytest.approx(numeric_integral(profile, t), rel=2e-3)
        back = profile.time_of_arrival(n)
        assert back is not None
        assert profile.expected_arrivals(back) == pytest.approx(n, rel=1e-9, abs=1e-6)


def test_aug2024_matches_the_reported_crowd():
    p = aug2024()
    assert p.expected_arrivals(60) == pytest.approx(AUG2024_AT_START, rel=1e-3)
    assert p.expected_arrivals(1800) == pytest.approx(AUG2024_AT_HALF_HOUR, rel=1e-3)
    assert p.expected_arrivals(4500) == pytest.approx(AUG2024_AT_PEAK, rel=1e-3)
    assert p.rate(5000) == 0 and p.time_of_arrival(AUG2024_AT_PEAK + 1) is None
    # Scaled to a machine: 1/1000 of the people, an hour of event per minute.
    small = build_profile("aug2024", rate=0, scale=1 / 1000, time_scale=60)
    assert small.length_s == pytest.approx(75)
    assert small.expected_arrivals(1) == pytest.approx(100, rel=1e-3)
    assert small.expected_arrivals(30) == pytest.approx(700, rel=1e-3)
    assert small.expected_arrivals(75) == pytest.approx(1300, rel=1e-3)
    assert small.rate(0.5) == pytest.approx(AUG2024_AT_START / 60 / 1000 * 60)


def test_scaling_keeps_the_crowd_and_compresses_the_clock():
    base = ramp(100, 10, 60)
    fast = base.scaled(scale=0.5, time_scale=10)
    assert fast.expected_arrivals(6) == pytest.approx(base.expected_arrivals(60) * 0.5)
    assert fast.rate(3) == pytest.approx(base.rate(30) * 0.5 * 10)
    with pytest.raises(ValueError):
        base.scaled(scale=0)


def test_profile_validation():
    with pytest.raises(ValueError):
        Profile("x", ((1.0, 5.0),), 1)
    with pytest.raises(ValueError):
        Profile("x", ((0.0, 5.0), (2.0, -1.0)), 1)
    with pytest.raises(ValueError):
        build_profile("tsunami", rate=1)


def test_uniform_arrivals_follow_the_expected_count():
    profile = spike(200, 10, 1, 2)
    times = list(arrival_times(profile, until_s=4, max_count=10_000))
    assert len(times) == math.floor(profile.expected_arrivals(4))
    assert times == sorted(times) and times[0] > 0 and times[-1] < 4
    in_spike = [t for t in times if 1 <= t < 3]
    assert len(in_spike) == pytest.approx(400, abs=2)
    assert len(list(arrival_times(profile, until_s=4, max_count=7))) == 7


def test_poisson_arrivals_are_open_model_and_random():
    profile = constant(500)
    counts = [
        len(list(arrival_times(profile, until_s=2, max_count=10**6, rng=random.Random(seed))))
        for seed in range(20)
    ]
    mean = sum(counts) / len(counts)
    assert mean == pytest.approx(1000, abs=5 * math.sqrt(1000 / 20))
    assert len(set(counts)) > 1  # not evenly spaced


def test_histogram_percentiles_within_two_percent():
    rng = random.Random(3)
    values = [rng.lognormvariate(-2, 1.2) for _ in range(50_000)]
    h = LogHistogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (0.5, 0.9, 0.99):
        exact = values[math.ceil(q * len(values)) - 1]
        assert h.percentile(q) == pytest.approx(exact, rel=0.021)
    assert h.count == 50_000 and h.max == values[-1]
    assert LogHistogram().percentile(0.5) is None
    other = LogHistogram()
    other.record(100.0)
    h.merge(other)
    assert h.percentile(1.0) == 100.0


def test_addresses_are_loopback_and_spread_over_prefixes():
    pool = parse_addresses("127.1.0.1-127.1.255.254")
    assert pool is not None and len(pool) == 65534
    picks = [pool.address(i) for i in range(1000)]
    assert len(set(picks)) == 1000
    prefixes = [a.rsplit(".", 1)[0] for a in picks[:50]]
    assert len(set(prefixes)) >= 45  # neighbours land in different /24s
    few = parse_addresses("127.0.0.2-127.0.0.4,127.0.0.9")
    assert few is not None
    assert sorted({few.address(i) for i in range(10)}) == [
        "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"]
    assert parse_addresses("none") is None
    with pytest.raises(ValueError):
        parse_addresses("10.0.0.1-10.0.0.5")
    with pytest.raises(ValueError):
        parse_addresses("127.0.0.9-127.0.0.2")


def test_attack_rates_absolute_or_relative():
    assert AttackRate.parse("200").at(50) == 200
    assert AttackRate.parse("2x").at(50) == 100
    assert not AttackRate.parse("0").active
    with pytest.raises(ValueError):
        AttackRate.parse("-1")


def test_forged_tickets_differ_from_the_real_one():
    rng = random.Random(1)
    real = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    tampered = forge_ticket("tampered", real, rng)
    assert tampered != real and len(tampered) == len(real)
    diff = [i for i, (a, b) in enumerate(zip(real, tampered, strict=True)) if a != b]
    assert diff == [len(real) - TAMPER_FROM_END]
    assert forge_ticket("random", None, rng) != forge_ticket("random", None, rng)


def test_audio_formats_recognised():
    assert audio_format(b"\xff\xf1\x4c\x80") == "adts"
    assert audio_format(b"\x00\x00\x00\x18ftypiso6") == "mp4"
    assert audio_format(b"OggS\x00") == "ogg"
    assert audio_format(b"ID3\x04") == "mp3"
    assert audio_format(b"\x1a\x45\xdf\xa3") == "webm"
    assert audio_format(b'{"error":') is None
    assert audio_format(b"") is None


def test_media_playlist_parsing():
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:40\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        + "".join(f"#EXTINF:2.0,\nseg{n}.m4s\n" for n in range(40, 46))
    )
    playlist = parse_media_playlist(text)
    assert playlist.target_duration_s == 2 and playlist.init_uri == "init.mp4"
    assert [s.sequence for s in playlist.start_segments()] == [43, 44, 45]
    assert [s.uri for s in playlist.after(44)] == ["seg45.m4s"]
    assert not playlist.ended
    with pytest.raises(ValueError):
        parse_media_playlist("<html>")


def test_goodput_counts_saturated_seconds_only():
    rows = [
        {"t": 1, "arrivals": 100, "first_audio": 50, "waiting": 50, "errors": {}},
        {"t": 2, "arrivals": 100, "first_audio": 40, "waiting": 110, "errors": {}},
        {"t": 3, "arrivals": 0, "first_audio": 10, "waiting": 0, "errors": {}},
    ]
    g = goodput(rows, capacity=50)
    assert g["basis"] == "saturated" and g["window_s"] == 2
    assert g["per_s"] == 45 and g["share_of_capacity"] == 0.9
    calm = goodput([{"t": 1, "arrivals": 3, "first_audio": 3, "waiting": 0, "errors": {}}], None)
    assert calm["basis"] == "whole_run" and calm["share_of_capacity"] is None


def test_recorder_told_vs_actual_reservoir_is_bounded():
    recorder = Recorder(seed=1)
    for i in range(5000):
        recorder.waited_then_admitted(told_s=1.0, actual_s=1.0 + (i % 3))
    assert recorder.waited == 5000 and len(recorder.told_vs_actual) == 2000
    assert recorder.signed_error_total / recorder.waited == pytest.approx(1.0, abs=0.01)


def test_charts_are_well_formed_svg():
    charts = [
        line_chart("a < b", [("x", [(0, 1.0), (1, None), (2, 3.0), (3, 4.0)]), ("y", [])]),
        line_chart("empty", []),
        scatter_chart("told", [(1.0, 2.0), (3.0, 2.5)], x_label="told", y_label="actual"),
        bar_chart("errors", [("5xx:503", 12), ("timeout:connect", 3)]),
        bar_chart("none", []),
    ]
    for svg in charts:
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
    assert "a &lt; b" in charts[0]
    assert nice_ceiling(73) == 100 and nice_ceiling(0.13) == 0.2 and nice_ceiling(2.4) == 2.5


def test_public_surface():
    import townhall.loadtest as loadtest

    assert sorted(loadtest.__all__) == [
        "AttackRate", "LoadtestConfig", "LoadtestError", "Profile", "arrival_times",
        "build_profile", "render_html", "run_loadtest", "write_report",
    ]
    assert all(hasattr(loadtest, name) for name in loadtest.__all__)
