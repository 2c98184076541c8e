"""Motion gating: skip inference on frames that did not change (a parked car is still parked)."""

from __future__ import annotations

import numpy as np


class MotionGate:
    """Compares a 4x-downsampled frame with the last one that was inferred.

    Comparing against the last *inferred* frame (not the previous frame) means slow drift
    accumulates until it is noticed; `max_skip_s` bounds how stale a decision can get.
    """

    def __init__(self, threshold: float, max_skip_s: float) -> None:
        self.threshold = threshold
        self.max_skip_s = max_skip_s
        self._ref: np.ndarray | None = None
        self._ref_time = 0.0
        self.last_change = 0.0

    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        return image[::4, ::4].astype(np.int16)

    def should_infer(self, image: np.ndarray, now: float) -> bool:
        small = self._small(image)
        if self._ref is None or self._ref.shape != small.shape or now - self._ref_time >= self.max_skip_s:
            changed = True
        else:
            self.last_change = float(np.abs(small - self._ref).mean())
            changed = self.last_change >= self.threshold
        if changed:
            self._ref, self._ref_time = small, now
        return changed
