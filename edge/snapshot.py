"""A JPEG of what the detector saw, with its boxes drawn in: the quickest way to check,
from a browser, that the camera is aimed right and the zones make sense."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from edge.events import Box

BOX_COLOUR = (0, 255, 0)
TEXT_COLOUR = (255, 255, 0)
ZONE_COLOUR = (0, 160, 255)
Zones = dict[str, tuple[float, float, float, float]]  # name -> x, y, width, height in image pixels


def _to_rgb(image: np.ndarray) -> Image.Image:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f"snapshot image must be a uint8 numpy array, got "
            f"{type(image).__name__} dtype={getattr(image, 'dtype', None)}"
        )
    if image.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    if image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(image))
    raise ValueError(f"snapshot image must be HxW greyscale or HxWx3 RGB, got shape {image.shape}")


def annotate(image: np.ndarray, boxes: Sequence[Box], zones: Zones | None = None) -> Image.Image:
    """RGB picture of `image` (uint8, HxW or HxWx3) with each box and its score (green/yellow)
    and the zones (named, blue) drawn on it, zones last so their edges stay visible.
    Coordinates are image pixels; parts outside are clipped."""
    pic = _to_rgb(image)
    draw = ImageDraw.Draw(pic)
    w, h = pic.size
    for box in boxes:
        x0 = max(0.0, box.x)
        y0 = max(0.0, box.y)
        x1 = min(float(w - 1), box.x + box.width - 1)
        y1 = min(float(h - 1), box.y + box.height - 1)
        if x1 < x0 or y1 < y0:
            continue  # entirely outside the picture
        draw.rectangle((x0, y0, x1, y1), outline=BOX_COLOUR, width=2)
        ty = y0 - 11 if y0 >= 11 else y0 + 2
        draw.text((x0 + 2, ty), f"{box.score:.2f}", fill=TEXT_COLOUR)
    for name, (zx, zy, zw, zh) in (zones or {}).items():
        # max(): a zone scaled down onto a small picture can be under a pixel wide, and Pillow
        # refuses a rectangle whose far corner lies before its near one.
        draw.rectangle((zx, zy, max(zx, zx + zw - 1), max(zy, zy + zh - 1)), outline=ZONE_COLOUR, width=1)
        draw.text((zx + 2, zy + 2), name, fill=ZONE_COLOUR)
    return pic


def encode_snapshot_jpeg(
    image: np.ndarray, boxes: Sequence[Box], quality: int = 85, zones: Zones | None = None
) -> bytes:
    """JPEG bytes of `image` with each box and its score (and the zones) drawn on it (see `annotate`)."""
    out = io.BytesIO()
    annotate(image, boxes, zones).save(out, format="JPEG", quality=quality)
    return out.getvalue()
