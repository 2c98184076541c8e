"""Labelled greyscale windows from the datasets the trainer accepts.

1. UIUC CarData: 100x40 `pos-*`/`neg-*` windows (+ test scenes, used only for reporting).
2. A folder of labelled pictures `DIR/<car>/*`, `DIR/<no_car>/*` (e.g. CNRPark busy/free,
   or a user's own camera captures), any size or colour, resized to the window.

Validation is split by file-name order (UIUC) or by file-name prefix/time (folders), never
at random: consecutive frames of one camera are near-duplicates and would inflate scores.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

WINDOW_HEIGHT = 40
WINDOW_WIDTH = 100
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".pnm", ".bmp"}


class DatasetError(ValueError):
    """A dataset the trainer refuses; the message says what is wrong and how to fix it."""


@dataclass
class WindowSet:
    """Windows (N, H, W) uint8 with labels 1 = car, 0 = no car, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "WindowSet":
        return WindowSet(self.images[idx], self.labels[idx], [self.names[i] for i in idx])

    def summary(self) -> dict[str, int]:
        return {"n": len(self), "car": int(self.labels.sum()), "no_car": int(len(self) - self.labels.sum())}


@dataclass
class LoadReport:
    """What loading found: the report shows it so silent data loss cannot happen."""

    source: str
    kind: str
    loaded: int = 0
    corrupt: list[str] = field(default_factory=list)
    per_class: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "loaded": self.loaded,
            "corrupt": len(self.corrupt),
            "corrupt_files": self.corrupt[:50],
            "per_class": self.per_class,
        }


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


def _load_files(
    files: list[tuple[Path, int]], report: LoadReport, max_corrupt_fraction: float, width: int, height: int
) -> WindowSet:
    images, labels, names = [], [], []
    for path, label in files:
        try:
            img = read_grey(path, width, height)
        except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:
            log.warning("skipping unreadable picture %s: %s", path, exc)
            report.corrupt.append(str(path))
            continue
        images.append(img)
        labels.append(label)
        names.append(path.name)
    total = len(files)
    if total and len(report.corrupt) / total > max_corrupt_fraction:
        raise DatasetError(
            f"{report.source}: {len(report.corrupt)} of {total} pictures are unreadable "
            f"(more than {max_corrupt_fraction:.0%}); e.g. {report.corrupt[0]}. "
            "Check the copy (re-run `make data`) or remove the broken files."
        )
    report.loaded = len(images)
    if not images:
        raise DatasetError(f"{report.source}: no readable pictures")
    ws = WindowSet(np.stack(images), np.asarray(labels, dtype=np.int64), names)
    _check_classes(ws, report)
    return ws


def _check_classes(ws: WindowSet, report: LoadReport) -> None:
    counts = Counter(ws.labels.tolist())
    report.per_class = {"car": counts.get(1, 0), "no_car": counts.get(0, 0)}
    missing = [n for n, c in report.per_class.items() if c == 0]
    if missing:
        raise DatasetError(
            f"{report.source}: class {missing[0]!r} has no readable pictures; a detector needs "
            "examples with a car and without one"
        )


def load_uiuc_windows(root: str | Path, max_corrupt_fraction: float = 0.02) -> tuple[WindowSet, LoadReport]:
    """UIUC TrainImages: pos-N.pgm (car) and neg-N.pgm (no car), 100x40."""
    root = Path(root)
    train = root / "TrainImages"
    if not train.is_dir():
        raise DatasetError(
            f"{train} not found: expected the UIUC CarData layout (TrainImages/, TestImages/, "
            "trueLocations.txt). Run `make data`, or set DATA_MIRROR to a folder holding CarData/."
        )
    files = [(p, 1) for p in sorted(train.glob("pos-*.pgm"), key=lambda p: natural_key(p.name))]
    files += [(p, 0) for p in sorted(train.glob("neg-*.pgm"), key=lambda p: natural_key(p.name))]
    report = LoadReport(source=str(train), kind="uiuc")
    if not files:
        raise DatasetError(f"{train} holds no pos-*.pgm / neg-*.pgm windows; is this UIUC CarData?")
    return _load_files(files, report, max_corrupt_fraction, WINDOW_WIDTH, WINDOW_HEIGHT), report


def load_picture_folder(
    root: str | Path,
    class_dirs: dict[str, str] | None = None,
    max_corrupt_fraction: float = 0.02,
    width: int = WINDOW_WIDTH,
    height: int = WINDOW_HEIGHT,
) -> tuple[WindowSet, LoadReport]:
    """DIR/<car>/*, DIR/<no_car>/* pictures; class_dirs maps folder name -> 'car'/'no_car'."""
    root = Path(root)
    class_dirs = class_dirs or {"car": "car", "no_car": "no_car"}
    for folder, cls in class_dirs.items():
        if cls not in ("car", "no_car"):
            raise DatasetError(f"class mapping {folder}={cls}: the class must be 'car' or 'no_car'")
    if not root.is_dir():
        raise DatasetError(f"picture folder {root} does not exist")
    report = LoadReport(source=str(root), kind="folder")
    files: list[tuple[Path, int]] = []
    for folder, cls in class_dirs.items():
        d = root / folder
        if not d.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DatasetError(
                f"{root}: class folder {folder!r} (for {cls}) is missing; found folders {present}. "
                "Lay pictures out as DIR/car/* and DIR/no_car/*, or map names with --classes busy=car,free=no_car"
            )
        pics = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        if not pics:
            raise DatasetError(f"{d}: class {cls!r} is empty (no .jpg/.png/.pgm pictures)")
        files += [(p, 1 if cls == "car" else 0) for p in pics]
    return _load_files(files, report, max_corrupt_fraction, width, height), report


def group_key(name: str) -> str:
    """The part of a file name that identifies its camera/space/sequence.

    CNRPark names look like `20150703_0805_2.jpg` (date_time_space); user captures like
    `frame-000123.png`. Grouping by everything before the last number keeps near-duplicate
    neighbours on the same side of the split.
    """
    stem = Path(name).stem
    m = re.match(r"^(.*?)(\d+)$", stem)
    return m.group(1) if m and m.group(1) else stem


def split_by_order(ws: WindowSet, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the last `val_fraction` of files in name (= time) order is held out."""
    train_idx, val_idx = [], []
    for label in (0, 1):
        idx = np.nonzero(ws.labels == label)[0]
        idx = np.asarray(sorted(idx.tolist(), key=lambda i: natural_key(ws.names[i])), dtype=np.int64)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        train_idx.append(idx[:-n_val])
        val_idx.append(idx[-n_val:])
    return np.concatenate(train_idx), np.concatenate(val_idx)


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
        if m and p.suffix.lower() in IMAGE_SUFFIXES and (numbers is None or int(m.group(1)) in numbers):
            scenes[int(m.group(1))] = read_grey(p)
    if not scenes:
        raise DatasetError(f"{scene_dir} holds no test-N.pgm scenes")
    return scenes
