"""Box proposals for a fixed camera's frames: moving cars by background subtraction, parked
ones by the current model. A user then only corrects them (page or label files).

On a fixed camera nearly every pixel of the background is the same frame after frame: the
per-pixel median of frames spread over time is the empty scene (a car passing a pixel for a
fraction of the frames does not move the median). What differs from it by more than
`diff_threshold` is foreground; blobs of it, after closing small gaps, are moving objects.
The model's boxes cover what stands still (a parked car is part of the median). Where both
see the same car, the model's box wins (motion blobs carry the car's shadow along).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.decode import iou
from edge.events import Box


@dataclass(frozen=True)
class Proposal:
    x: float
    y: float
    width: float
    height: float
    score: float  # model score, or 0.0 for a motion-only box
    source: str  # "model", "motion" or "both"

    def to_dict(self) -> dict:
        return {"x": round(self.x, 1), "y": round(self.y, 1), "width": round(self.width, 1),
                "height": round(self.height, 1), "score": round(self.score, 4), "source": self.source}


def background(frames: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of (N, H, W) uint8 frames spread over time: the empty scene."""
    return np.median(np.asarray(frames), axis=0).astype(np.uint8)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(x0, y0, x1, y1, pixels) of each 8-connected blob; a plain stack flood fill, fine on the
    downsampled masks used here (a few thousand pixels set)."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    out = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack = [(y0, x0)]
        seen[y0, x0] = True
        ys, xs = [], []
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        out.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1, len(xs)))
    return out


def moving_boxes(frame: np.ndarray, bg: np.ndarray, diff_threshold: int = 30, min_side: int = 8,
                 close: int = 1, step: int = 2) -> list[tuple[float, float, float, float]]:
    """Boxes [x, y, w, h] of blobs that differ from the background (computed every `step` px)."""
    diff = np.abs(frame[::step, ::step].astype(np.int16) - bg[::step, ::step].astype(np.int16)) > diff_threshold
    if close:
        diff = _dilate(diff, close)
    boxes = []
    for x0, y0, x1, y1, _ in _components(diff):
        # undo the closing's growth, back to frame pixels
        x0, y0, x1, y1 = (x0 + close) * step, (y0 + close) * step, (x1 - close) * step, (y1 - close) * step
        if x1 - x0 >= min_side and y1 - y0 >= min_side:
            boxes.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    return boxes


def propose(frame: np.ndarray, bg: np.ndarray | None, model_boxes: list[Box], match_iou: float = 0.3,
            **motion) -> list[Proposal]:
    """Model boxes (marked "both" when a moving blob agrees) plus moving blobs no box explains."""
    out = []
    moving = np.asarray(moving_boxes(frame, bg, **motion), dtype=np.float64).reshape(-1, 4) if bg is not None \
        else np.zeros((0, 4))
    used = np.zeros(len(moving), bool)
    for b in model_boxes:
        src = "model"
        if len(moving):
            ov = iou(np.array([b.x, b.y, b.width, b.height]), moving)
            k = int(np.argmax(ov))
            if ov[k] >= match_iou:
                used[k] = True
                src = "both"
        out.append(Proposal(b.x, b.y, b.width, b.height, b.score, src))
    for m in moving[~used]:
        out.append(Proposal(*m.tolist(), 0.0, "motion"))
    return out


def disagreement(proposals: list[Proposal]) -> int:
    """How many boxes only one of model and motion saw: frames worth a human look."""
    return sum(p.source != "both" for p in proposals)
