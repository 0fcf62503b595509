"""The door under overload: a place in line, never a 5xx, retries spread per person."""

from __future__ import annotations

from townhall.admission.signing import Signer
from townhall.config import load_settings
from townhall.service.door import Door


def test_overload_answers_with_a_place_in_line_and_spread_retries(tmp_path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    door = Door(settings, Signer(b"k" * 32), listeners=lambda: 0)
    door.lag.value_ms = door.capacity.shed_lag_ms  # just into the SHED band
    answers = [door.join("space", None, {}) for _ in range(40)]
    assert all("wait" in answer for answer in answers), "overload must queue, not admit"
    retries = [answer["wait"]["retry_after_s"] for answer in answers]
    assert min(retries) >= door.capacity.shed_retry_s * 0.75
    assert len(set(retries)) > 5, f"the shed crowd would come back in one wave: {retries}"
    assert door.counts["shed"] == 40
