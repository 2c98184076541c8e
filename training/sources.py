"""The training mix: labelled sources named in a small TOML spec, loaded once and cached.

Four kinds of source, all turned into greyscale pictures with car boxes:

- `uiuc`: UIUC CarData 100x40 `pos-*`/`neg-*` windows (a positive's car fills the window).
- `yolo`: a YOLO-format folder (pictures + box labels), see `training.yolo`.
- `folder`: pictures sorted into class folders (`busy=car,free=no_car`), each picture a
  crop whose car roughly fills it (`car_box` says how much); class folders may hold
  sub-folders (GTI's `vehicles/GTI_Far/...`).

Crops (uiuc, folder) have approximate boxes: they train the detector through mosaics and
are scored by presence (is there a car in the crop), never by box AP. Every source is split
for validation the way its README says, never at random: `order` (the last files of each
class folder in name order: consecutive crops of a track are near-duplicates), `time`
(`YYYYMMDD_HHMM_*` names: the last capture times), `source_photo` (Roboflow's augmented
copies share the part before `_jpg.rf.`).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tomllib
from PIL import Image, UnidentifiedImageError

from edge.config import SCALES_CHECK
from edge.pictures import PICTURE_SUFFIXES
from edge.preprocess import resize, scaled_size
from training import yolo
from training.datasets import DatasetError, natural_key

log = logging.getLogger(__name__)

DEFAULT_SPEC = Path(__file__).with_name("mix.toml")
KINDS = ("uiuc", "yolo", "folder")
SPLITS = ("order", "time", "source_photo")
CACHE_VERSION = 4
# A crop that is smaller than this is scaled up when stored: mosaics rescale them anyway.
MIN_CROP_SIDE = 40


@dataclass(frozen=True)
class SourceSpec:
    """One `[[source]]` of a mix spec; ranges and meanings sit next to each field."""

    name: str
    kind: str  # one of KINDS
    path: str  # relative to the spec's data root, or absolute
    weight: float = 1.0  # share of each epoch's training pictures (normalised over sources), > 0
    split: str = "order"  # one of SPLITS
    val_fraction: float = 0.15  # 0 < f < 0.9
    # split = "order": this many pictures just before the held-out ones are left out of both
    # sides (a video's frames seconds apart show the same cars), >= 0
    val_gap: int = 0
    max_side: int = 320  # pictures are stored (and evaluated) with their longer side at most this
    # yolo: then resized by this factor, as the daemon's `processing.scales = [k]` feeds the
    # model a camera whose cars are too small at its processing size (range: SCALES_CHECK)
    scale: float = 1.0
    car_classes: tuple[str, ...] = ("car",)  # yolo: names or numbers of car classes
    ignore_classes: tuple[str, ...] = ()  # yolo: neither car nor background (bus, truck ...)
    classes: tuple[tuple[str, str], ...] = ()  # folder: (sub-folder, "car" | "no_car") pairs
    car_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # crops: car's x0,y0,x1,y1 fraction
    top_down: bool = False  # seen from above: vertical flips and 90-degree turns are valid augmentations
    max_corrupt_fraction: float = 0.02

    def check(self, where: str) -> None:
        def bad(key: str, why: str) -> DatasetError:
            return DatasetError(f"{where}: source {self.name!r}: {key} {why}")

        if self.kind not in KINDS:
            raise bad("kind", f"= {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.split not in SPLITS:
            raise bad("split", f"= {self.split!r}; use one of {', '.join(SPLITS)}")
        if not self.weight > 0:
            raise bad("weight", f"= {self.weight}; must be > 0")
        if not 0 < self.val_fraction < 0.9:
            raise bad("val_fraction", f"= {self.val_fraction}; must be in (0, 0.9)")
        if self.val_gap < 0 or (self.val_gap and self.split != "order"):
            raise bad("val_gap", f"= {self.val_gap}; must be >= 0, and 0 unless split = 'order'")
        if not 32 <= self.max_side <= 2048:
            raise bad("max_side", f"= {self.max_side}; must be 32..2048")
        if (problem := SCALES_CHECK.each(self.scale)) is not None:
            raise bad("scale", f"{problem} (the daemon's processing.scales rule)")
        if self.scale != 1.0 and self.kind != "yolo":
            raise bad("scale", f"= {self.scale}; must be 1 unless kind = 'yolo'")
        x0, y0, x1, y1 = self.car_box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise bad("car_box", f"= {list(self.car_box)}; fractions x0 < x1, y0 < y1 within 0..1")
        if self.kind == "folder" and not self.classes:
            raise bad("classes", "is required for a folder source, e.g. {busy = \"car\", free = \"no_car\"}")
        for folder, cls in self.classes:
            if cls not in ("car", "no_car"):
                raise bad("classes", f"maps {folder!r} to {cls!r}; use 'car' or 'no_car'")


@dataclass(frozen=True)
class MixSpec:
    sources: tuple[SourceSpec, ...]
    data_root: Path

    @property
    def weights(self) -> dict[str, float]:
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}

    def path_of(self, s: SourceSpec) -> Path:
        p = Path(s.path)
        return p if p.is_absolute() else self.data_root / p


def load_spec(path: str | Path, data_root: str | Path) -> MixSpec:
    """Parse and check a mix spec; errors name the file, the source and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DatasetError(f"cannot read dataset spec {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DatasetError(f"{path}: not valid TOML ({exc})") from None
    entries = raw.get("source")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path}: no [[source]] tables; each source needs name, kind and path")
    known = set(SourceSpec.__dataclass_fields__)
    sources = []
    for i, e in enumerate(entries):
        where = f"{path}: [[source]] #{i + 1}"
        unknown = sorted(set(e) - known)
        if unknown:
            raise DatasetError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        for key in ("name", "kind", "path"):
            if key not in e:
                raise DatasetError(f"{where}: missing key {key!r}")
        e = dict(e)
        for key in ("car_classes", "ignore_classes", "car_box"):
            if key in e:
                e[key] = tuple(e[key])
        if "classes" in e:
            e["classes"] = tuple((str(k), str(v)) for k, v in e["classes"].items())
        spec = SourceSpec(**e)
        spec.check(str(path))
        sources.append(spec)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: source names must be unique, got {names}")
    return MixSpec(tuple(sources), Path(data_root))


