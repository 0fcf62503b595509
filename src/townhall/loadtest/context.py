"""The shared, read-mostly things every simulated listener and attacker needs during a run."""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from townhall.loadtest.addresses import AddressPool
from townhall.loadtest.client import HttpClient, RequestError
from townhall.loadtest.config import LoadtestConfig
from townhall.loadtest.metrics import Recorder
from townhall.loadtest.target import Target, resolve

if TYPE_CHECKING:
    from townhall.loadtest.pow import PowSolver


@dataclass
class RunContext:
    config: LoadtestConfig
    target: Target
    space: str
    client: HttpClient
    recorder: Recorder
    listener_addresses: AddressPool | None
    attacker_addresses: AddressPool | None
    rng: random.Random
    solver: PowSolver | None = None
    started_at: float = 0.0
    """Event-loop time of the run's t=0."""
    deadline: float = 0.0
    """Event-loop time at which the run stops every listener."""
    other_origins: dict[str, HttpClient] = field(default_factory=dict)
    """Clients for URLs the server hands out on another port (stream workers), by netloc."""

    def client_for(self, url: str, base: str = "/") -> tuple[HttpClient, str]:
        """The client that reaches ``url`` and the path to ask it for.

        A live URL may be absolute and name another origin (a stream port);
        only the target's own host or a loopback address is followed.
        """
        path = self.target.local_path(url, base)
        netloc = urlsplit(url).netloc
        if not netloc or netloc == self.target.host_header:
            return self.client, path
        client = self.other_origins.get(netloc)
        if client is None:
            parts = urlsplit(url)
            port = parts.port or 80
            try:
                host = resolve(parts.hostname or "", port)
            except (OSError, ValueError):
                raise RequestError("client:unresolvable_origin", netloc) from None
            if (host, port) == (self.target.host, self.target.port):
                client = self.client
            elif host == self.target.host or ipaddress.ip_address(host).is_loopback:
                client = HttpClient(host, port, host_header=netloc)
            else:
                raise RequestError("client:foreign_origin", netloc)
            self.other_origins[netloc] = client
        return client, path

    @property
    def clients(self) -> list[HttpClient]:
        return [self.client, *(c for c in self.other_origins.values() if c is not self.client)]

    def listener_address(self, index: int) -> str | None:
        pool = self.listener_addresses
        return pool.address(index) if pool is not None else None

    @staticmethod
    def bindable(client: HttpClient, address: str | None) -> str | None:
        """Loopback aliases are IPv4: an IPv6 origin is reached unbound."""
        return address if client.family == socket.AF_INET else None

    def attacker_address(self, index: int) -> str | None:
        pool = self.attacker_addresses
        return pool.address(index) if pool is not None else None
