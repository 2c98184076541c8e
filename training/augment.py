"""Augmentation that teaches a window classifier to be a localiser.

A score map only localises if the score peaks where the window sits on the car. So
besides flips and lighting, positives are cut from a canvas with small shifts (within the
UIUC tolerance), and the same car shifted well beyond it is a hard negative. Cars cut by
the frame border are simulated with the same edge replication the Pi uses for padding.
"""

from __future__ import annotations

import numpy as np

# UIUC counts a detection correct within 25% of the window: 10 rows, 25 columns.
SMALL_SHIFT = (4, 6)  # positives: rows, cols (a stride-8 grid is at most 4 off the car)
HARD_SHIFT_MIN = (14, 34)  # hard negatives: at least this far off in rows or cols
# How far hard negatives may be shifted. A window half on a car and half on the road
# beside it (50-75 columns off) was the commonest false positive when this stopped at
# half a window, so it reaches a whole window sideways.
HARD_SHIFT_MAX = (30, 100)
SCALE_JITTER = (0.9, 1.1)  # positives: car size varies a little even in single-scale scenes
PAIR_FRACTION = 0.25  # positives parked beside another car: the window between them is a negative
NEG_ZOOM = (1.2, 2.0)  # negatives: background texture at scales the windows do not show


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


def add_neighbour(canvas: np.ndarray, car: np.ndarray, pad: tuple[int, int], rng: np.random.Generator) -> int:
    """Paste a second car beside the centre one (a row of parked cars); returns its column offset.

    Half of one car and half of the next looks like a car to a window classifier that never
    saw the gap between two: the windows in between are taught as negatives.
    """
    h, w = car.shape
    gap = int(rng.integers(0, 16))
    dc = (w + gap) * (1 if rng.random() < 0.5 else -1)
    r = pad[0] + int(rng.integers(-3, 4))
    c = pad[1] + dc
    c0, c1 = max(0, c), min(canvas.shape[1], c + w)
    canvas[r : r + h, c0:c1] = car[:, c0 - c : c1 - c]
    return dc


def _between_shift(dc_neighbour: int, rng: np.random.Generator) -> tuple[int, int]:
    """A window straddling the centre car and its neighbour, too far from both to be a hit."""
    lo, hi = HARD_SHIFT_MIN[1], abs(dc_neighbour) - HARD_SHIFT_MIN[1]
    dc = int(rng.integers(lo, max(lo, hi) + 1))
    return int(rng.integers(-6, 7)), dc if dc_neighbour > 0 else -dc


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


def zoom_crop(img: np.ndarray, factor: float, h: int, w: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Resize `img` by `factor` and cut an h x w window: centred, or at random when rng is given."""
    from PIL import Image

    H, W = img.shape
    nh, nw = max(h, round(H * factor)), max(w, round(W * factor))
    big = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    if rng is None:
        r, c = (nh - h) // 2, (nw - w) // 2
    else:
        r, c = int(rng.integers(nh - h + 1)), int(rng.integers(nw - w + 1))
    return big[r : r + h, c : c + w]


def _shifted_crop(canvas: np.ndarray, h: int, w: int, pad: tuple[int, int], dr: int, dc: int) -> np.ndarray:
    r, c = pad[0] + dr, pad[1] + dc
    return canvas[r : r + h, c : c + w]


def _hard_shift(rng: np.random.Generator, pad: tuple[int, int]) -> tuple[int, int]:
    while True:
        dr = int(rng.integers(-HARD_SHIFT_MAX[0], HARD_SHIFT_MAX[0] + 1))
        dc = int(rng.integers(-HARD_SHIFT_MAX[1], HARD_SHIFT_MAX[1] + 1))
        if abs(dr) >= HARD_SHIFT_MIN[0] or abs(dc) >= HARD_SHIFT_MIN[1]:
            return dr, dc


def make_batch_set(
    pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator, copies: int = 2, hard_fraction: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented windows (N, H, W, 1) float in [0, 1], labels (N,).

    Per positive window: `copies` shifted/scaled/lit/flipped positives (some border-cut) and
    `hard_fraction * copies` copies shifted off the car as negatives. Negatives: flips,
    lighting, crops straddling background tiles, and zoomed-in background.
    """
    h, w = pos.shape[1:]
    pad = (max(h, HARD_SHIFT_MAX[0]), max(w, HARD_SHIFT_MAX[1]))
    xs, ys = [], []
    for win in pos:
        for _ in range(copies):
            base = win[:, ::-1] if rng.random() < 0.5 else win
            canvas = canvas_around(base, neg, rng, pad)
            beside = rng.random() < PAIR_FRACTION
            if beside:
                dc_neighbour = add_neighbour(canvas, pos[rng.integers(len(pos))], pad, rng)
            dr = int(rng.integers(-SMALL_SHIFT[0], SMALL_SHIFT[0] + 1))
            dc = int(rng.integers(-SMALL_SHIFT[1], SMALL_SHIFT[1] + 1))
            if rng.random() < 0.5:
                x = zoom_crop(_shifted_crop(canvas, h + 16, w + 40, pad, dr - 8, dc - 20), rng.uniform(*SCALE_JITTER), h, w)
            else:
                x = _shifted_crop(canvas, h, w, pad, dr, dc)
            if rng.random() < 0.15:
                x = cut_border(x, rng)
            xs.append(lighting(x, rng))
            ys.append(1)
            if beside:
                xs.append(lighting(_shifted_crop(canvas, h, w, pad, *_between_shift(dc_neighbour, rng)), rng))
                ys.append(0)
            elif rng.random() < hard_fraction:
                x = _shifted_crop(canvas, h, w, pad, *_hard_shift(rng, pad))
                xs.append(lighting(x, rng))
                ys.append(0)
    n_neg = max(len(neg) * copies, int(sum(ys)) - (len(ys) - int(sum(ys))))
    for _ in range(n_neg):
        win = neg[rng.integers(len(neg))]
        if rng.random() < 0.5:
            win = win[:, ::-1]
        u = rng.random()
        if u < 0.4:
            canvas = canvas_around(win, neg, rng, (h // 2, w // 2))
            dr = int(rng.integers(-(h // 2), h // 2 + 1))
            dc = int(rng.integers(-(w // 2), w // 2 + 1))
            win = _shifted_crop(canvas, h, w, (h // 2, w // 2), dr, dc)
        elif u < 0.7:
            win = zoom_crop(win, rng.uniform(*NEG_ZOOM), h, w, rng)
        xs.append(lighting(win, rng))
        ys.append(0)
    x = np.stack(xs).astype(np.float32)[..., None] / 255.0
    y = np.asarray(ys, dtype=np.float32)
    order = rng.permutation(len(y))
    return x[order], y[order]
