"""Which server and which space a rehearsal aims at, and the paths of the listener route.

Why its own module: the operator may paste a base URL, a listen-page URL or
an API URL; everything else in the load generator works with host, port and
paths only. Pure, except for name resolution of the host (done once).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

_SPACE_PATH = re.compile(r"^(?:/s|/api/spaces)/([^/?#]+)")


@dataclass(frozen=True)
class Target:
    host: str
    """A numeric address (resolved once): every socket connects to it."""
    port: int
    host_header: str
    space: str | None

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def is_ipv4(self) -> bool:
        return ipaddress.ip_address(self.host).version == 4

    def snapshot_path(self, space: str) -> str:
        return f"/api/spaces/{space}"

    def join_path(self, space: str) -> str:
        return f"/api/spaces/{space}/join"

    def live_path_guess(self, space: str) -> str:
        """The live route per ROUTES.md, for forged tickets before any real one is seen."""
        return f"/live/{space}.aac"

    def local_path(self, url: str, base: str = "/") -> str:
        """Path and query of ``url`` (absolute or relative to ``base``) on this server."""
        parts = urlsplit(urljoin(base, url))
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path


def parse_target(url: str, space: str | None = None) -> Target:
    """Host, port and space from an http:// URL; a space in the URL unless given apart."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ValueError("only http:// targets (the rehearsal runs on loopback, behind any TLS)")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or 80
    host = resolve(parts.hostname, port)
    match = _SPACE_PATH.match(parts.path or "")
    return Target(host, port, parts.netloc, space or (match.group(1) if match else None))


def resolve(hostname: str, port: int) -> str:
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    if not infos:
        raise ValueError(f"cannot resolve {hostname!r}")
    # Prefer IPv4: loopback source aliases (127.x.y.z) exist only there.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])
