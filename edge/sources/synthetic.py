"""Generated frames for exercising the pipeline's mechanics (timing, retries, publishing).

Not for judging the detector: the "cars" are bright rectangles. Every frame is a pure
function of (seed, frame id), so a test can reproduce any frame and knows where the
rectangles are (`boxes()`), without a camera or a data file.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.config import SourceConfig
from edge.frame import Frame
from edge.sources._util import Pacer
from edge.sources.base import FrameSource, SourceExhausted

# Each rectangle: (width, height, top, left at frame 0) as fractions of the frame; speed px/frame.
_RECTS = ((0.30, 0.16, 0.25, 0.10, 4), (0.22, 0.12, 0.62, 0.55, -3))


class SyntheticSource(FrameSource):
    """Moving bright rectangles on a noisy mid-grey background."""

    def __init__(
        self,
        cfg: SourceConfig,
        *,
        stop_event: threading.Event | None = None,
        seed: int = 0,
        max_frames: int | None = None,
        noise: float = 12.0,
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        self.max_frames = max_frames
        self.noise = noise
        self._pacer = Pacer(cfg.fps, stop_event) if cfg.pace else None
        self._next_id = 0

    def boxes(self, frame_id: int) -> list[tuple[int, int, int, int]]:
        """(x, y, width, height) of every rectangle in frame `frame_id`, clipped to the frame."""
        w, h = self.cfg.width, self.cfg.height
        out = []
        for wf, hf, top, left, speed in _RECTS:
            bw, bh = max(2, int(w * wf)), max(2, int(h * hf))
            span = w + bw  # enters on one side, leaves on the other, then wraps
            x = (int(w * left) + bw + frame_id * speed) % span - bw
            x0, x1 = max(0, x), min(w, x + bw)
            y = int(h * top)
            if x1 > x0:
                out.append((x0, y, x1 - x0, min(bh, h - y)))
        return out

    def render(self, frame_id: int) -> np.ndarray:
        """The image of frame `frame_id`; identical for the same (seed, frame_id)."""
        rng = np.random.default_rng([self.seed, frame_id])
        base = rng.normal(96.0, self.noise, size=(self.cfg.height, self.cfg.width))
        for x, y, bw, bh in self.boxes(frame_id):
            base[y : y + bh, x : x + bw] += 120.0
        return np.clip(base, 0, 255).astype(np.uint8)

    def read(self) -> Frame:
        if self.max_frames is not None and self._next_id >= self.max_frames:
            raise SourceExhausted(f"synthetic source: all {self.max_frames} frames delivered")
        if self._pacer is not None:
            self._pacer.wait()
        timestamp_ns = time.monotonic_ns()  # "exposure" happens now; rendering is the readout
        frame_id = self._next_id
        self._next_id += 1
        return Frame(
            image=self.render(frame_id),
            timestamp_ns=timestamp_ns,
            frame_id=frame_id,
        )
