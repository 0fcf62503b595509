"""What a node does in a deployment: `--role all|origin|edge` (env TOWNHALL_ROLE).

* ``origin`` holds the stages of the spaces that go live on it (WebRTC, mixer,
  encoder, HLS packager, recorder) and answers the whole API;
* ``edge`` holds no stage: a go-live or a speaker's offer sent to it is answered by an
  origin (forwarded, townhall.nodes.peers); it relays each live program once from the
  origin that holds it and fans it out to its own listeners, and serves HLS from the
  origin through a short-lived cache;
* ``all`` is both, the single node of the quick start (the default).

Join answers send listeners to the least-loaded edge (townhall.nodes.edge_choice), or
to the stage's node when the deployment has no edges.
"""

from __future__ import annotations

from typing import Final

ALL: Final = "all"
ORIGIN: Final = "origin"
EDGE: Final = "edge"
ROLES: Final = (ALL, ORIGIN, EDGE)


class UnknownRole(ValueError):
    pass


def check_role(role: str) -> str:
    """The role, or UnknownRole naming the ones there are."""
    if role not in ROLES:
        raise UnknownRole(f"--role / TOWNHALL_ROLE must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def holds_stages(role: str) -> bool:
    """Whether spaces may go live on a node of this role."""
    return role != EDGE


def serves_listeners(role: str) -> bool:
    """Whether join answers may point listeners at a node of this role when the
    deployment has edges (an origin then keeps its cores for its stages)."""
    return role == EDGE
