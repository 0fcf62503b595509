"""Who is on a space's stage, who asked to be, and who may do what to whom.

One host, at most two co-hosts and ten speakers. The host invites co-hosts;
host and co-hosts bring speakers up, mute them or send them back to the
audience; only the speaker can unmute themselves (so nobody is put on air
without consent); only the host removes someone from the space for good.
Every refusal says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from townhall.domain.errors import Conflict, Forbidden, Invalid, NotFound
from townhall.domain.spaces import SpeakPolicy

MAX_COHOSTS = 2
MAX_SPEAKERS = 10
MAX_PENDING_REQUESTS = 1_000
"""Requests beyond this are refused: nobody reviews a queue of thousands."""


class Role(StrEnum):
    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"
    LISTENER = "listener"


MODERATORS = frozenset({Role.HOST, Role.COHOST})


@dataclass
class Seat:
    role: Role
    muted: bool = False


@dataclass
class Stage:
    host_id: str
    speak_policy: SpeakPolicy = SpeakPolicy.EVERYONE
    seats: dict[str, Seat] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    invited: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)
    """Usernames of everyone the stage mentions, so a snapshot needs no lookups."""

    def __post_init__(self) -> None:
        self.seats.setdefault(self.host_id, Seat(Role.HOST))

    # -- queries ---------------------------------------------------------------

    def role_of(self, user_id: str | None) -> Role:
        seat = self.seats.get(user_id) if user_id else None
        return seat.role if seat else Role.LISTENER

    def is_on_stage(self, user_id: str | None) -> bool:
        return self.role_of(user_id) is not Role.LISTENER

    def count(self, role: Role) -> int:
        return sum(1 for seat in self.seats.values() if seat.role is role)

    def is_muted(self, user_id: str) -> bool:
        seat = self.seats.get(user_id)
        return seat.muted if seat else True

    # -- rules -----------------------------------------------------------------

    def _require_moderator(self, actor: str, action: str) -> Role:
        role = self.role_of(actor)
        if role not in MODERATORS:
            raise Forbidden(f"only the host or a co-host can {action}")
        return role

    def _require_not_removed(self, user_id: str) -> None:
        if user_id in self.removed:
            raise Forbidden("this user was removed from the space", code="removed")

    def _require_seat(self, user_id: str) -> Seat:
        seat = self.seats.get(user_id)
        if seat is None:
            raise NotFound("that user is not on the stage", code="not_on_stage")
        return seat

    def request_to_speak(self, user_id: str) -> None:
        self._require_not_removed(user_id)
        if self.is_on_stage(user_id):
            raise Conflict("you are already on the stage", code="already_on_stage")
        if self.speak_policy is SpeakPolicy.INVITED and user_id not in self.invited:
            raise Forbidden("only people the host invited may request to speak", code="not_invited")
        if user_id in self.requests:
            return
        if len(self.requests) >= MAX_PENDING_REQUESTS:
            raise Conflict("too many pending requests; try again later", code="requests_full")
        self.requests.append(user_id)

    def drop_request(self, actor: str, target: str) -> None:
        """Declined by a moderator, or withdrawn by the person who asked."""
        if actor != target:
            self._require_moderator(actor, "decline a request")
        if target not in self.requests:
            raise NotFound("there is no pending request from that user", code="no_request")
        self.requests.remove(target)

    def invite(self, actor: str, target: str) -> None:
        self._require_moderator(actor, "invite people")
        self._require_not_removed(target)
        self.invited.add(target)

    def put_on_stage(self, actor: str, target: str, role: Role) -> None:
        """Approve a request or invite straight up; also promotes and demotes."""
        if role not in (Role.COHOST, Role.SPEAKER):
            raise Invalid("role must be cohost or speaker", code="invalid_role")
        actor_role = self._require_moderator(actor, "bring people on stage")
        if role is Role.COHOST and actor_role is not Role.HOST:
            raise Forbidden("only the host can make someone a co-host")
        self._require_not_removed(target)
        current = self.seats.get(target)
        if current is not None:
            if current.role is Role.HOST:
                raise Conflict("the host is already on the stage", code="already_on_stage")
            if current.role is role:
                return
            if current.role is Role.COHOST and actor_role is not Role.HOST:
                raise Forbidden("only the host can change a co-host's role")
        limit = MAX_COHOSTS if role is Role.COHOST else MAX_SPEAKERS
        if self.count(role) >= limit:
            raise Conflict(f"the stage already has {limit} {role.value}s", code="stage_full")
        self.seats[target] = Seat(role, muted=current.muted if current else False)
        if target in self.requests:
            self.requests.remove(target)

    def take_off_stage(self, actor: str, target: str) -> None:
        seat = self._require_seat(target)
        if seat.role is Role.HOST:
            raise Forbidden("the host cannot leave the stage; end the space instead")
        if actor != target:
            actor_role = self._require_moderator(actor, "remove people from the stage")
            if seat.role is Role.COHOST and actor_role is not Role.HOST:
                raise Forbidden("only the host can remove a co-host from the stage")
        del self.seats[target]

    def mute(self, actor: str, target: str) -> None:
        seat = self._require_seat(target)
        if actor != target:
            actor_role = self._require_moderator(actor, "mute others")
            if seat.role is not Role.SPEAKER and actor_role is not Role.HOST:
                raise Forbidden("a co-host can mute speakers only")
            if seat.role is Role.HOST:
                raise Forbidden("nobody can mute the host")
        seat.muted = True

    def mute_all(self, actor: str) -> int:
        """Mutes everyone `actor` may mute but themselves (the host: all; a co-host:
        the speakers); returns how many were muted now."""
        actor_role = self._require_moderator(actor, "mute everyone")
        muted = 0
        for user_id, seat in self.seats.items():
            if user_id == actor or seat.muted or seat.role is Role.HOST:
                continue
            if actor_role is Role.HOST or seat.role is Role.SPEAKER:
                seat.muted = True
                muted += 1
        return muted

    def unmute(self, actor: str, target: str) -> None:
        seat = self._require_seat(target)
        if actor != target:
            raise Forbidden("only speakers can unmute themselves")
        seat.muted = False

    def remove_from_space(self, actor: str, target: str) -> None:
        if self.role_of(actor) is not Role.HOST:
            raise Forbidden("only the host can remove people from the space")
        if target == self.host_id:
            raise Forbidden("the host cannot remove themselves")
        self.removed.add(target)
        self.seats.pop(target, None)
        self.invited.discard(target)
        if target in self.requests:
            self.requests.remove(target)

    # -- serialization for shared state backends --------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "speak_policy": self.speak_policy.value,
            "seats": {uid: [s.role.value, s.muted] for uid, s in self.seats.items()},
            "requests": list(self.requests),
            "invited": sorted(self.invited),
            "removed": sorted(self.removed),
            "names": dict(self.names),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stage:
        return cls(
            host_id=data["host_id"],
            speak_policy=SpeakPolicy(data["speak_policy"]),
            seats={uid: Seat(Role(r), bool(m)) for uid, (r, m) in data["seats"].items()},
            requests=list(data["requests"]),
            invited=set(data["invited"]),
            removed=set(data["removed"]),
            names=dict(data.get("names", {})),
        )
