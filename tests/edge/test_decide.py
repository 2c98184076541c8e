"""Decider: per-zone hysteresis, zone membership by overlap, and the events it emits."""

from __future__ import annotations

import pytest

from edge.decide import (FRAME_ZONE, Decider, overlap_fraction, polygon_area, polygon_overlap_fraction, polygon_self_crossing,
                         zone_overlap)
from edge.events import ARRIVED, LEFT, Box, Event

# A car box fully inside the left half of a 320x240 frame, and one fully inside the right.
LEFT_CAR = Box(20.0, 100.0, 100.0, 40.0, 0.9)
RIGHT_CAR = Box(200.0, 100.0, 100.0, 40.0, 0.8)
ZONES = {"left": (0, 0, 160, 240), "right": (160, 0, 160, 240)}


def feed(d: Decider, frames: list[list[Box]], t0: float = 1000.0, dt: float = 1.0, fid0: int = 0) -> list[Event]:
    """Feed frames at t0, t0+dt, ...; returns all events in order."""
    out: list[Event] = []
    for i, boxes in enumerate(frames):
        out += d.update(boxes, t0 + i * dt, fid0 + i)
    return out


def test_overlap_fraction_is_share_of_box_area_inside_zone() -> None:
    box = Box(0.0, 0.0, 10.0, 10.0, 1.0)
    assert overlap_fraction(box, 0, 0, 100, 100) == pytest.approx(1.0)
    assert overlap_fraction(box, 5, 0, 100, 100) == pytest.approx(0.5)
    assert overlap_fraction(box, 5, 5, 100, 100) == pytest.approx(0.25)
    assert overlap_fraction(box, 10, 0, 100, 100) == 0.0  # touching edges only
    assert overlap_fraction(box, 50, 50, 10, 10) == 0.0
    # Negative coordinates (car cut by the border): half of it is outside the picture.
    assert overlap_fraction(Box(-5.0, 0.0, 10.0, 10.0, 1.0), 0, 0, 100, 100) == pytest.approx(0.5)


def test_arrives_after_exactly_frames_in_consecutive_positives() -> None:
    d = Decider({}, frames_in=3, frames_out=5)
    assert d.update([LEFT_CAR], 1.0, 1) == []
    assert d.update([LEFT_CAR], 2.0, 2) == []
    assert d.presence() == {FRAME_ZONE: False}
    events = d.update([LEFT_CAR], 3.0, 3)
    assert events == [Event(ARRIVED, FRAME_ZONE, 3.0, 3, 0.9, LEFT_CAR, None)]
    assert d.presence() == {FRAME_ZONE: True}
    # Staying present emits nothing more.
    assert feed(d, [[LEFT_CAR]] * 10, t0=4.0) == []


def test_leaves_after_exactly_frames_out_consecutive_negatives_with_dwell() -> None:
    d = Decider({}, frames_in=2, frames_out=4)
    arrived = feed(d, [[LEFT_CAR], [LEFT_CAR]], t0=100.0)
    assert [e.kind for e in arrived] == [ARRIVED] and arrived[0].time == 101.0
    # Last sighting before leaving has a different score: the LEFT event reports it.
    last = Box(22.0, 101.0, 100.0, 40.0, 0.7)
    assert d.update([last], 105.0, 10) == []
    for i, t in enumerate((106.0, 107.0, 108.0)):
        assert d.update([], t, 11 + i) == []
        assert d.presence()[FRAME_ZONE] is True
    events = d.update([], 109.5, 14)
    assert len(events) == 1
    ev = events[0]
    assert (ev.kind, ev.zone, ev.time, ev.frame_id) == (LEFT, FRAME_ZONE, 109.5, 14)
    assert ev.score == 0.7 and ev.box == last
    assert ev.dwell_s == pytest.approx(109.5 - 101.0)
    assert d.presence() == {FRAME_ZONE: False}


