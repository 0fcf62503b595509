"""Pinning ICE host candidates: what aioice gathers, and that the default comes back."""

from __future__ import annotations

import aioice.ice
import pytest

from townhall.stage import ice
from townhall.stage.ice import default_host_addresses, host_addresses, use_host_addresses


async def test_pinned_addresses_are_the_only_host_candidates() -> None:
    use_host_addresses(["127.0.0.1", "::1"])
    try:
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        connection = aioice.Connection(ice_controlling=True)
        await connection.gather_candidates()
        hosts = {c.host for c in connection.local_candidates}
        await connection.close()
        assert hosts <= {"127.0.0.1", "::1"} and "127.0.0.1" in hosts
    finally:
        use_host_addresses([])
    assert host_addresses() == ()
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == (
        ice._AIOICE_DEFAULT(True, False) or ["127.0.0.1"]
    )


def test_a_typo_fails_loudly() -> None:
    with pytest.raises(ValueError):
        use_host_addresses(["127.0.0.300"])
    assert host_addresses() == ()


@pytest.mark.parametrize(
    ("configured", "listen_host", "expected"),
    [
        ((), "127.0.0.1", ("127.0.0.1",)),
        ((), "127.0.0.2", ("127.0.0.2",)),
        ((), "::1", ("::1",)),
        ((), "[::1]", ("::1",)),
        ((), "localhost", ("127.0.0.1",)),
        ((), "0.0.0.0", ()),
        ((), "203.0.113.7", ()),
        ((), "example.org", ()),
        (("203.0.113.7",), "127.0.0.1", ("203.0.113.7",)),
    ],
)
def test_a_loopback_server_offers_loopback_unless_configured(
    configured: tuple[str, ...], listen_host: str, expected: tuple[str, ...]
) -> None:
    assert default_host_addresses(configured, listen_host) == expected


def test_no_interface_but_loopback_falls_back_to_loopback(monkeypatch) -> None:
    """A machine with only loopback: aioice finds nothing, and nothing offered means a
    speaker's browser waits forever. Loopback at least serves a browser on the machine."""
    monkeypatch.setattr(ice, "_AIOICE_DEFAULT", lambda use_ipv4, use_ipv6: [])
    use_host_addresses([])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]
    monkeypatch.setattr(ice, "_AIOICE_DEFAULT", lambda use_ipv4, use_ipv6: ["192.0.2.5"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["192.0.2.5"]
