"""Every stage rule, tested as pure logic: who may do what to whom."""

from __future__ import annotations

import pytest

from townhall.domain.errors import Conflict, Forbidden, Invalid, NotFound
from townhall.domain.spaces import SpeakPolicy
from townhall.domain.stage import MAX_COHOSTS, MAX_SPEAKERS, Role, Stage

HOST = "host"


def stage_with(**seats: Role) -> Stage:
    stage = Stage(host_id=HOST)
    for user, role in seats.items():
        stage.put_on_stage(HOST, user, role)
    return stage


def test_host_is_on_stage_from_the_start() -> None:
    stage = Stage(host_id=HOST)
    assert stage.role_of(HOST) is Role.HOST
    assert stage.role_of("someone") is Role.LISTENER
    assert stage.role_of(None) is Role.LISTENER


def test_request_then_approve_moves_listener_to_stage() -> None:
    stage = Stage(host_id=HOST)
    stage.request_to_speak("ann")
    stage.request_to_speak("ann")  # asking twice keeps one place in the queue
    stage.request_to_speak("bob")
    assert stage.requests == ["ann", "bob"]
    stage.put_on_stage(HOST, "ann", Role.SPEAKER)
    assert stage.role_of("ann") is Role.SPEAKER
    assert stage.requests == ["bob"]


def test_cohost_approves_speakers_but_cannot_make_cohosts() -> None:
    stage = stage_with(co=Role.COHOST)
    stage.request_to_speak("ann")
    stage.put_on_stage("co", "ann", Role.SPEAKER)
    with pytest.raises(Forbidden, match="only the host can make someone a co-host"):
        stage.put_on_stage("co", "bob", Role.COHOST)


def test_listener_and_speaker_cannot_moderate() -> None:
    stage = stage_with(spk=Role.SPEAKER)
    for actor in ("spk", "random"):
        with pytest.raises(Forbidden):
            stage.put_on_stage(actor, "x", Role.SPEAKER)
        with pytest.raises(Forbidden):
            stage.invite(actor, "x")
    stage.request_to_speak("x")
    with pytest.raises(Forbidden):
        stage.drop_request("spk", "x")


def test_stage_limits_two_cohosts_ten_speakers() -> None:
    stage = Stage(host_id=HOST)
    for i in range(MAX_COHOSTS):
        stage.put_on_stage(HOST, f"c{i}", Role.COHOST)
    with pytest.raises(Conflict, match="2 cohosts") as full:
        stage.put_on_stage(HOST, "c-extra", Role.COHOST)
    assert full.value.code == "stage_full"
    for i in range(MAX_SPEAKERS):
        stage.put_on_stage(HOST, f"s{i}", Role.SPEAKER)
    with pytest.raises(Conflict, match="10 speakers"):
        stage.put_on_stage(HOST, "s-extra", Role.SPEAKER)
    assert stage.count(Role.SPEAKER) == MAX_SPEAKERS


def test_promote_and_demote() -> None:
    stage = stage_with(ann=Role.SPEAKER, co=Role.COHOST)
    stage.put_on_stage(HOST, "ann", Role.COHOST)
    assert stage.role_of("ann") is Role.COHOST
    with pytest.raises(Forbidden, match="change a co-host"):
        stage.put_on_stage("co", "ann", Role.SPEAKER)
    with pytest.raises(Conflict, match="host is already"):
        stage.put_on_stage(HOST, HOST, Role.SPEAKER)
    with pytest.raises(Invalid):
        stage.put_on_stage(HOST, "x", Role.HOST)


def test_decline_and_withdraw() -> None:
    stage = stage_with(co=Role.COHOST)
    stage.request_to_speak("ann")
    stage.request_to_speak("bob")
    stage.drop_request("co", "ann")
    stage.drop_request("bob", "bob")
    assert stage.requests == []
    with pytest.raises(NotFound):
        stage.drop_request(HOST, "ann")


def test_already_on_stage_cannot_request() -> None:
    stage = stage_with(ann=Role.SPEAKER)
    with pytest.raises(Conflict):
        stage.request_to_speak("ann")


def test_invited_only_policy() -> None:
    stage = Stage(host_id=HOST, speak_policy=SpeakPolicy.INVITED)
    with pytest.raises(Forbidden, match="invited") as refused:
        stage.request_to_speak("ann")
    assert refused.value.code == "not_invited"
    stage.invite(HOST, "ann")
    stage.request_to_speak("ann")
    assert stage.requests == ["ann"]


def test_mute_rules() -> None:
    stage = stage_with(ann=Role.SPEAKER, co=Role.COHOST, co2=Role.COHOST)
    stage.mute("co", "ann")
    assert stage.is_muted("ann")
    with pytest.raises(Forbidden, match="only speakers can unmute themselves"):
        stage.unmute("co", "ann")
    stage.unmute("ann", "ann")
    assert not stage.is_muted("ann")
    with pytest.raises(Forbidden, match="co-host can mute speakers only"):
        stage.mute("co", "co2")
    with pytest.raises(Forbidden):
        stage.mute("co", HOST)
    with pytest.raises(Forbidden):
        stage.mute("ann", "co")
    stage.mute(HOST, "co2")
    stage.mute(HOST, HOST)  # anyone may mute themselves
    with pytest.raises(NotFound):
        stage.mute(HOST, "listener")


def test_take_off_stage_rules() -> None:
    stage = stage_with(ann=Role.SPEAKER, bob=Role.SPEAKER, co=Role.COHOST, co2=Role.COHOST)
    stage.take_off_stage("co", "ann")
    assert not stage.is_on_stage("ann")
    stage.take_off_stage("bob", "bob")  # leaving on your own
    with pytest.raises(Forbidden, match="only the host can remove a co-host"):
        stage.take_off_stage("co", "co2")
    with pytest.raises(Forbidden, match="host cannot leave"):
        stage.take_off_stage(HOST, HOST)
    stage.take_off_stage(HOST, "co2")
    with pytest.raises(NotFound):
        stage.take_off_stage(HOST, "co2")


def test_removal_is_host_only_and_final() -> None:
    stage = stage_with(ann=Role.SPEAKER, co=Role.COHOST)
    with pytest.raises(Forbidden, match="only the host can remove"):
        stage.remove_from_space("co", "ann")
    stage.remove_from_space(HOST, "ann")
    assert not stage.is_on_stage("ann")
    with pytest.raises(Forbidden) as refused:
        stage.request_to_speak("ann")
    assert refused.value.code == "removed"
    with pytest.raises(Forbidden):
        stage.put_on_stage(HOST, "ann", Role.SPEAKER)
    with pytest.raises(Forbidden):
        stage.remove_from_space(HOST, HOST)


def test_json_round_trip_keeps_everything() -> None:
    stage = stage_with(ann=Role.SPEAKER, co=Role.COHOST)
    stage.mute(HOST, "ann")
    stage.request_to_speak("bob")
    stage.invite(HOST, "carl")
    stage.remove_from_space(HOST, "dan")
    stage.names["ann"] = "Ann"
    again = Stage.from_json(stage.to_json())
    assert again == stage
