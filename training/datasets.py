"""UIUC CarData's test side (scenes and both truth formats), and helpers every loader shares.

The training sources themselves are read by `training.sources`; the UIUC `TestImages` are
only ever used for the report, never for training or tuning.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from edge.pictures import PICTURE_SUFFIXES

WINDOW_HEIGHT = 40  # UIUC CarData windows (the training crops and the test rule): one owner
WINDOW_WIDTH = 100


class DatasetError(ValueError):
    """A dataset the trainer refuses; the message says what is wrong and how to fix it."""


def natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_grey(path: Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Read any picture as uint8 greyscale, optionally resized; raises OSError/ValueError if corrupt."""
    with Image.open(path) as im:
        im.load()
        g = im.convert("L")
        if width is not None and height is not None and g.size != (width, height):
            g = g.resize((width, height), Image.BILINEAR)
        return np.asarray(g, dtype=np.uint8).copy()


def parse_truth(path: str | Path, window_width: int = WINDOW_WIDTH) -> dict[int, list[tuple[int, int, int]]]:
    """UIUC trueLocations: `n: (i,j) ...` (single scale) or `n: (i,j,w) ...` (multi-scale).

    Returns image number -> [(row, col, window_width)]; window height is 0.4 * width.
    """
    path = Path(path)
    truth: dict[int, list[tuple[int, int, int]]] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read truth file {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^\s*(\d+)\s*:(.*)$", line)
        if not m:
            raise DatasetError(f"{path}:{lineno}: expected `N: (i,j) ...` or `N: (i,j,w) ...`, got {line!r}")
        items = []
        for tup in re.findall(r"\(([^)]*)\)", m.group(2)):
            parts = [p.strip() for p in tup.split(",")]
            try:
                nums = [int(p) for p in parts]
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: bad location ({tup})") from None
            if len(nums) == 2:
                items.append((nums[0], nums[1], window_width))
            elif len(nums) == 3:
                items.append((nums[0], nums[1], nums[2]))
            else:
                raise DatasetError(f"{path}:{lineno}: a location has 2 or 3 numbers, got ({tup})")
        leftover = re.sub(r"\([^)]*\)", "", m.group(2)).strip()
        if leftover:
            raise DatasetError(f"{path}:{lineno}: unexpected text {leftover!r}")
        truth[int(m.group(1))] = items
    if not truth:
        raise DatasetError(f"truth file {path} is empty")
    return truth


def truth_is_multiscale(path: str | Path) -> bool:
    """True for the `(i,j,w)` format of trueLocations_Scale.txt."""
    return re.search(r"\(\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*\)", Path(path).read_text()) is not None


def load_scenes(scene_dir: str | Path, numbers: list[int] | None = None) -> dict[int, np.ndarray]:
    """UIUC test scenes test-N.pgm (or any test-N.* picture) by number."""
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise DatasetError(f"scene folder {scene_dir} does not exist")
    scenes = {}
    for p in scene_dir.iterdir():
        m = re.match(r"^test-(\d+)\.[A-Za-z]+$", p.name)
        if m and p.suffix.lower() in PICTURE_SUFFIXES and (numbers is None or int(m.group(1)) in numbers):
            scenes[int(m.group(1))] = read_grey(p)
    if not scenes:
        raise DatasetError(f"{scene_dir} holds no test-N.pgm scenes")
    return scenes
