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


# A zone is a rectangle (x, y, width, height) or a polygon ((x0, y0), (x1, y1), ...), both in
# processing-frame pixels. A polygon follows a driveway seen at an angle, where any rectangle
# either misses the drive's edge or takes in the pavement.
Rect = tuple[int, int, int, int]
Polygon = tuple[tuple[float, float], ...]
ZoneShape = Rect | Polygon


def overlap_fraction(box: Box, zx: float, zy: float, zw: float, zh: float) -> float:
    """Fraction of the box's area inside the zone rectangle."""
    ix = max(0.0, min(box.x + box.width, zx + zw) - max(box.x, zx))
    iy = max(0.0, min(box.y + box.height, zy + zh) - max(box.y, zy))
    return ix * iy / max(1e-9, box.width * box.height)


def polygon_area(points: Polygon) -> float:
    """Unsigned area by the shoelace formula (either winding order)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(twice) / 2.0


def _segments_cross(a: tuple[float, float], b: tuple[float, float],
                    c: tuple[float, float], d: tuple[float, float]) -> bool:
    """Whether segments ab and cd intersect (touching counts)."""
    def side(p, q, r) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    def within(p, q, r) -> bool:  # r on line pq: is it between p and q?
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    d1, d2, d3, d4 = side(c, d, a), side(c, d, b), side(a, b, c), side(a, b, d)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0 and d4 != 0:
        return True
    return ((d1 == 0 and within(c, d, a)) or (d2 == 0 and within(c, d, b))
            or (d3 == 0 and within(a, b, c)) or (d4 == 0 and within(a, b, d)))


def polygon_self_crossing(points: Polygon) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that meet (a bow-tie), or None for a simple polygon.

    The area of a crossing polygon means nothing to a user, so config loading refuses one.
    """
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the first and last edge share a corner
            if _segments_cross(*edges[i], *edges[j]):
                return i, j
    return None


def _clip(points: list[tuple[float, float]], inside, cross) -> list[tuple[float, float]]:
    """One Sutherland-Hodgman pass against one half-plane."""
    out: list[tuple[float, float]] = []
    for i, cur in enumerate(points):
        prev = points[i - 1]
        if inside(cur):
            if not inside(prev):
                out.append(cross(prev, cur))
            out.append(cur)
        elif inside(prev):
            out.append(cross(prev, cur))
    return out


def polygon_overlap_fraction(box: Box, points: Polygon) -> float:
    """Fraction of the box's area inside the polygon.

    The polygon is clipped by the box's four edges (Sutherland-Hodgman): the clip window is
    convex, so the clipped area is exact for any simple polygon, concave ones included
    (a concave zone may leave zero-width slivers along the box edge; they have no area).
    """
    x0, y0, x1, y1 = box.x, box.y, box.x + box.width, box.y + box.height

    def at_x(x: float):
        return lambda a, b: (x, a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]))

    def at_y(y: float):
        return lambda a, b: (a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]), y)

    poly = [(float(x), float(y)) for x, y in points]
    for inside, cross in ((lambda p: p[0] >= x0, at_x(x0)), (lambda p: p[0] <= x1, at_x(x1)),
                          (lambda p: p[1] >= y0, at_y(y0)), (lambda p: p[1] <= y1, at_y(y1))):
        poly = _clip(poly, inside, cross)
        if not poly:
            return 0.0
    return polygon_area(tuple(poly)) / max(1e-9, box.width * box.height)


def zone_overlap(box: Box, shape: ZoneShape) -> float:
    """Fraction of the box's area inside a rectangle or polygon zone."""
    if len(shape) == 4 and not isinstance(shape[0], tuple):
        zx, zy, zw, zh = shape  # type: ignore[misc]
        return overlap_fraction(box, zx, zy, zw, zh)
    return polygon_overlap_fraction(box, shape)  # type: ignore[arg-type]


@dataclass
class Decider:
    """Per-zone hysteresis; zones map name -> rectangle or polygon in processing-frame pixels."""

    zones: dict[str, ZoneShape]
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
            shape = self.zones[name]
            inside = [b for b in boxes if zone_overlap(b, shape) >= self.min_overlap]
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