@pytest.mark.parametrize("frames_in,frames_out", [(2, 2), (3, 5), (5, 3)])
def test_a_single_noisy_frame_never_flips_state(frames_in: int, frames_out: int) -> None:
    d = Decider({}, frames_in=frames_in, frames_out=frames_out)
    # Absent, with isolated false positives: one positive between negatives, repeatedly.
    noisy_absent = [[LEFT_CAR] if i % 2 == 0 else [] for i in range(40)]
    assert feed(d, noisy_absent) == []
    assert d.presence()[FRAME_ZONE] is False
    # Get it present, then isolated misses (one negative between positives) never make it leave.
    assert [e.kind for e in feed(d, [[LEFT_CAR]] * frames_in, t0=2000.0)] == [ARRIVED]
    noisy_present = [[] if i % 2 == 0 else [LEFT_CAR] for i in range(40)]
    assert feed(d, noisy_present, t0=3000.0) == []
    assert d.presence()[FRAME_ZONE] is True


def test_streak_must_be_consecutive() -> None:
    """frames_in - 1 positives, a miss, frames_in - 1 positives: still absent."""
    d = Decider({}, frames_in=3, frames_out=3)
    assert feed(d, [[LEFT_CAR], [LEFT_CAR], [], [LEFT_CAR], [LEFT_CAR], []]) == []
    assert d.presence()[FRAME_ZONE] is False
    assert [e.kind for e in feed(d, [[LEFT_CAR]] * 3, t0=50.0)] == [ARRIVED]


def test_zones_are_independent_and_frame_zone_covers_everything() -> None:
    d = Decider(ZONES, frames_in=2, frames_out=2)
    assert set(d.presence()) == {FRAME_ZONE, "left", "right"}
    events = feed(d, [[LEFT_CAR], [LEFT_CAR]])
    assert sorted(e.zone for e in events) == [FRAME_ZONE, "left"]
    assert all(e.kind == ARRIVED for e in events)
    assert d.presence() == {FRAME_ZONE: True, "left": True, "right": False}

    # The car moves from left to right: left leaves, right arrives, the frame stays occupied.
    events = feed(d, [[RIGHT_CAR], [RIGHT_CAR]], t0=10.0, fid0=2)
    assert sorted((e.zone, e.kind) for e in events) == [("left", LEFT), ("right", ARRIVED)]
    right = next(e for e in events if e.zone == "right")
    assert right.box == RIGHT_CAR and right.score == 0.8
    assert d.presence() == {FRAME_ZONE: True, "left": False, "right": True}


def test_frame_zone_reports_best_scoring_box() -> None:
    d = Decider(ZONES, frames_in=1, frames_out=1)
    events = d.update([RIGHT_CAR, LEFT_CAR], 5.0, 0)
    frame_ev = next(e for e in events if e.zone == FRAME_ZONE)
    assert frame_ev.box == LEFT_CAR and frame_ev.score == 0.9
    by_zone = {e.zone: e.box for e in events}
    assert by_zone["left"] == LEFT_CAR and by_zone["right"] == RIGHT_CAR


def test_min_overlap_decides_zone_membership() -> None:
    # Box x 100..200 over a zone boundary at 160: 60% in "left", 40% in "right".
    straddler = Box(100.0, 100.0, 100.0, 40.0, 0.9)
    d = Decider(ZONES, frames_in=1, frames_out=1, min_overlap=0.5)
    d.update([straddler], 1.0, 0)
    assert d.presence() == {FRAME_ZONE: True, "left": True, "right": False}

    d = Decider(ZONES, frames_in=1, frames_out=1, min_overlap=0.3)
    d.update([straddler], 1.0, 0)
    assert d.presence() == {FRAME_ZONE: True, "left": True, "right": True}

    d = Decider(ZONES, frames_in=1, frames_out=1, min_overlap=0.7)
    d.update([straddler], 1.0, 0)
    assert d.presence() == {FRAME_ZONE: True, "left": False, "right": False}


def test_box_outside_every_zone_only_counts_for_frame() -> None:
    d = Decider({"gate": (0, 0, 50, 50)}, frames_in=1, frames_out=1)
    events = d.update([RIGHT_CAR], 1.0, 0)
    assert [(e.zone, e.kind) for e in events] == [(FRAME_ZONE, ARRIVED)]
    assert d.presence() == {FRAME_ZONE: True, "gate": False}


