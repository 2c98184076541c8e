"""Turn a source frame into the exact model inputs: crop, resize, pyramid, border pad.

Padding lets a window start outside the picture, so cars cut by the border can still be
detected (UIUC's truth has such cars, with negative coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ScaledInput:
    scale: float  # model-input pixels per processing-frame pixel
    image: np.ndarray  # uint8; already padded when `padded`, else round(H*scale) x round(W*scale)
    pad_rows: int
    pad_cols: int
    padded: bool = True


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


def pad(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Replicate the border: cheap, and it looks like the scene rather than a black bar."""
    if rows == 0 and cols == 0:
        return image
    return np.pad(image, ((rows, rows), (cols, cols)), mode="edge")


def pyramid(image: np.ndarray, scales: list[float], pad_rows: int, pad_cols: int) -> list[ScaledInput]:
    """One padded model input per scale (scale 1.0 = cars at the training window size)."""
    out = []
    h, w = image.shape
    for s in scales:
        sh, sw = scaled_size(h, w, s)
        out.append(ScaledInput(s, pad(resize(image, sw, sh), pad_rows, pad_cols), pad_rows, pad_cols))
    return out


def scaled(image: np.ndarray, scales: list[float], pad_rows: int, pad_cols: int) -> list[ScaledInput]:
    """Like `pyramid` but leaves the padding to the model, which replicates the border while
    writing its input tensor (one pass instead of three)."""
    h, w = image.shape
    out = []
    for s in scales:
        sh, sw = scaled_size(h, w, s)
        out.append(ScaledInput(s, resize(image, sw, sh), pad_rows, pad_cols, padded=False))
    return out


def model_input_size(height: int, width: int, scale: float, pad_rows: int, pad_cols: int) -> tuple[int, int]:
    sh, sw = scaled_size(height, width, scale)
    return sh + 2 * pad_rows, sw + 2 * pad_cols
