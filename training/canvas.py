"""Training pictures and their CenterNet targets, drawn fresh every epoch.

Two ways to make a square training canvas:

- a scene (YOLO source): a random crop at a random scale, flipped (and turned, for a
  top-down view), so cars appear at every size between ~12 px and the whole canvas;
- a mosaic (crop sources: UIUC windows, GTI rear views, CNRPark spaces): the canvas is
  tiled with no-car crops of the same source and car crops are pasted at random sizes.
  Crops alone would teach "a car fills the picture"; the mosaic puts them in context
  and gives the size head a range. A share of crop draws (CROP_ALONE) is still one crop,
  car or not, at about its own size with the border replicated: what `detect` and the
  presence scores see when a user hands in a crop (the Pi pads a small picture the same way).

Targets follow CenterNet/TTFNet: an elliptical Gaussian per car on the stride-8 heat map
(sigma from the box's width and height, so long cars get long blobs), and at the centre
cell the sub-cell offset and log size. Ignore regions (buses, trucks) and cars too small
to see are zero-weighted, neither positive nor negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edge.head import BOX_CHANNELS, STRIDE, encode_box
from training.sources import LoadedSource, Picture

GAUSS_ALPHA = 0.54  # TTFNet: sigma = alpha * side / 6
MIN_CAR_SIDE = 8.0  # px on the canvas: smaller cars are ignored, not negatives
SCENE_SCALE = (0.55, 1.6)  # relative to the stored size (which is the evaluation size)
MOSAIC_CAR_SIDE = (14, 220)  # longer side of a pasted car crop, px
CROP_ALONE = 0.3  # share of crop-source draws that are one crop alone (half cars, half not)


@dataclass
class Sample:
    image: np.ndarray  # uint8 S x S
    boxes: np.ndarray  # (N, 4) cars
    ignore: np.ndarray  # (M, 4)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.shape == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((max(1, w), max(1, h)), Image.BILINEAR))


def lighting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast, brightness and sensor noise, as cameras and weather do."""
    x = img.astype(np.float32) * (1 / 255.0)
    x = x ** rng.uniform(0.7, 1.4)
    x = (x - 0.5) * rng.uniform(0.6, 1.3) + 0.5 + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.3:
        x += rng.normal(0, rng.uniform(0.005, 0.03), x.shape).astype(np.float32)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _flip_h(img, boxes, ign):
    w = img.shape[1]
    for b in (boxes, ign):
        b[:, 0] = w - b[:, 0] - b[:, 2]
    return img[:, ::-1]


def _rot90(img, boxes, ign):
    """Counter-clockwise quarter turn: (x, y) -> (y, W - x)."""
    w = img.shape[1]
    out = []
    for b in (boxes, ign):
        r = b.copy()
        r[:, 0], r[:, 1], r[:, 2], r[:, 3] = b[:, 1], w - b[:, 0] - b[:, 2], b[:, 3], b[:, 2]
        out.append(r)
    return np.rot90(img), out[0], out[1]


def scene_sample(pic: Picture, size: int, rng: np.random.Generator, top_down: bool) -> Sample:
    """A size x size crop of a rescaled scene; the border outside the picture is replicated."""
    s = rng.uniform(*SCENE_SCALE)
    h, w = pic.image.shape
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    img = _resize(pic.image, sw, sh)
    boxes, ign = pic.boxes * s, pic.ignore * s
    y0 = int(rng.integers(min(0, sh - size), max(0, sh - size) + 1))
    x0 = int(rng.integers(min(0, sw - size), max(0, sw - size) + 1))
    canvas = np.pad(img, ((max(0, -y0), max(0, y0 + size - sh)), (max(0, -x0), max(0, x0 + size - sw))), mode="edge")
    canvas = canvas[max(0, y0):max(0, y0) + size, max(0, x0):max(0, x0) + size]
    boxes, cut = _shift_clip(boxes, x0, y0, size)
    ign = np.concatenate([_shift_clip(ign, x0, y0, size, keep_all=True)[0], cut])
    if rng.random() < 0.5:
        canvas = _flip_h(canvas, boxes, ign)
    if top_down:
        for _ in range(int(rng.integers(4))):
            canvas, boxes, ign = _rot90(canvas, boxes, ign)
    return Sample(np.ascontiguousarray(canvas), boxes, ign)