def test_rearrival_starts_a_new_dwell() -> None:
    d = Decider({}, frames_in=1, frames_out=1)
    feed(d, [[LEFT_CAR]], t0=10.0)
    (left1,) = d.update([], 15.0, 1)
    assert left1.dwell_s == pytest.approx(5.0)
    d.update([RIGHT_CAR], 100.0, 2)
    (left2,) = d.update([], 103.0, 3)
    assert left2.dwell_s == pytest.approx(3.0)
    assert left2.box == RIGHT_CAR


def test_carry_over_keeps_presence_of_kept_zones_and_leaves_removed_ones() -> None:
    """SIGHUP: a car in a kept zone does not arrive twice; a removed occupied zone says car_left."""
    old = Decider(dict(ZONES), frames_in=2, frames_out=3)
    arrived = feed(old, [[LEFT_CAR, RIGHT_CAR]] * 2, t0=100.0)
    assert sorted(e.zone for e in arrived if e.kind == ARRIVED) == [FRAME_ZONE, "left", "right"]

    new = Decider({"left": ZONES["left"]}, frames_in=4, frames_out=3)  # "right" removed, hysteresis changed
    left = new.carry_over(old, wall_time=110.0)
    assert left == [Event(LEFT, "right", 110.0, 1, RIGHT_CAR.score, RIGHT_CAR, 9.0)]
    assert new.presence() == {FRAME_ZONE: True, "left": True}
    assert feed(new, [[LEFT_CAR]] * 6, t0=111.0, fid0=2) == []  # still there: no second car_arrived
    gone = feed(new, [[]] * 3, t0=120.0, fid0=8)
    assert [(e.kind, e.zone) for e in gone] == [(LEFT, FRAME_ZONE), (LEFT, "left")]
    assert gone[1].dwell_s == pytest.approx(120.0 + 2 - 101.0)  # dwell counts from the first arrival


def test_carry_over_sends_car_left_only_for_removed_zones_that_were_occupied() -> None:
    old = Decider(dict(ZONES), frames_in=2, frames_out=3)
    feed(old, [[LEFT_CAR]] * 2)
    new = Decider({}, frames_in=2, frames_out=3)
    events = new.carry_over(old, wall_time=5000.0)
    assert [(e.kind, e.zone) for e in events] == [(LEFT, "left")]  # "right" was empty: nothing to say


# --- polygon zones -------------------------------------------------------------------------

def _rect_polygon(x: float, y: float, w: float, h: float) -> tuple[tuple[float, float], ...]:
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def test_polygon_area_either_winding() -> None:
    square = _rect_polygon(0, 0, 10, 10)
    assert polygon_area(square) == pytest.approx(100.0)
    assert polygon_area(tuple(reversed(square))) == pytest.approx(100.0)
    assert polygon_area(((0, 0), (10, 0), (0, 10))) == pytest.approx(50.0)
    # Concave L: a 10x10 square less its 5x5 top-right quarter.
    assert polygon_area(L_SHAPE) == pytest.approx(75.0)


L_SHAPE = ((0, 0), (5, 0), (5, 5), (10, 5), (10, 10), (0, 10))


def test_a_rectangle_given_as_polygon_overlaps_exactly_like_the_rectangle() -> None:
    """Every box position on a grid around the zone, including boxes cut by the border."""
    zone = (40, 30, 100, 60)
    poly = _rect_polygon(*zone)
    for x in range(-30, 170, 7):
        for y in range(-20, 120, 9):
            for w, h in ((10, 10), (50, 20), (200, 100), (3, 40)):
                box = Box(float(x), float(y), float(w), float(h), 0.9)
                want = overlap_fraction(box, *zone)
                assert polygon_overlap_fraction(box, poly) == pytest.approx(want, abs=1e-9), box
                assert polygon_overlap_fraction(box, tuple(reversed(poly))) == pytest.approx(want, abs=1e-9)
                assert zone_overlap(box, poly) == pytest.approx(zone_overlap(box, zone), abs=1e-9)


