"""What the detector's two output tensors mean: the one owner of the box encoding.

The trainer encodes targets with `encode_box`; the Pi decodes with `decode_cells`; both
import it from here, so they cannot drift apart.

- heat: (H/8, W/8, 1) logit that a car's centre lies in the cell (CenterNet);
- box: (H/8, W/8, 4) at that cell: the centre's offset from the cell centre, in cells
  (dx, dy in -0.5..0.5), and log(width / stride), log(height / stride). Log sizes keep a
  16 px car and a 300 px car within a few units, so one int8 scale resolves both (about
  2% of the size per step).
"""

from __future__ import annotations

import numpy as np

STRIDE = 8
BOX_CHANNELS = 4
HEAT_CHANNELS = 1


def encode_box(cx: float, cy: float, w: float, h: float, row: int, col: int, stride: int = STRIDE) -> list[float]:
    return [cx / stride - (col + 0.5), cy / stride - (row + 0.5), float(np.log(w / stride)), float(np.log(h / stride))]


def decode_cells(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """[x, y, w, h] boxes in model-input pixels from the (N, 4) box values of cells (rows, cols)."""
    v = values.astype(np.float64)
    w = np.exp(np.clip(v[:, 2], -4, 8)) * stride
    h = np.exp(np.clip(v[:, 3], -4, 8)) * stride
    cx = (cols + 0.5 + v[:, 0]) * stride
    cy = (rows + 0.5 + v[:, 1]) * stride
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
