"""Decide presence per zone with hysteresis and turn changes into events.

A single noisy frame must not make a car arrive or leave: a zone turns present after
`frames_in` consecutive positive frames and absent after `frames_out` negative ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge.events import ARRIVED, LEFT, Box, Event

FRAME_ZONE = "frame"


@dataclass
class ZoneState:
    present: bool = False
    streak: int = 0  # consecutive frames disagreeing with `present`
    since: float | None = None  # when the current car arrived
    score: float = 0.0
    box: Box | None = None


def overlap_fraction(box: Box, zx: float, zy: float, zw: float, zh: float) -> float:
    """Fraction of the box's area inside the zone rectangle."""
    ix = max(0.0, min(box.x + box.width, zx + zw) - max(box.x, zx))
    iy = max(0.0, min(box.y + box.height, zy + zh) - max(box.y, zy))
    return ix * iy / max(1e-9, box.width * box.height)


@dataclass
class Decider:
    """Per-zone hysteresis; zones map name -> (x, y, w, h) in processing-frame pixels."""

    zones: dict[str, tuple[int, int, int, int]]
    frames_in: int = 3
    frames_out: int = 5
    min_overlap: float = 0.5
    states: dict[str, ZoneState] = field(default_factory=dict)
    last_frame_id: int = field(default=-1, init=False)  # of the latest update, for events outside one

    def __post_init__(self) -> None:
        for name in [FRAME_ZONE, *self.zones]:
            self.states.setdefault(name, ZoneState())

    def _best_in_zone(self, name: str, boxes: list[Box]) -> Box | None:
        if name == FRAME_ZONE:
            inside = boxes
        else:
            zx, zy, zw, zh = self.zones[name]
            inside = [b for b in boxes if overlap_fraction(b, zx, zy, zw, zh) >= self.min_overlap]
        return max(inside, key=lambda b: b.score, default=None)

    def update(self, boxes: list[Box], wall_time: float, frame_id: int,
               zone_hits: dict[str, Box | None] | None = None) -> list[Event]:
        """Feed one frame's (thresholded) boxes; returns the events this frame caused.

        `zone_hits` overrides the box search for zones classified from their own crop:
        a Box (the zone rectangle with the crop's score) when a car is there, else None.
        """
        events = []
        self.last_frame_id = frame_id
        for name, st in self.states.items():
            if zone_hits is not None and name in zone_hits:
                best = zone_hits[name]
            else:
                best = self._best_in_zone(name, boxes)
            seen = best is not None
            if seen:
                st.score, st.box = best.score, best
            if seen == st.present:
                st.streak = 0
                continue
            st.streak += 1
            if st.streak < (self.frames_in if seen else self.frames_out):
                continue
            st.present, st.streak = seen, 0
            if seen:
                st.since = wall_time
                events.append(Event(ARRIVED, name, wall_time, frame_id, best.score, best, None))
            else:
                dwell = None if st.since is None else wall_time - st.since
                events.append(Event(LEFT, name, wall_time, frame_id, st.score, st.box, dwell))
                st.since, st.box = None, None
        return events

    def carry_over(self, old: Decider, wall_time: float) -> list[Event]:
        """Take over `old`'s per-zone state on a reload; returns `car_left` for removed zones.

        A reload is not a restart for the people watching: a zone that keeps its name keeps
        its car (no second `car_arrived`), and a zone that disappears while occupied must say
        so, or its retained MQTT state and `zone_present` gauge would stay ON forever.
        """
        events = []
        self.last_frame_id = old.last_frame_id
        for name, st in old.states.items():
            if name in self.states:
                self.states[name] = replace(st)
            elif st.present:
                dwell = None if st.since is None else wall_time - st.since
                events.append(Event(LEFT, name, wall_time, old.last_frame_id, st.score, st.box, dwell))
        return events

    def presence(self) -> dict[str, bool]:
        return {name: st.present for name, st in self.states.items()}
