"""Loopback source addresses, so the server's per-address limits see many clients (or few).

Why: a per-address or per-/24 token bucket treats one process as one client
unless its sockets come from different addresses. On Linux every 127.0.0.0/8
address is local, so binding a socket to 127.x.y.z before connecting makes the
server see that address. Attackers use a handful (a flood from few sources);
legitimate listeners are spread over many, each consecutive listener in a
different /24, so prefix buckets see a crowd, not one network. Only loopback
addresses are accepted: this tool must not be pointed at anyone else. Pure.
"""

from __future__ import annotations

import ipaddress
import math

DEFAULT_ATTACKER_ADDRESSES = "127.0.0.2-127.0.0.20"
DEFAULT_LISTENER_ADDRESSES = "127.1.0.1-127.1.255.254"
"""65k addresses in 256 /24 prefixes: one per listener for all but the largest runs."""
SPREAD_STRIDE = 257
"""Step between consecutive picks: just over a /24, so neighbours land in different prefixes."""


class AddressPool:
    """An ordered set of loopback IPv4 addresses, picked by index."""

    def __init__(self, ranges: list[tuple[int, int]]):
        if not ranges:
            raise ValueError("an address pool needs at least one address")
        self._ranges = ranges
        self._starts: list[int] = []
        size = 0
        for first, last in ranges:
            self._starts.append(size)
            size += last - first + 1
        self.size = size
        stride = SPREAD_STRIDE if size > SPREAD_STRIDE else 1
        while math.gcd(stride, size) != 1:
            stride += 1
        self._stride = stride

    def address(self, index: int) -> str:
        """The ``index``-th pick; the first ``size`` picks are all different."""
        offset = (index * self._stride) % self.size
        pairs = zip(reversed(self._ranges), reversed(self._starts), strict=True)
        for (first, _last), start in pairs:
            if offset >= start:
                return str(ipaddress.IPv4Address(first + offset - start))
        raise AssertionError("unreachable: offset below the first range")

    def __len__(self) -> int:
        return self.size


def parse_addresses(spec: str) -> AddressPool | None:
    """"127.0.0.2-127.0.0.20,127.0.1.0/24" -> pool; "" or "none" -> None (do not bind)."""
    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return None
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if "/" in part:
            net = ipaddress.IPv4Network(part, strict=False)
            hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
            first, last = int(hosts[0]), int(hosts[-1])
        elif "-" in part:
            low, high = (p.strip() for p in part.split("-", 1))
            first, last = int(ipaddress.IPv4Address(low)), int(ipaddress.IPv4Address(high))
        else:
            first = last = int(ipaddress.IPv4Address(part))
        if last < first:
            raise ValueError(f"empty address range {part!r}")
        for edge in (first, last):
            if not ipaddress.IPv4Address(edge).is_loopback:
                raise ValueError(f"{ipaddress.IPv4Address(edge)} is not a loopback address")
        ranges.append((first, last))
    return AddressPool(ranges)
