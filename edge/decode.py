"""Decode score maps into boxes: threshold, map cells back to pixels, non-maximum suppression.

Shared by the daemon and by `training`'s evaluation, so the reported detection figures
are those of the code on the Pi.
"""

from __future__ import annotations

import numpy as np

from edge.events import Box


def cells_to_boxes(
    scores: np.ndarray,
    threshold: float,
    stride: int,
    window_height: int,
    window_width: int,
    scale: float = 1.0,
    pad_rows: int = 0,
    pad_cols: int = 0,
) -> np.ndarray:
    """Candidate boxes [x, y, w, h, score] (frame pixels) for cells scoring >= threshold.

    Cell (r, c) is the window whose top-left corner is at (r*stride, c*stride) in the
    padded, scaled input; undo the pad, then the scale.
    """
    rows, cols = np.nonzero(scores >= threshold)
    if rows.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    out = np.empty((rows.size, 5), dtype=np.float64)
    out[:, 0] = (cols * stride - pad_cols) / scale
    out[:, 1] = (rows * stride - pad_rows) / scale
    out[:, 2] = window_width / scale
    out[:, 3] = window_height / scale
    out[:, 4] = scores[rows, cols]
    return out


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
    if candidates.shape[0] == 0:
        return candidates
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


def decode(
    maps: list[tuple[np.ndarray, float, int, int]],
    threshold: float,
    nms_iou: float,
    stride: int,
    window_height: int,
    window_width: int,
) -> list[Box]:
    """Boxes from one or more score maps (one per pyramid scale): (scores, scale, pad_rows, pad_cols)."""
    parts = [
        cells_to_boxes(s, threshold, stride, window_height, window_width, scale, pr, pc)
        for s, scale, pr, pc in maps
    ]
    kept = nms(np.concatenate(parts) if parts else np.zeros((0, 5)), nms_iou)
    return [Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])) for b in kept]