@dataclass
class Picture:
    """One greyscale picture with its cars; `exact` = boxes drawn around cars (not crop extents)."""

    name: str
    image: np.ndarray  # uint8 HxW
    boxes: np.ndarray  # (N, 4) float32 x, y, w, h pixels
    ignore: np.ndarray  # (M, 4) regions neither car nor background
    scale: float = 1.0  # stored pixels per original pixel

    @property
    def has_car(self) -> bool:
        return len(self.boxes) > 0


@dataclass
class LoadedSource:
    spec: SourceSpec
    pictures: list[Picture]
    train: list[int]
    val: list[int]
    exact_boxes: bool  # yolo: real boxes (AP); crops: approximate (presence only)
    report: dict[str, object] = field(default_factory=dict)

    def subset(self, which: str) -> list[Picture]:
        return [self.pictures[i] for i in (self.train if which == "train" else self.val)]


def _read(path: Path, max_side: int, min_side: int = 0) -> tuple[np.ndarray, float]:
    """Greyscale uint8, longer side scaled down to max_side (and short crops up to min_side)."""
    with Image.open(path) as im:
        w, h = im.size  # the original size: labels are relative to it
        scale = min(1.0, max_side / max(w, h))
        if min_side and min(w, h) * scale < min_side:
            scale = min_side / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im.draft("L", size)  # JPEG: decode at a reduced size when possible (>= size)
        g = im.convert("L")
        if g.size != size:
            g = g.resize(size, Image.BILINEAR)
        return np.asarray(g, dtype=np.uint8).copy(), size[0] / w


