"""Which local addresses the stage offers as ICE host candidates.

aioice gathers a host candidate on every non-loopback interface and has no
option to choose. A server needs the choice: a multi-homed host must not
offer its private back-office network to browsers, and the tests run in a
network namespace that holds only loopback, where aioice would offer nothing
at all. aiortc builds its aioice connections internally, so there is no
per-connection hook to pass addresses through: the only seam is the module
function `aioice.ice.get_host_addresses`, which aioice looks up at gathering
time. Replacing it is therefore process-wide (every RTCPeerConnection in the
process, including test clients, gathers on the pinned addresses), which is
what a server wants anyway: one process, one public face.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice

__all__ = ["host_addresses", "use_host_addresses"]

_AIOICE_DEFAULT: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_pinned: tuple[str, ...] = ()


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly these addresses (IPv4 or IPv6 literals).

    An empty sequence restores aioice's own choice (every non-loopback interface).
    Raises ValueError for anything that is not an IP address literal, so a typo
    in the configuration fails at start-up rather than as silent ICE failures.
    """
    global _pinned
    pinned = tuple(str(ipaddress.ip_address(address.strip())) for address in addresses)
    _pinned = pinned
    aioice.ice.get_host_addresses = _pinned_host_addresses if pinned else _AIOICE_DEFAULT


def host_addresses() -> tuple[str, ...]:
    """The pinned addresses; empty when aioice chooses."""
    return _pinned


def _pinned_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Same signature and family filter as aioice's function it replaces."""
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [address for address in _pinned if wanted[ipaddress.ip_address(address).version]]