def _shift_clip(b: np.ndarray, x0: int, y0: int, size: int, keep_all: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(kept, cut) boxes in crop coordinates, clipped. A car less than 40% inside the crop is
    cut: its visible part becomes an ignore region (a car's half is not "no car")."""
    if not len(b):
        empty = np.zeros((0, 4), np.float32)
        return empty, empty
    x1, y1 = b[:, 0] - x0, b[:, 1] - y0
    x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
    cx1, cy1, cx2, cy2 = (np.clip(v, 0, size) for v in (x1, y1, x2, y2))
    area = b[:, 2] * b[:, 3]
    out = np.stack([cx1, cy1, cx2 - cx1, cy2 - cy1], axis=1).astype(np.float32)
    visible = (out[:, 2] > 0) & (out[:, 3] > 0)
    keep = keep_all | ((cx2 - cx1) * (cy2 - cy1) >= 0.4 * np.maximum(area, 1e-6))
    return out[keep & visible], out[~keep & visible]


def mosaic_sample(pos: list[Picture], neg: list[Picture], size: int, rng: np.random.Generator) -> Sample:
    """Background tiled from no-car crops, then 0-4 car crops pasted without overlap."""
    canvas = np.empty((size, size), dtype=np.uint8)
    tile = int(rng.choice([48, 64, 96, 128]))
    for r in range(0, size, tile):
        for c in range(0, size, tile):
            t = neg[int(rng.integers(len(neg)))].image
            th, tw = t.shape
            k = tile / min(th, tw)
            t = _resize(t, max(tile, round(tw * k)), max(tile, round(th * k)))
            if rng.random() < 0.5:
                t = t[:, ::-1]
            canvas[r:r + tile, c:c + tile] = t[: min(tile, size - r), : min(tile, size - c)]
    boxes = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3, 4]))):
        p = pos[int(rng.integers(len(pos)))]
        ph, pw = p.image.shape
        side = math.exp(rng.uniform(math.log(MOSAIC_CAR_SIDE[0]), math.log(min(MOSAIC_CAR_SIDE[1], size))))
        k = side / max(ph, pw)
        cw, ch = max(4, round(pw * k)), max(4, round(ph * k))
        if cw > size or ch > size:
            continue
        for _try in range(6):
            x, y = int(rng.integers(0, size - cw + 1)), int(rng.integers(0, size - ch + 1))
            if all(x + cw <= a or a + aw <= x or y + ch <= b or b + bh <= y for a, b, aw, bh in taken):
                break
        else:
            continue
        crop = _resize(p.image, cw, ch)
        flip = rng.random() < 0.5
        canvas[y:y + ch, x:x + cw] = crop[:, ::-1] if flip else crop
        bx, by, bw, bh = (p.boxes[0] * k).tolist()
        if flip:
            bx = cw - bx - bw
        boxes.append([x + bx, y + by, bw, bh])
        taken.append((x, y, cw, ch))
    return Sample(canvas, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.zeros((0, 4), np.float32))


def targets(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(heat target: [gaussian, weight], box target: [BOX_CHANNELS..., mask]) at stride 8."""
    g = size // STRIDE
    heat = np.zeros((g, g), np.float32)
    weight = np.ones((g, g), np.float32)
    box = np.zeros((g, g, BOX_CHANNELS + 1), np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    centres = (xs + 0.5) * STRIDE, (ys + 0.5) * STRIDE
    for x, y, w, h in sample.ignore:
        inside = (centres[0] >= x) & (centres[0] <= x + w) & (centres[1] >= y) & (centres[1] <= y + h)
        weight[inside] = 0.0
    # Big cars first so a small car's centre cell keeps the small car's size.
    for x, y, w, h in sorted(sample.boxes.tolist(), key=lambda b: -b[2] * b[3]):
        if max(w, h) < MIN_CAR_SIDE:
            inside = (np.abs(centres[0] - (x + w / 2)) <= max(w, STRIDE)) & (np.abs(centres[1] - (y + h / 2)) <= max(h, STRIDE))
            weight[inside] = 0.0
            continue
        cx, cy = x + w / 2, y + h / 2
        c, r = min(g - 1, int(cx // STRIDE)), min(g - 1, int(cy // STRIDE))
        sx = max(GAUSS_ALPHA * w / 6 / STRIDE, 0.35)
        sy = max(GAUSS_ALPHA * h / 6 / STRIDE, 0.35)
        blob = np.exp(-((xs - c) ** 2) / (2 * sx * sx) - ((ys - r) ** 2) / (2 * sy * sy))
        np.maximum(heat, blob, out=heat)
        heat[r, c] = 1.0
        weight[r, c] = 1.0
        box[r, c, :BOX_CHANNELS] = encode_box(cx, cy, w, h, r, c)
        box[r, c, BOX_CHANNELS] = 1.0
    return np.stack([heat, weight], axis=-1), box


class EpochSampler:
    """Draws one epoch's canvases from every source by weight (seeded, fresh each epoch)."""

    def __init__(self, sources: dict[str, LoadedSource], weights: dict[str, float], size: int,
                 per_epoch: int, seed: int) -> None:
        self.size, self.per_epoch = size, per_epoch
        self.rng = np.random.default_rng(seed)
        self.names = list(sources)
        self.p = np.array([weights[n] for n in self.names], dtype=np.float64)
        self.p /= self.p.sum()
        self.pools = {}
        for n, s in sources.items():
            train = s.subset("train")
            if s.exact_boxes:
                self.pools[n] = ("scene", train, s.spec.top_down)
            else:
                self.pools[n] = ("mosaic", ([p for p in train if p.has_car], [p for p in train if not p.has_car]), False)

    def draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.per_epoch
        x = np.empty((n, self.size, self.size, 1), np.float32)
        g = self.size // STRIDE
        yh = np.empty((n, g, g, 2), np.float32)
        yb = np.empty((n, g, g, BOX_CHANNELS + 1), np.float32)
        which = self.rng.choice(len(self.names), size=n, p=self.p)
        for i, k in enumerate(which):
            kind, pool, top_down = self.pools[self.names[k]]
            if kind == "scene":
                s = scene_sample(pool[int(self.rng.integers(len(pool)))], self.size, self.rng, top_down)
            elif self.rng.random() < CROP_ALONE:
                crops = pool[0] if self.rng.random() < 0.5 else pool[1]
                s = scene_sample(crops[int(self.rng.integers(len(crops)))], self.size, self.rng, False)
            else:
                s = mosaic_sample(pool[0], pool[1], self.size, self.rng)
            x[i, ..., 0] = lighting(s.image, self.rng) * (1 / 255.0)
            yh[i], yb[i] = targets(s, self.size)
        return x, yh, yb
