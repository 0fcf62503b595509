"""Who the client is behind trusted proxies (townhall.forwarded): pure, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townhall.forwarded import FORWARDED, ClientOrigin, TrustedProxies, client_origin

PROXY = "10.0.0.5"
INNER_PROXY = "10.0.0.9"
CLIENT = "203.0.113.7"


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


@pytest.fixture
def trusted() -> TrustedProxies:
    return TrustedProxies(["10.0.0.0/24", "::1/128"])


def test_an_untrusted_peer_is_the_client_whatever_it_says(trusted: TrustedProxies) -> None:
    said = headers(x_forwarded_for="198.51.100.1", x_forwarded_proto="https")
    assert trusted.resolve(CLIENT, "http", said) == ClientOrigin(CLIENT, "http")
    assert TrustedProxies().resolve(PROXY, "http", said) == ClientOrigin(PROXY, "http")


def test_behind_a_trusted_proxy_the_forwarded_client_and_scheme(trusted) -> None:
    said = headers(x_forwarded_for=CLIENT, x_forwarded_proto="https")
    assert trusted.resolve(PROXY, "http", said) == ClientOrigin(CLIENT, "https")


def test_a_client_cannot_put_a_fake_address_in_front(trusted: TrustedProxies) -> None:
    """The proxy appends the address it saw; what the client sent stays on the left."""
    said = headers(x_forwarded_for=f"1.1.1.1, 10.0.0.77, {CLIENT}")
    assert trusted.resolve(PROXY, "http", said).address == CLIENT


def test_trusted_hops_are_skipped_right_to_left(trusted: TrustedProxies) -> None:
    said = headers(x_forwarded_for=f"1.1.1.1, {CLIENT}, {INNER_PROXY}")
    assert trusted.resolve(PROXY, "http", said).address == CLIENT
    every_hop_trusted = headers(x_forwarded_for=f"{INNER_PROXY}, 10.0.0.3")
    assert trusted.resolve(PROXY, "http", every_hop_trusted).address == INNER_PROXY


def test_repeated_header_lines_are_one_list(trusted: TrustedProxies) -> None:
    said = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", CLIENT.encode())]
    assert trusted.resolve(PROXY, "http", said).address == CLIENT


@pytest.mark.parametrize("garbage", ["unknown", "_hidden", "", "300.1.2.3", "[::1", "a:b:c"])
def test_a_hop_that_is_not_an_address_stops_at_the_proxy(trusted, garbage: str) -> None:
    said = headers(x_forwarded_for=f"{CLIENT}, {garbage}")
    assert trusted.resolve(PROXY, "http", said).address == PROXY


def test_no_forwarding_header_leaves_the_proxy(trusted: TrustedProxies) -> None:
    assert trusted.resolve(PROXY, "http", []) == ClientOrigin(PROXY, "http")
    assert trusted.resolve(PROXY, "http", headers(x_forwarded_proto="https")).scheme == "https"


def test_only_http_and_https_are_schemes(trusted: TrustedProxies) -> None:
    said = headers(x_forwarded_for=CLIENT, x_forwarded_proto="javascript")
    assert trusted.resolve(PROXY, "http", said).scheme == "http"


def test_ports_brackets_and_mapped_addresses(trusted: TrustedProxies) -> None:
    with_port = headers(x_forwarded_for=f"{CLIENT}:5555")
    assert trusted.resolve(PROXY, "http", with_port).address == CLIENT
    v6 = headers(x_forwarded_for="[2001:db8::1]:443")
    assert trusted.resolve("::1", "http", v6).address == "2001:db8::1"
    mapped = headers(x_forwarded_for=f"::ffff:{CLIENT}")
    assert trusted.resolve("::ffff:10.0.0.5", "http", mapped).address == CLIENT


def test_rfc_7239_forwarded_when_configured() -> None:
    trusted = TrustedProxies(["10.0.0.0/24"], header=FORWARDED)
    said = headers(
        forwarded=f'for=1.1.1.1;proto=http, for="{CLIENT}:4711";proto=https;by=10.0.0.5'
    )
    assert trusted.resolve(PROXY, "http", said) == ClientOrigin(CLIENT, "https")
    v6 = headers(forwarded='for="[2001:db8:cafe::17]:4711"')
    assert trusted.resolve(PROXY, "http", v6).address == "2001:db8:cafe::17"


def test_the_header_the_proxy_does_not_set_is_ignored() -> None:
    """nginx sets X-Forwarded-For and passes a client's Forwarded through, and the
    other way round: only the configured one counts."""
    spoof = headers(forwarded="for=1.1.1.1;proto=https", x_forwarded_for=CLIENT)
    assert TrustedProxies(["10.0.0.0/24"]).resolve(PROXY, "http", spoof).address == CLIENT
    spoof = headers(forwarded=f"for={CLIENT}", x_forwarded_for="1.1.1.1")
    forwarded = TrustedProxies(["10.0.0.0/24"], header=FORWARDED)
    assert forwarded.resolve(PROXY, "http", spoof).address == CLIENT


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "10.0.0.0/8,"])
def test_a_bad_network_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="CIDR"):
        TrustedProxies([bad])


def test_client_origin_of_a_scope() -> None:
    scope = {"client": (CLIENT, 1234), "scheme": "https"}
    assert client_origin(scope) == ClientOrigin(CLIENT, "https")
    assert client_origin({"client": None, "scheme": "http"}) == ClientOrigin("", "http")


TRUSTED_POOL = ["10.0.0.1", "10.0.0.2", "::1"]
UNTRUSTED_POOL = ["203.0.113.1", "203.0.113.2", "2001:db8::7", "198.51.100.9"]


@given(
    peer=st.sampled_from(TRUSTED_POOL + UNTRUSTED_POOL),
    chain=st.lists(st.sampled_from(TRUSTED_POOL + UNTRUSTED_POOL), max_size=6),
)
def test_the_resolved_client_is_the_nearest_untrusted_hop(peer: str, chain: list[str]) -> None:
    """Whatever the chain: the answer is the first hop, counting from us, that is not
    a trusted proxy (all hops between it and us are), or the farthest if all are."""
    trusted = TrustedProxies(["10.0.0.0/24", "::1/128"])
    said = headers(x_forwarded_for=", ".join(chain)) if chain else []
    address = trusted.resolve(peer, "http", said).address
    if not trusted.trusts(peer):
        assert address == peer
        return
    path = [peer, *reversed(chain)]  # nearest first
    assert address == next((hop for hop in path if not trusted.trusts(hop)), path[-1])
