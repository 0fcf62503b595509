"""Token buckets alone, per address and per prefix, and the bound on their memory."""

from __future__ import annotations

import pytest

from townhall.admission import (
    AddressLimiter,
    BucketSpec,
    ConnectionCaps,
    KeyedBuckets,
    TokenBucket,
    address_keys,
)


def test_a_bucket_allows_its_burst_then_its_rate():
    bucket = TokenBucket(rate=10.0, burst=5)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.wait_s(100.0) == pytest.approx(0.1)
    assert not bucket.take(100.05)
    assert bucket.take(100.11)
    # Over a long run the average is the rate, whatever the burst.
    allowed = sum(bucket.take(101.0 + i * 0.01) for i in range(1_000))  # 10 s, 100 tries/s
    assert allowed == pytest.approx(10.0 * 10, abs=6)
    assert not bucket.take(200.0, n=6)  # never more than the burst at once
    assert bucket.wait_s(200.0, n=6) == float("inf")


def test_a_clock_that_goes_backwards_grants_nothing():
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)
    assert not bucket.take(50.5)
    assert bucket.take(51.0)


def test_keyed_buckets_are_independent_and_bounded_with_evictions_counted():
    buckets = KeyedBuckets(rate=1.0, burst=2, max_keys=3)
    assert buckets.take("a", 0.0) and buckets.take("a", 0.0)
    assert not buckets.take("a", 0.0)
    assert buckets.take("b", 0.0) and buckets.take("c", 0.0)
    assert not buckets.take("a", 0.0)  # a refused request is still a use: "b" is oldest now
    assert (buckets.allowed, buckets.refused, len(buckets)) == (4, 2, 3)
    assert buckets.take("d", 0.5)
    assert len(buckets) == 3 and "b" not in buckets
    assert (buckets.evictions, buckets.evictions_active) == (1, 1)
    # An idle key (bucket refilled) goes without losing anything.
    assert buckets.take("e", 10.0)
    assert (buckets.evictions, buckets.evictions_active) == (2, 1)
    # A million rotating addresses leave the table at its bound.
    for i in range(1_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", 20.0)
    assert len(buckets) == 3


def test_sweep_forgets_only_keys_that_have_refilled():
    buckets = KeyedBuckets(rate=1.0, burst=4, max_keys=100)
    for i in range(10):
        buckets.take(f"k{i}", float(i))
    assert buckets.sweep(now=10.0) == 7  # used at 0..6: refilled (4 s) by t=10
    assert len(buckets) == 3
    assert buckets.sweep(now=10.0) == 0
    assert buckets.sweep(now=100.0, max_scan=2) == 2  # bounded work per call


@pytest.mark.parametrize(
    ("ip", "address", "prefix"),
    [
        ("192.0.2.77", "192.0.2.77", "192.0.2.0/24"),
        ("::ffff:192.0.2.77", "192.0.2.77", "192.0.2.0/24"),
        ("::FFFF:c000:024d", "192.0.2.77", "192.0.2.0/24"),
        ("2001:DB8:0:1:aa:bb:cc:dd", "2001:db8:0:1:aa:bb:cc:dd", "2001:db8:0:1::/64"),
        ("2001:db8::1", "2001:db8::1", "2001:db8::/64"),
        ("::1", "::1", "::/64"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.0/24"),
    ],
)
def test_address_keys(ip, address, prefix):
    assert address_keys(ip) == (address, prefix)


@pytest.mark.parametrize("bad", ["", "localhost", "300.1.1.1", "1.2.3", "[::1]", "2001:db8::/64"])
def test_address_keys_refuses_what_is_not_an_address(bad):
    with pytest.raises(ValueError):
        address_keys(bad)


def test_per_address_limit_leaves_neighbours_alone():
    limiter = AddressLimiter(BucketSpec(rate=1.0, burst=3), BucketSpec(rate=100.0, burst=100))
    assert [limiter.check("198.51.100.7", 0.0) for _ in range(4)] == [None] * 3 + ["address"]
    assert limiter.check("198.51.100.8", 0.0) is None  # same /24, own address bucket
    assert limiter.check("::ffff:198.51.100.7", 0.0) == "address"  # same client, mapped
    assert limiter.retry_after_s("198.51.100.7", 0.0) == pytest.approx(1.0)
    assert limiter.check("198.51.100.7", 1.0) is None


def test_per_prefix_limit_stops_a_flood_spread_over_a_subnet():
    limiter = AddressLimiter(BucketSpec(rate=1.0, burst=2), BucketSpec(rate=5.0, burst=10))
    verdicts = [limiter.check(f"203.0.113.{i}", 0.0) for i in range(1, 21)]
    assert verdicts == [None] * 10 + ["prefix"] * 10
    assert limiter.check("203.0.114.1", 0.0) is None  # the next /24 is another prefix
    # The prefix refusal gave the address its token back: once the prefix refills,
    # an address refused only because of its neighbours has its full allowance.
    assert limiter.by_address.take("203.0.113.20", 0.0)
    assert limiter.by_address.take("203.0.113.20", 0.0)


def test_ipv6_prefix_is_the_slash_64():
    limiter = AddressLimiter(BucketSpec(rate=1.0, burst=100), BucketSpec(rate=1.0, burst=5))
    same_64 = [f"2001:db8:1:2::{i:x}" for i in range(1, 8)]
    assert [limiter.check(ip, 0.0) for ip in same_64] == [None] * 5 + ["prefix"] * 2
    assert limiter.check("2001:db8:1:3::1", 0.0) is None


def test_reconfigure_tightens_existing_buckets():
    limiter = AddressLimiter(BucketSpec(rate=10.0, burst=10), BucketSpec(rate=100.0, burst=100))
    assert limiter.check("192.0.2.1", 0.0) is None
    limiter.reconfigure(BucketSpec(rate=1.0, burst=2), BucketSpec(rate=10.0, burst=20))
    assert limiter.check("192.0.2.1", 10.0) is None  # refilled only up to the new burst
    assert limiter.check("192.0.2.1", 10.0) is None
    assert limiter.check("192.0.2.1", 10.0) == "address"


def test_connection_caps_per_address():
    caps = ConnectionCaps(max_per_key=2)
    assert caps.acquire("a") and caps.acquire("a")
    assert not caps.acquire("a") and caps.acquire("b")
    assert caps.refused == 1
    caps.release("a")
    assert caps.acquire("a")
    for _ in range(5):
        caps.release("a")
        caps.release("b")
    assert len(caps) == 0 and caps.open_for("a") == 0  # no entry outlives its connections
    assert all(ConnectionCaps(max_per_key=0).acquire("x") for _ in range(1_000))  # 0 disables
