"""Who the client is, behind proxies we trust: its address and the scheme it used.

Behind nginx or a load balancer every request arrives from the proxy's address,
so per-address limits would put the whole audience in the proxy's one bucket and
the session cookie could not tell that the browser used https. The proxy says
who its client was in `X-Forwarded-For` / `X-Forwarded-Proto` (or RFC 7239
`Forwarded`), but so can anyone else: those headers are read only when the peer
is a configured trusted proxy, and the address chain is read right to left,
skipping trusted hops, so a value the client itself put in front is never taken.
Only one of the two headers is read (the one the proxy sets): a proxy that sets
one passes the other through from the client untouched.

`TrustedProxies.resolve` is pure; the server applies it once per request, below
the ASGI app (townhall.server), and rewrites the scope's `client` and `scheme`;
`client_origin(scope)` is how the rest of the code reads them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FORWARDED",
    "HEADER_CHOICES",
    "X_FORWARDED_FOR",
    "ClientOrigin",
    "TrustedProxies",
    "client_origin",
]

X_FORWARDED_FOR: Final = "x-forwarded-for"
FORWARDED: Final = "forwarded"
HEADER_CHOICES: Final = (X_FORWARDED_FOR, FORWARDED)
SCHEMES: Final = frozenset({"http", "https"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ClientOrigin:
    """The client's address ("" when unknown, e.g. a unix socket) and scheme."""

    address: str
    scheme: str


def client_origin(scope: Any) -> ClientOrigin:
    """The client of an ASGI request scope: what per-address limits key on and what
    decides whether the browser used https. Behind trusted proxies the server has
    already put the forwarded client in the scope (townhall.server)."""
    client = scope.get("client")
    return ClientOrigin(client[0] if client else "", scope.get("scheme") or "http")


def _address(text: str) -> Address | None:
    """An address as proxies write it: bare, with a port, bracketed IPv6, quoted."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every comma-separated element of a header, across repeated lines, in order."""
    elements: list[str] = []
    for key, value in headers:
        if key == name:
            elements.extend(part.strip() for part in value.decode("latin-1").split(","))
    return elements


def _forwarded_pairs(element: str) -> dict[str, str]:
    """`for=192.0.2.60;proto=https;by=203.0.113.43` as a dict (RFC 7239)."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        pairs[key.strip().lower()] = value.strip().strip('"')
    return pairs


class TrustedProxies:
    """The proxies whose forwarding headers we believe, as CIDR networks."""

    __slots__ = ("_networks", "header")

    def __init__(self, cidrs: Iterable[str] = (), header: str = X_FORWARDED_FOR) -> None:
        """Raises ValueError for a network that is not CIDR or an unknown header."""
        if header not in HEADER_CHOICES:
            raise ValueError(f"forwarded header must be one of {', '.join(HEADER_CHOICES)}")
        networks: list[Network] = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ValueError(f"not a CIDR network: {cidr!r}") from None
        self._networks = tuple(networks)
        self.header = header

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str | Address | None) -> bool:
        if not self._networks or address is None:
            return False
        if isinstance(address, str):
            address = _address(address)
            if address is None:
                return False
        return any(address in network for network in self._networks)

    def resolve(
        self, peer: str, scheme: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> ClientOrigin:
        """The client behind `peer` (the connection's address), given the request's
        header list as ASGI has it (lower-case names)."""
        if not self.trusts(peer):
            return ClientOrigin(peer, scheme)
        address, resolved_scheme = peer, scheme
        if self.header == FORWARDED:
            hops = [_forwarded_pairs(e) for e in _values(headers, b"forwarded")]
            chain = [(hop.get("for", ""), hop.get("proto", "")) for hop in hops]
        else:  # one X-Forwarded-Proto for the whole chain: the nearest proxy's word
            protos = _values(headers, b"x-forwarded-proto")
            if protos and protos[-1].lower() in SCHEMES:
                resolved_scheme = protos[-1].lower()
            chain = [(hop, "") for hop in _values(headers, b"x-forwarded-for")]
        for hop, hop_scheme in reversed(chain):
            if not self.trusts(address):
                break
            parsed = _address(hop)
            if parsed is None:  # "unknown", an obfuscated name: stop at the proxy
                break
            address = str(parsed)
            if hop_scheme.lower() in SCHEMES:
                resolved_scheme = hop_scheme.lower()
        return ClientOrigin(address, resolved_scheme)
