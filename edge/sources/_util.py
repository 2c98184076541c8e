"""Small pieces every file-backed source needs: pacing, resizing, interruptible waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image


def wait_or_stop(delay_s: float, stop_event: threading.Event | None) -> bool:
    """Sleep `delay_s`, waking early when `stop_event` is set, so shutdown never waits on a nap.

    Returns True when woken by the stop event.
    """
    if delay_s <= 0:
        return bool(stop_event is not None and stop_event.is_set())
    if stop_event is None:
        time.sleep(delay_s)
        return False
    return stop_event.wait(delay_s)


def fit_grey(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return `image` (uint8 HxW) as a C-contiguous width x height array.

    Resizing happens only when the underlying source disagrees with the configured size
    (odd sizes the camera rounded, pictures of another size), so the common path is a
    no-op apart from the copy that detaches the frame from the decoder's buffer.
    """
    if image.shape == (height, width):
        return np.ascontiguousarray(image)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.uint8).copy()


class Pacer:
    """Releases frames on a fixed-rate schedule, like a camera would.

    After a stall (slow consumer, debugger) it re-synchronises instead of bursting the
    frames it "owes", because a real camera drops frames rather than queueing them.
    """

    def __init__(
        self,
        fps: float,
        stop_event: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"Pacer needs fps > 0, got {fps}")
        self.period_s = 1.0 / fps
        self._stop_event = stop_event
        self._clock = clock
        self._next_due: float | None = None

    def wait(self) -> float:
        """Block until the next frame is due; return the seconds spent waiting."""
        now = self._clock()
        if self._next_due is None:
            self._next_due = now
        delay = self._next_due - now
        if delay > 0:
            wait_or_stop(delay, self._stop_event)
        elif -delay > self.period_s:
            self._next_due = now  # fell behind by more than a frame: drop, don't burst
        self._next_due += self.period_s
        return max(delay, 0.0)
