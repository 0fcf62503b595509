"""Which local addresses the stage offers as ICE host candidates.

aioice gathers a host candidate on every non-loopback interface and has no
option to choose. A server needs the choice: a multi-homed host must not
offer its private back-office network to browsers, and a machine (or network
namespace) that holds only loopback would offer nothing at all, so a speaker's
browser waits for a connection that can never come up. aiortc builds its
aioice connections internally, so there is no per-connection hook to pass
addresses through: the only seam is the module function
`aioice.ice.get_host_addresses`, which aioice looks up at gathering time.
Replacing it is therefore process-wide (every RTCPeerConnection in the
process, including test clients, gathers on the chosen addresses), which is
what a server wants anyway: one process, one public face.

The choice, in order: the configured addresses; else, when the server listens
on a loopback address, that loopback address (only a browser on this machine
can reach the server, and it reaches it there); else aioice's own choice, or
loopback when aioice finds no other interface at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice

__all__ = ["LOOPBACK_V4", "default_host_addresses", "host_addresses", "use_host_addresses"]

LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

_AIOICE_DEFAULT: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_pinned: tuple[str, ...] = ()


def default_host_addresses(configured: Sequence[str], listen_host: str) -> tuple[str, ...]:
    """The addresses to pin for a server listening on `listen_host`.

    Configured addresses win. A loopback listen address (127.0.0.0/8, ::1,
    localhost) means only local browsers can use the server, so the stage offers
    loopback: without it a loopback-only machine offers no candidate at all.
    Otherwise () leaves the choice to aioice (with the loopback fallback below).
    """
    if configured:
        return tuple(configured)
    host = listen_host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return (LOOPBACK_V4,)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ()
    if address.is_loopback:
        return (str(address),)
    return ()


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly these addresses (IPv4 or IPv6 literals).

    An empty sequence restores aioice's own choice (every non-loopback interface),
    falling back to loopback where it finds none. Raises ValueError for anything
    that is not an IP address literal, so a typo in the configuration fails at
    start-up rather than as silent ICE failures.
    """
    global _pinned
    pinned = tuple(str(ipaddress.ip_address(address.strip())) for address in addresses)
    _pinned = pinned
    aioice.ice.get_host_addresses = (
        _pinned_host_addresses if pinned else _aioice_or_loopback_addresses
    )


def host_addresses() -> tuple[str, ...]:
    """The pinned addresses; empty when aioice chooses."""
    return _pinned


def _pinned_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Same signature and family filter as aioice's function it replaces."""
    return _of_families(_pinned, use_ipv4, use_ipv6)


def _aioice_or_loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's choice; loopback when the machine has no other interface (rather than
    offering no candidate and leaving every speaker 'connecting' for good)."""
    found = _AIOICE_DEFAULT(use_ipv4, use_ipv6)
    return found or _of_families((LOOPBACK_V4, LOOPBACK_V6), use_ipv4, use_ipv6)


def _of_families(addresses: Sequence[str], use_ipv4: bool, use_ipv6: bool) -> list[str]:
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [address for address in addresses if wanted[ipaddress.ip_address(address).version]]
