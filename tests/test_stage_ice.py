"""Pinning ICE host candidates: what aioice gathers, and that the default comes back."""

from __future__ import annotations

import aioice.ice
import pytest

from townhall.stage.ice import host_addresses, use_host_addresses


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
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


def test_a_typo_fails_loudly() -> None:
    with pytest.raises(ValueError):
        use_host_addresses(["127.0.0.300"])
    assert host_addresses() == ()
