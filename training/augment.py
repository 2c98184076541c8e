"""Augmentation that teaches a window classifier to be a localiser.

A score map only localises if the score peaks where the window sits on the car. So
besides flips and lighting, positives are cut from a canvas with small shifts (within the
UIUC tolerance), and the same car shifted well beyond it is a hard negative. Cars cut by
the frame border are simulated with the same edge replication the Pi uses for padding.
"""

from __future__ import annotations

import numpy as np

# UIUC counts a detection correct within 25% of the window: 10 rows, 25 columns.
SMALL_SHIFT = (3, 6)  # positives: rows, cols
HARD_SHIFT_MIN = (14, 34)  # hard negatives: at least this far off in rows or cols


def lighting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness/contrast/gamma, as cameras and weather do."""
    x = img.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.7, 1.4)
    x = (x - 0.5) * rng.uniform(0.6, 1.4) + 0.5 + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(0.005, 0.03), x.shape)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def canvas_around(win: np.ndarray, negatives: np.ndarray, rng: np.random.Generator, pad: tuple[int, int]) -> np.ndarray:
    """Place `win` at the centre of a larger canvas of random background windows."""
    h, w = win.shape
    pr, pc = pad
    canvas = np.empty((h + 2 * pr, w + 2 * pc), dtype=np.uint8)
    for r0 in range(0, canvas.shape[0], h):
        for c0 in range(0, canvas.shape[1], w):
            tile = negatives[rng.integers(len(negatives))]
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            hh, ww = min(h, canvas.shape[0] - r0), min(w, canvas.shape[1] - c0)
            canvas[r0 : r0 + hh, c0 : c0 + ww] = tile[:hh, :ww]
    canvas[pr : pr + h, pc : pc + w] = win
    return canvas


def cut_border(win: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A car partly outside the frame: replicate an edge column/row band as the Pi's pad does."""
    out = win.copy()
    h, w = win.shape
    side = rng.integers(4)
    if side == 0:
        k = rng.integers(5, 30)
        out[:, :k] = out[:, k : k + 1]
    elif side == 1:
        k = rng.integers(5, 30)
        out[:, w - k :] = out[:, w - k - 1 : w - k]
    elif side == 2:
        k = rng.integers(2, 9)
        out[:k, :] = out[k : k + 1, :]
    else:
        k = rng.integers(2, 9)
        out[h - k :, :] = out[h - k - 1 : h - k, :]
    return out


def _shifted_crop(canvas: np.ndarray, h: int, w: int, pad: tuple[int, int], dr: int, dc: int) -> np.ndarray:
    r, c = pad[0] + dr, pad[1] + dc
    return canvas[r : r + h, c : c + w]


def _hard_shift(rng: np.random.Generator, pad: tuple[int, int]) -> tuple[int, int]:
    while True:
        dr = int(rng.integers(-pad[0], pad[0] + 1))
        dc = int(rng.integers(-pad[1], pad[1] + 1))
        if abs(dr) >= HARD_SHIFT_MIN[0] or abs(dc) >= HARD_SHIFT_MIN[1]:
            return dr, dc


def make_batch_set(
    pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator, copies: int = 2, hard_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented windows (N, H, W, 1) float in [0, 1], labels (N,).

    Per positive window: `copies` shifted/lit/flipped positives (some border-cut) and
    `hard_fraction * copies` strongly shifted copies as negatives. Negatives: flips,
    lighting, and crops straddling background tiles.
    """
    h, w = pos.shape[1:]
    pad = (h // 2, w // 2)
    xs, ys = [], []
    for win in pos:
        for _ in range(copies):
            base = win[:, ::-1] if rng.random() < 0.5 else win
            canvas = canvas_around(base, neg, rng, pad)
            dr = int(rng.integers(-SMALL_SHIFT[0], SMALL_SHIFT[0] + 1))
            dc = int(rng.integers(-SMALL_SHIFT[1], SMALL_SHIFT[1] + 1))
            x = _shifted_crop(canvas, h, w, pad, dr, dc)
            if rng.random() < 0.15:
                x = cut_border(x, rng)
            xs.append(lighting(x, rng))
            ys.append(1)
            if rng.random() < hard_fraction:
                x = _shifted_crop(canvas, h, w, pad, *_hard_shift(rng, pad))
                xs.append(lighting(x, rng))
                ys.append(0)
    n_neg = max(len(neg) * copies, int(sum(ys)) - (len(ys) - int(sum(ys))))
    for _ in range(n_neg):
        win = neg[rng.integers(len(neg))]
        if rng.random() < 0.5:
            win = win[:, ::-1]
        if rng.random() < 0.4:
            canvas = canvas_around(win, neg, rng, pad)
            dr = int(rng.integers(-pad[0], pad[0] + 1))
            dc = int(rng.integers(-pad[1], pad[1] + 1))
            win = _shifted_crop(canvas, h, w, pad, dr, dc)
        xs.append(lighting(win, rng))
        ys.append(0)
    x = np.stack(xs).astype(np.float32)[..., None] / 255.0
    y = np.asarray(ys, dtype=np.float32)
    order = rng.permutation(len(y))
    return x[order], y[order]
