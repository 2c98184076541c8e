"""Turn a source frame into the exact model inputs: crop, resize, optional pyramid.

Padding up to the model's input multiple happens while the model writes its input tensor
(`edge.model`), so a picture of any size, even smaller than the receptive field, runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ScaledInput:
    scale: float  # model-input pixels per processing-frame pixel
    image: np.ndarray  # uint8, round(H*scale) x round(W*scale)


def crop(image: np.ndarray, box: list[int] | tuple[int, ...]) -> np.ndarray:
    """Region [x, y, w, h] of the frame; empty box = whole frame."""
    if not box:
        return image
    x, y, w, h = box
    return image[y : y + h, x : x + w]


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a uint8 greyscale image; a no-op when the size already matches."""
    if image.shape == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def scaled(image: np.ndarray, scales: list[float]) -> list[ScaledInput]:
    """One model input per scale (1.0 = the processing frame as is, no copy)."""
    h, w = image.shape
    out = []
    for s in scales:
        sh, sw = scaled_size(h, w, s)
        out.append(ScaledInput(s, resize(image, sw, sh)))
    return out