def _original_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _crop_box(img: np.ndarray, car_box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = img.shape
    x0, y0, x1, y1 = car_box
    return np.array([[x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h]], dtype=np.float32)


NO_BOXES = np.zeros((0, 4), dtype=np.float32)


def _load_crops(spec: SourceSpec, files: list[tuple[Path, bool]], report: dict) -> list[Picture]:
    pics, corrupt = [], []
    for p, is_car in files:
        try:
            img, _ = _read(p, spec.max_side, MIN_CROP_SIDE)
        except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:
            log.warning("%s: skipping unreadable picture %s: %s", spec.name, p, exc)
            corrupt.append(str(p))
            continue
        pics.append(Picture(str(p), img, _crop_box(img, spec.car_box) if is_car else NO_BOXES, NO_BOXES))
    _check_corrupt(spec, len(files), corrupt, report)
    return pics


def _check_corrupt(spec: SourceSpec, total: int, corrupt: list[str], report: dict) -> None:
    report["unreadable"] = len(corrupt)
    report["unreadable_files"] = corrupt[:50]
    if total and len(corrupt) / total > spec.max_corrupt_fraction:
        raise DatasetError(
            f"{spec.name}: {len(corrupt)} of {total} pictures are unreadable (more than "
            f"{spec.max_corrupt_fraction:.0%}), e.g. {corrupt[0]}. Re-run `make data` or remove the broken files."
        )


def _uiuc_files(root: Path) -> list[tuple[Path, bool]]:
    train = root / "TrainImages"
    if not train.is_dir():
        raise DatasetError(f"{train} not found: expected UIUC CarData (TrainImages/). Run `make data`.")
    files = [(p, True) for p in sorted(train.glob("pos-*.pgm"), key=lambda p: natural_key(p.name))]
    files += [(p, False) for p in sorted(train.glob("neg-*.pgm"), key=lambda p: natural_key(p.name))]
    if not files:
        raise DatasetError(f"{train} holds no pos-*.pgm / neg-*.pgm windows; is this UIUC CarData?")
    return files


def _folder_files(spec: SourceSpec, root: Path) -> list[tuple[Path, bool]]:
    files = []
    for folder, cls in spec.classes:
        d = root / folder
        if not d.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DatasetError(f"{spec.name}: class folder {d} (for {cls}) is missing; found {present}")
        pics = sorted((p for p in d.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES),
                      key=lambda p: natural_key(str(p.relative_to(d))))
        if not pics:
            raise DatasetError(f"{spec.name}: class folder {d} holds no pictures")
        files += [(p, cls == "car") for p in pics]
    return files


def _processing_scale(img: np.ndarray, scale: float, k: float) -> tuple[np.ndarray, float]:
    """The picture as the daemon's `processing.scales = [k]` hands it to the model: the same
    size rounding and the same bilinear resize (edge.preprocess), so a site's figures are the
    daemon's."""
    if k == 1.0:
        return img, scale
    h, w = scaled_size(*img.shape, k)
    return resize(img, w, h), scale * w / img.shape[1]


def _load_yolo(spec: SourceSpec, root: Path, report: dict) -> list[Picture]:
    names = yolo.class_names(root)
    car_ids, ignore_ids, n_classes = yolo.resolve_classes(names, list(spec.car_classes),
                                                           list(spec.ignore_classes), spec.name)
    problems = yolo.LabelProblems()
    items = yolo.scan(root, n_classes, problems)
    pics, corrupt = [], []
    for it in items:
        try:
            w0, h0 = _original_size(it.picture)
            img, scale = _read(it.picture, spec.max_side)  # scale: stored pixels per original pixel
            img, scale = _processing_scale(img, scale, spec.scale)
        except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:
            log.warning("%s: skipping unreadable picture %s: %s", spec.name, it.picture, exc)
            corrupt.append(str(it.picture))
            continue
        cars, ign = yolo.boxes_by_role(it.objects, w0, h0, car_ids, ignore_ids)
        pics.append(Picture(str(it.picture), img, cars * scale, ign * scale, scale))
    _check_corrupt(spec, len(items), corrupt, report)
    report["labels"] = problems.to_dict()
    report["classes"] = names
    if problems.n_bad_lines or problems.labels_without_picture:
        log.warning("%s: %d bad label lines in %d files, %d label files without a picture (see report)",
                    spec.name, problems.n_bad_lines, len(problems.bad_lines), len(problems.labels_without_picture))
    if not pics:
        raise DatasetError(f"{spec.name}: {root} has no readable pictures")
    return pics


def split(spec: SourceSpec, pictures: list[Picture]) -> tuple[list[int], list[int]]:
    """Indices (train, val) by the source's rule; see the module docstring for why."""
    f = spec.val_fraction
    gap: list[int] = []  # split = "order" with val_gap: on neither side
    if spec.split == "source_photo":
        src = [re.split(r"_(jpe?g|png)\.rf\.", Path(p.name).name)[0] for p in pictures]
        uniq = sorted(set(src))
        val_src = set(uniq[len(uniq) - max(1, round(len(uniq) * f)):])
        val = [i for i, s in enumerate(src) if s in val_src]
    elif spec.split == "time":
        stamps = [_timestamp(p.name) for p in pictures]
        uniq = sorted(set(stamps))
        val_t = set(uniq[len(uniq) - max(1, round(len(uniq) * f)):])
        val = [i for i, t in enumerate(stamps) if t in val_t]
    else:  # order: per (class, folder) group, the last files in name order
        groups: dict[tuple[bool | None, str], list[int]] = {}
        for i, p in enumerate(pictures):
            cls = p.has_car if spec.kind != "yolo" else None  # crops: car and no-car folders apart
            groups.setdefault((cls, str(Path(p.name).parent)), []).append(i)
        val = []
        for idx in groups.values():
            idx = sorted(idx, key=lambda i: natural_key(Path(pictures[i].name).name))
            first = len(idx) - max(1, round(len(idx) * f))
            val += idx[first:]
            gap += idx[max(0, first - spec.val_gap):first]
    unused = set(val) | set(gap)
    return [i for i in range(len(pictures)) if i not in unused], sorted(set(val))


def _timestamp(name: str) -> str:
    m = re.match(r"^(\d{8})_(\d{4})", Path(name).name)
    if not m:
        raise DatasetError(f"split = 'time' needs YYYYMMDD_HHMM_* file names; got {Path(name).name!r}")
    return m.group(1) + m.group(2)


def _cache_key(spec: SourceSpec, root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256(repr((CACHE_VERSION, asdict(spec), str(root.resolve()))).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def load_source(spec: SourceSpec, root: Path, cache_dir: Path | None, require_split: bool = True) -> LoadedSource:
    """Decode once, cache the greyscale pictures; later runs load the cache in a second.

    `require_split`: training needs cars on both sides of the split; evaluation does not.
    """
    if not root.exists():
        raise DatasetError(f"{spec.name}: {root} does not exist. Run `make data` (it links ../shared/datasets).")
    cache = cache_dir / f"{spec.name}-{_cache_key(spec, root)}.pkl" if cache_dir else None
    if cache and cache.is_file():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    report: dict[str, object] = {"path": str(root), "kind": spec.kind}
    if spec.kind == "yolo":
        pics = _load_yolo(spec, root, report)
    else:
        files = _uiuc_files(root) if spec.kind == "uiuc" else _folder_files(spec, root)
        pics = _load_crops(spec, files, report)
    train, val = split(spec, pics)
    report.update(pictures=len(pics), with_car=sum(p.has_car for p in pics),
                  cars=int(sum(len(p.boxes) for p in pics)), train=len(train), val=len(val),
                  split=f"{spec.split}, last {spec.val_fraction:.0%}"
                  + (f", the {spec.val_gap} before them unused" if spec.val_gap else ""))
    if require_split and (not any(pics[i].has_car for i in train) or not any(pics[i].has_car for i in val)):
        raise DatasetError(f"{spec.name}: the training or the validation split has no car; "
                           "a detector needs cars on both sides")
    loaded = LoadedSource(spec, pics, train, val, exact_boxes=spec.kind == "yolo", report=report)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(loaded, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
    return loaded


def load_mix(spec: MixSpec, cache_dir: Path | None) -> dict[str, LoadedSource]:
    return {s.name: load_source(s, spec.path_of(s), cache_dir) for s in spec.sources}
