"""Read a YOLO-format folder: what Roboflow, Label Studio, CVAT and Ultralytics export.

`DIR/images/NAME.jpg` + `DIR/labels/NAME.txt` (or `DIR/<split>/images|labels`), one line
per object: `class cx cy w h`, all normalised to the picture (0..1). Class names come from
`classes.yaml` / `data.yaml` (`names: [...]`, a `- name` list or a `0: name` mapping) or
from the caller. A picture without a label file has no object.

Bad label lines (wrong column count, a number that does not parse, out of range, an
unknown class) and label files without a picture are counted per file and reported, the
way unreadable pictures are: one bad line never drops the rest of the folder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.pictures import PICTURE_SUFFIXES

log = logging.getLogger(__name__)

CLASS_FILES = ("classes.yaml", "data.yaml", "classes.txt")
# Rounding in exporters puts edges a hair outside 0..1; beyond this a line is wrong.
EDGE_SLACK = 0.01


class YoloError(ValueError):
    """The folder is not a YOLO export the trainer can use; the message says how to fix it."""


@dataclass(frozen=True)
class YoloObject:
    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """[x, y, w, h] in pixels, clipped to the picture."""
        x0 = max(0.0, (self.cx - self.w / 2) * width)
        y0 = max(0.0, (self.cy - self.h / 2) * height)
        x1 = min(float(width), (self.cx + self.w / 2) * width)
        y1 = min(float(height), (self.cy + self.h / 2) * height)
        return x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)


@dataclass
class LabelProblems:
    """Per-file list of what was wrong, for the report and the CLI."""

    bad_lines: dict[str, list[str]] = field(default_factory=dict)
    labels_without_picture: list[str] = field(default_factory=list)

    def add(self, file: str, problem: str) -> None:
        self.bad_lines.setdefault(file, []).append(problem)

    @property
    def n_bad_lines(self) -> int:
        return sum(len(v) for v in self.bad_lines.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "bad_lines": self.n_bad_lines,
            "files_with_bad_lines": len(self.bad_lines),
            "labels_without_picture": len(self.labels_without_picture),
            "examples": {k: v[:3] for k, v in list(self.bad_lines.items())[:20]},
            "labels_without_picture_examples": self.labels_without_picture[:20],
        }


def parse_class_names(text: str) -> list[str]:
    """`names:` from a YOLO data/classes YAML without needing PyYAML on the workstation.

    Handles the three forms exporters write: `names: [a, b]`, a block list `- a`, and a
    mapping `0: a`. classes.txt (one name per line) is handled by the caller.
    """
    m = re.search(r"^names\s*:\s*\[(.*?)\]", text, re.M | re.S)
    if m:
        return [n.strip().strip("'\"") for n in m.group(1).split(",") if n.strip()]
    m = re.search(r"^names\s*:\s*$", text, re.M)
    if not m:
        raise YoloError("no `names:` entry")
    names: dict[int, str] = {}
    listed: list[str] = []
    for line in text[m.end():].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            break  # next top-level key
        s = line.strip()
        if s.startswith("-"):
            listed.append(s[1:].strip().strip("'\""))
        elif ":" in s:
            k, v = s.split(":", 1)
            names[int(k.strip())] = v.strip().strip("'\"")
    if names:
        return [names[i] for i in sorted(names)]
    return listed


def class_names(root: Path) -> list[str] | None:
    """Names from the first class file found in `root` (or its parent), else None."""
    for d in (root, root.parent):
        for name in CLASS_FILES:
            f = d / name
            if f.is_file():
                text = f.read_text()
                if name.endswith(".txt"):
                    return [ln.strip() for ln in text.splitlines() if ln.strip()]
                try:
                    return parse_class_names(text)
                except (YoloError, ValueError) as exc:
                    raise YoloError(f"{f}: cannot read class names ({exc}); expected `names: [car, bus, ...]`") from None
    return None


def parse_label_file(path: Path, n_classes: int | None, problems: LabelProblems) -> list[YoloObject]:
    """Valid objects of one label file; every bad line is recorded with its line number."""
    out = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        where = f"line {lineno}"
        if len(parts) != 5:
            problems.add(path.name, f"{where}: {len(parts)} columns, expected 5 (class cx cy w h)")
            continue
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError:
            problems.add(path.name, f"{where}: not numbers: {s!r}")
            continue
        if cls < 0 or (n_classes is not None and cls >= n_classes):
            problems.add(path.name, f"{where}: class {cls} not in the class list (0..{(n_classes or 1) - 1})")
            continue
        lo, hi = -EDGE_SLACK, 1 + EDGE_SLACK
        if not (0 < w <= hi and 0 < h <= hi and lo <= cx - w / 2 and cx + w / 2 <= hi
                and lo <= cy - h / 2 and cy + h / 2 <= hi):
            problems.add(path.name, f"{where}: box out of range (cx {cx}, cy {cy}, w {w}, h {h}); values are 0..1")
            continue
        out.append(YoloObject(cls, cx, cy, w, h))
    return out


def find_split_dirs(root: Path) -> list[Path]:
    """`root` itself when it has images/, else each `root/<split>` that has one."""
    if (root / "images").is_dir():
        return [root]
    subs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "images").is_dir()) if root.is_dir() else []
    if not subs:
        raise YoloError(
            f"{root}: not a YOLO folder: expected {root}/images/ and {root}/labels/ "
            "(or train/, valid/ ... each with images/ and labels/), as Roboflow, CVAT, Label Studio "
            "and Ultralytics export"
        )
    return subs


@dataclass
class YoloItem:
    picture: Path
    objects: list[YoloObject]


def scan(root: Path, n_classes: int | None, problems: LabelProblems) -> list[YoloItem]:
    """Every picture with its valid objects; label files without a picture are recorded."""
    items = []
    for split in find_split_dirs(root):
        labels = split / "labels"
        pics = {p.stem: p for p in (split / "images").iterdir() if p.suffix.lower() in PICTURE_SUFFIXES}
        if labels.is_dir():
            for lf in labels.glob("*.txt"):
                if lf.stem not in pics:
                    problems.labels_without_picture.append(str(lf))
        for stem in sorted(pics):
            lf = labels / f"{stem}.txt"
            objs = parse_label_file(lf, n_classes, problems) if lf.is_file() else []
            items.append(YoloItem(pics[stem], objs))
    return items


def boxes_by_role(objs: list[YoloObject], width: int, height: int, car_ids: set[int],
                  ignore_ids: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(cars, ignore regions) as float32 [x, y, w, h] pixel arrays; other classes are background."""
    cars = [o.pixels(width, height) for o in objs if o.cls in car_ids]
    ign = [o.pixels(width, height) for o in objs if o.cls in ignore_ids]
    return (np.asarray(cars, dtype=np.float32).reshape(-1, 4), np.asarray(ign, dtype=np.float32).reshape(-1, 4))


def resolve_classes(names: list[str] | None, car_classes: list[str], ignore_classes: list[str],
                    where: str) -> tuple[set[int], set[int], int | None]:
    """Class names (or numbers) -> ids; an unknown name is an error naming what exists."""
    def ids(wanted: list[str], what: str) -> set[int]:
        out = set()
        for w in wanted:
            if w.isdigit():
                out.add(int(w))
            elif names is not None and w.lower() in [n.lower() for n in names]:
                out.add([n.lower() for n in names].index(w.lower()))
            else:
                known = ", ".join(names) if names else "none (no classes.yaml/data.yaml; give class numbers)"
                raise YoloError(f"{where}: {what} class {w!r} is not a class of this folder; classes: {known}")
        return out

    car = ids(car_classes, "car")
    if not car:
        raise YoloError(f"{where}: no car class given; pass --car-classes (names or numbers)")
    return car, ids(ignore_classes, "ignore"), (len(names) if names is not None else None)
