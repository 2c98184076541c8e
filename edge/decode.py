"""Decode the detector's outputs into boxes: heat peaks, box geometry, non-maximum suppression.

Shared by the daemon and by `training`'s evaluation, so the reported detection figures
are those of the code on the Pi.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edge.events import Box
from edge.head import decode_cells


def peak_boxes(
    heat_raw: np.ndarray,
    raw_threshold: float,
    box_raw: np.ndarray,
    box_values: Callable[[np.ndarray], np.ndarray],
    scores: Callable[[np.ndarray], np.ndarray],
    stride: int,
    scale: float = 1.0,
    clip: tuple[int, int] | None = None,
) -> np.ndarray:
    """Candidate boxes [x, y, w, h, score] (frame pixels) at the heat map's local peaks.

    Peaks are found on the raw (int8) heat map against a threshold converted to raw units,
    so only the handful of peak cells are dequantised and calibrated. `box_values`
    dequantises raw box values, `scores` calibrates raw heat values; `scale` undoes a resize
    (model pixels per frame pixel); `clip` = (height, width) clips boxes to the frame.
    """
    rows, cols = np.nonzero(local_peaks(heat_raw, raw_threshold))
    if rows.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    out = np.empty((rows.size, 5), dtype=np.float64)
    out[:, :4] = decode_cells(rows, cols, box_values(box_raw[rows, cols]), stride) / scale
    out[:, 4] = scores(heat_raw[rows, cols])
    if clip is not None:  # cars cut by the border: keep the part inside the frame
        h, w = clip
        x1 = np.clip(out[:, 0], 0, w)
        y1 = np.clip(out[:, 1], 0, h)
        out[:, 2] = np.clip(out[:, 0] + out[:, 2], 0, w) - x1
        out[:, 3] = np.clip(out[:, 1] + out[:, 3], 0, h) - y1
        out[:, 0], out[:, 1] = x1, y1
        out = out[(out[:, 2] > 0) & (out[:, 3] > 0)]
    return out


def local_peaks(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Cells above threshold that are the maximum of their 3x3 neighbourhood.

    A car lights up a blob of neighbouring cells (its Gaussian on the heat map); its peak is
    the centre. Dropping non-peaks first leaves NMS only a handful of candidates (the Python
    loop in `nms` is then cheap on a Pi). Works on raw int8 maps as on floats.

    Ties: on an int8 map two neighbouring cells near a peak often round to the same value
    (exact float ties are rare). Both would be peaks, and the second one's box comes from a
    cell the box head was never trained at: an extra false box scored like the true one. So
    a cell must beat its four neighbours that come before it in raster order and equal or
    beat the four after it; a plateau keeps its first cell.
    """
    h, w = scores.shape
    p = np.full((h + 2, w + 2), -np.inf, dtype=np.float32)
    p[1:-1, 1:-1] = scores
    rowmax = np.maximum(p[:, :-2], p[:, 1:-1])  # separable 3x3 max: rows, then columns
    np.maximum(rowmax, p[:, 2:], out=rowmax)
    neigh = np.maximum(rowmax[:-2], rowmax[1:-1])
    np.maximum(neigh, rowmax[2:], out=neigh)
    # the raster-order predecessors: up-left, up, up-right and left
    before = np.maximum(np.maximum(p[:-2, :-2], p[:-2, 1:-1]), np.maximum(p[:-2, 2:], p[1:-1, :-2]))
    return (scores >= threshold) & (scores >= neigh) & (scores > before)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one [x, y, w, h, ...] box with many."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y2 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def nms(candidates: np.ndarray, iou_threshold: float, max_boxes: int = 100) -> np.ndarray:
    """Greedy NMS: keep the best box, drop those overlapping it by more than iou_threshold."""
    if candidates.shape[0] <= 1:
        return candidates
    if candidates.shape[0] <= 32:
        return _nms_small(candidates, iou_threshold, max_boxes)
    order = np.argsort(-candidates[:, 4], kind="stable")
    cand = candidates[order]
    keep = []
    alive = np.ones(cand.shape[0], dtype=bool)
    for i in range(cand.shape[0]):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_boxes:
            break
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if rest.size:
            alive[rest[iou(cand[i], cand[rest]) > iou_threshold]] = False
    return cand[keep]


def _iou_py(a: list[float], b: list[float]) -> float:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(ix, 0.0) * max(iy, 0.0)
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def _nms_small(candidates: np.ndarray, iou_threshold: float, max_boxes: int) -> np.ndarray:
    """Plain Python for the usual handful of peaks: numpy's per-call cost dominates there."""
    rows = sorted(candidates.tolist(), key=lambda r: -r[4])
    keep: list[list[float]] = []
    for r in rows:
        if all(_iou_py(r, k) <= iou_threshold for k in keep):
            keep.append(r)
            if len(keep) >= max_boxes:
                break
    return np.asarray(keep, dtype=np.float64).reshape(-1, 5)


def decode(candidates: list[np.ndarray], nms_iou: float) -> list[Box]:
    """Boxes from the candidates of one or more invokes (one per pyramid scale), after NMS."""
    kept = nms(np.concatenate(candidates) if candidates else np.zeros((0, 5)), nms_iou)
    return [Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])) for b in kept]
