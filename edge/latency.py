"""Rolling latency statistics per stage: the figures the user asked us to measure."""

from __future__ import annotations

from collections import deque

import numpy as np

# The timed stages of one frame (edge/pipeline.py); /metrics has one histogram series per stage.
STAGES = ("capture_wait", "preprocess", "infer", "decode_decide", "publish", "total")
# Sensor timestamp to decision; not a stage of the loop, but summarised with them in the latency line.
FRAME_AGE = "frame_age"
TRACKED = (*STAGES, FRAME_AGE)


class RollingStats:
    """Last `window` samples per stage; percentiles on demand (cheap: called every N seconds)."""

    def __init__(self, window: int = 2000) -> None:
        self.samples: dict[str, deque[float]] = {s: deque(maxlen=window) for s in TRACKED}
        self.frames = 0
        self.skipped = 0
        self.dropped = 0
        self._t0: float | None = None
        self._n0 = 0

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, dq in self.samples.items():
            if not dq:
                continue
            a = np.fromiter(dq, dtype=np.float64) * 1000.0
            p50, p95, p99 = np.percentile(a, [50, 95, 99])
            out[stage] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
                          "max": round(float(a.max()), 3), "n": int(a.size)}
        return out

    def fps(self, now: float) -> float:
        """Frames per second since the previous call (the log window)."""
        if self._t0 is None:
            self._t0, self._n0 = now, self.frames
            return 0.0
        dt = now - self._t0
        rate = (self.frames - self._n0) / dt if dt > 0 else 0.0
        self._t0, self._n0 = now, self.frames
        return rate
