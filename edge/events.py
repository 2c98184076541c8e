"""What the daemon tells the world: presence events and per-zone state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ARRIVED = "car_arrived"
LEFT = "car_left"


@dataclass(frozen=True)
class Box:
    """A detection in frame pixels; x, y may be negative for cars cut by the border."""

    x: float
    y: float
    width: float
    height: float
    score: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Event:
    """A presence change in one zone ("frame" is the whole picture)."""

    kind: str  # ARRIVED or LEFT
    zone: str
    time: float  # epoch seconds of the frame that decided it
    frame_id: int
    score: float
    box: Box | None
    dwell_s: float | None  # for LEFT: how long the car was there

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "zone": self.zone,
            "time": round(self.time, 6),
            "frame_id": self.frame_id,
            "score": round(float(self.score), 4),
            "box": self.box.to_dict() if self.box else None,
            "dwell_s": None if self.dwell_s is None else round(self.dwell_s, 3),
        }
