"""The accounting of the fleet report: what is lost, a duplicate, out of order; reconnect timing."""

from __future__ import annotations

import json

import pytest

from loadtest.fleet import default_phases, phase_list
from loadtest.report import compare_events, format_table, reconnect_delays


def ev(frame_id: int, kind: str = "car_arrived", zone: str = "frame") -> dict:
    return {"event": kind, "zone": zone, "frame_id": frame_id, "time": 1.0 + frame_id, "score": 0.9}


def wire(*events: dict) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def test_everything_delivered_once_in_order() -> None:
    produced = [ev(1), ev(1, zone="left"), ev(4, "car_left")]
    assert compare_events(produced, wire(*produced)) == {
        "produced": 3, "delivered": 3, "lost": 0, "duplicates": 0, "unexpected": 0, "in_order": True}


def test_a_missing_event_is_lost_and_a_resend_is_a_duplicate() -> None:
    produced = [ev(1), ev(2, "car_left"), ev(3)]
    got = compare_events(produced, wire(ev(1), ev(1), ev(3)))
    assert (got["delivered"], got["lost"], got["duplicates"]) == (2, 1, 1)
    assert got["in_order"]  # what was delivered came in production order


def test_reordered_unknown_and_unreadable_deliveries_are_flagged() -> None:
    produced = [ev(1), ev(2, "car_left")]
    got = compare_events(produced, [*wire(ev(2, "car_left"), ev(1), ev(9)), b"not json"])
    assert not got["in_order"]
    assert got["unexpected"] == 2  # ev(9) was never produced; the garbage cannot be matched


def test_same_frame_different_zone_is_a_different_event() -> None:
    produced = [ev(5, zone="left"), ev(5, zone="top")]
    assert compare_events(produced, wire(ev(5, zone="left")))["lost"] == 1


def test_reconnect_is_timed_from_the_broker_listening_again() -> None:
    kills, restarts = [100.0, 200.0], [103.0, 203.0]
    connects = [10.0, 107.0, 108.0, 204.5]  # the start, two after the first kill, one after the second
    assert reconnect_delays(connects, kills, restarts) == [4.0, 1.5]


def test_a_daemon_that_never_came_back_has_no_reconnect_for_that_kill() -> None:
    assert reconnect_delays([10.0, 107.0], [100.0, 200.0], [103.0, 203.0]) == [4.0]


def test_phases() -> None:
    assert default_phases(50) == [1, 10, 50]
    assert default_phases(5) == [1, 5]
    assert default_phases(1) == [1]
    assert phase_list("3") == [3]
    with pytest.raises(Exception, match="numbers of daemons"):
        phase_list("1,x")


def test_table_has_one_column_per_phase() -> None:
    phase = {"daemons": 2, "target_fps": 2.0, "events": {"produced": 4, "delivered": 4, "lost": 0, "duplicates": 1,
                                                         "cameras_without_events": 0},
             "reconnect_s": {"p50": 1.0, "p95": 1.2}, "broker": {"cpu_percent_of_one_core": 0.1, "peak_rss_mb": 8.0},
             "daemon_rss_mb": {"median": 88.0, "max": 89.0},
             "daemon_cpu_percent_of_one_core": {"median": 3.0, "max": 4.0},
             "frame_age_p95_ms": {"median": 10.0, "max": 12.0}, "fps": {"median": 2.0}, "machine_cpu_percent": 50.0}
    table = format_table([phase, {**phase, "daemons": 50}])
    assert table.splitlines()[0] == "| figure | N=2 | N=50 |"
    assert "| lost | 0 | 0 |" in table
