"""Capture mode: save real camera frames to grow the training set.

Frames are saved every N seconds and/or when the top score is uncertain (the frames a
model learns most from), as PNG with a JSON sidecar; the folder is capped so a Pi's SD
card never fills up.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge.config import CaptureConfig
from edge.events import Box
from edge.files import make_dirs, open_replace

log = logging.getLogger(__name__)


class FrameCapture:
    """Decides which frames to keep and writes them; a no-op unless `capture.enabled`."""

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        # None: the first frame is saved, whatever the monotonic clock's origin happens to be.
        self._last_periodic: float | None = None
        self._last_uncertain: float | None = None
        self._warned_full = False
        self.saved = 0
        self._count = 0
        if cfg.enabled:
            make_dirs(self.dir)  # 0750: frames show who parks here; not for every local user
            self._count = sum(1 for _ in self.dir.glob("*.png"))

    def reason(self, top_score: float, now: float) -> str | None:
        if not self.cfg.enabled:
            return None
        if self.cfg.every_s > 0 and (self._last_periodic is None or now - self._last_periodic >= self.cfg.every_s):
            self._last_periodic = now
            return "periodic"
        if self.cfg.uncertain_low <= top_score <= self.cfg.uncertain_high and (
            self._last_uncertain is None or now - self._last_uncertain >= self.cfg.uncertain_min_interval_s
        ):
            self._last_uncertain = now  # a lingering doubtful car would otherwise save 15 frames/s
            return "uncertain"
        return None

    def maybe_save(self, image: np.ndarray, frame_id: int, wall_time: float, top_score: float,
                   boxes: list[Box], presence: dict[str, bool], now: float | None = None) -> Path | None:
        why = self.reason(top_score, time.monotonic() if now is None else now)
        if why is None:
            return None
        if self._count >= self.cfg.max_files:
            if not self._warned_full:  # once: at 15 fps a warning per frame would flood the journal
                log.warning("capture folder %s holds %d frames (capture.max_files); not saving more",
                            self.dir, self._count)
                self._warned_full = True
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(wall_time))
        path = self.dir / f"frame-{stamp}-{frame_id:08d}.png"
        tmp = path.with_suffix(".png.tmp")
        with open_replace(tmp) as f:
            Image.fromarray(image).save(f, format="PNG")
        os.replace(tmp, path)
        # float(): a numpy scalar score would make json.dumps fail after the PNG is written.
        sidecar = {
            "frame_id": int(frame_id), "time": float(wall_time), "reason": why,
            "top_score": round(float(top_score), 4),
            "boxes": [b.to_dict() for b in boxes], "presence": {k: bool(v) for k, v in presence.items()},
            "label": None,
        }
        side = path.with_suffix(".json")
        side_tmp = path.with_suffix(".json.tmp")
        with open_replace(side_tmp) as f:
            f.write((json.dumps(sidecar) + "\n").encode("utf-8"))
        os.replace(side_tmp, side)
        self._count += 1
        self.saved += 1
        return path