@pytest.mark.parametrize("box,want", [
    (Box(0.0, 0.0, 10.0, 10.0, 1.0), 0.75),      # the whole L's bounding box
    (Box(5.0, 0.0, 5.0, 5.0, 1.0), 0.0),          # exactly the missing quarter
    (Box(6.0, 1.0, 2.0, 2.0, 1.0), 0.0),          # inside the notch, touching nothing
    (Box(0.0, 0.0, 5.0, 5.0, 1.0), 1.0),          # inside the L
    (Box(2.5, 2.5, 5.0, 5.0, 1.0), 0.75),         # over the inner corner: 3 of 4 quarters
    (Box(5.0, 2.0, 4.0, 6.0, 1.0), 0.5),          # half above, half below the notch's floor y=5
    (Box(-5.0, 0.0, 10.0, 10.0, 1.0), 0.5),       # cut by the left border of the picture
    (Box(10.0, 0.0, 5.0, 10.0, 1.0), 0.0),        # touching the right edge only
    (Box(20.0, 20.0, 5.0, 5.0, 1.0), 0.0),        # far away
])
def test_concave_polygon_overlap(box: Box, want: float) -> None:
    assert polygon_overlap_fraction(box, L_SHAPE) == pytest.approx(want)
    assert polygon_overlap_fraction(box, tuple(reversed(L_SHAPE))) == pytest.approx(want)


def test_triangle_overlap_and_box_containing_the_polygon() -> None:
    tri = ((0, 0), (100, 0), (0, 100))  # the half below the diagonal x + y = 100
    assert polygon_overlap_fraction(Box(0.0, 0.0, 100.0, 100.0, 1.0), tri) == pytest.approx(0.5)
    assert polygon_overlap_fraction(Box(0.0, 0.0, 50.0, 50.0, 1.0), tri) == pytest.approx(1.0)
    assert polygon_overlap_fraction(Box(50.0, 50.0, 50.0, 50.0, 1.0), tri) == 0.0  # touches at one point
    # A box that holds the whole polygon: polygon area / box area.
    assert polygon_overlap_fraction(Box(-100.0, -100.0, 400.0, 400.0, 1.0), tri) == pytest.approx(5000 / 160000)
    # Half of the box [25,75]x[25,75] lies below the diagonal.
    assert polygon_overlap_fraction(Box(25.0, 25.0, 50.0, 50.0, 1.0), tri) == pytest.approx(0.5)


def test_decider_uses_polygon_zones_for_membership() -> None:
    """A slanted driveway: the car on it counts, the car on the pavement beside it does not."""
    drive = ((0, 240), (120, 80), (220, 80), (140, 240))
    on_drive = Box(100.0, 150.0, 60.0, 40.0, 0.9)
    beside = Box(200.0, 180.0, 60.0, 40.0, 0.8)
    d = Decider({"drive": drive, "rect": (0, 0, 320, 120)}, frames_in=1, frames_out=1)
    events = d.update([on_drive, beside], 1.0, 0)
    assert sorted((e.zone, e.kind) for e in events) == [("drive", ARRIVED), (FRAME_ZONE, ARRIVED)]
    assert next(e for e in events if e.zone == "drive").box == on_drive
    events = d.update([beside], 2.0, 1)
    assert [(e.zone, e.kind) for e in events] == [("drive", LEFT)]
    assert d.presence() == {FRAME_ZONE: True, "drive": False, "rect": False}


def test_carry_over_keeps_presence_when_a_rectangle_becomes_a_polygon() -> None:
    old = Decider({"left": ZONES["left"]}, frames_in=1, frames_out=1)
    old.update([LEFT_CAR], 1.0, 0)
    new = Decider({"left": _rect_polygon(0, 80, 160, 80)}, frames_in=1, frames_out=1)
    assert new.carry_over(old, 2.0) == []
    assert new.presence()["left"] is True
    assert new.update([LEFT_CAR], 3.0, 1) == []  # the car is inside the new shape: no second arrival


def test_self_crossing_polygons_are_found() -> None:
    assert polygon_self_crossing(L_SHAPE) is None
    assert polygon_self_crossing(_rect_polygon(0, 0, 10, 10)) is None
    assert polygon_self_crossing(((0, 0), (10, 0), (0, 10))) is None
    assert polygon_self_crossing(((0, 0), (10, 10), (10, 0), (0, 10))) == (0, 2)  # bow-tie
    # A vertex touching a non-adjacent edge counts as crossing.
    assert polygon_self_crossing(((0, 0), (10, 0), (10, 10), (5, 0), (0, 10))) is not None
