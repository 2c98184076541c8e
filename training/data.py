"""`make data`: put every source of the training mix under data/, and check each one.

A mirror (DATA_MIRROR, default ../shared/datasets) is tried first: UIUC CarData is copied
(small, and its public server is slow and sometimes down; the download is the fallback),
the other sets are linked (hundreds of MB; nothing is duplicated). A source that is
missing everywhere is reported with where to get it; the others are still checked.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from edge.pictures import PICTURE_SUFFIXES
from training import yolo
from training.datasets import DatasetError, parse_truth

log = logging.getLogger(__name__)

PUBLIC_URL = "http://l2r.cs.uiuc.edu/~cogcomp/Data/Car/CarData.tar.gz"
EXPECTED_POS = 550
EXPECTED_NEG = 500
EXPECTED_TEST = 170


def verify_cardata(root: Path) -> dict[str, int]:
    """1,050 training windows, 170 test scenes, a label file that parses; else DatasetError."""
    train, test, truth = root / "TrainImages", root / "TestImages", root / "trueLocations.txt"
    how = ("Delete it and run `make data` again, with DATA_MIRROR=/path/containing/CarData "
           f"or network access to {PUBLIC_URL}.")
    for p in (train, test, truth):
        if not p.exists():
            raise DatasetError(f"{root} is incomplete: {p.name} is missing. {how}")
    n_pos = len(list(train.glob("pos-*.pgm")))
    n_neg = len(list(train.glob("neg-*.pgm")))
    n_test = len(list(test.glob("test-*.pgm")))
    if (n_pos, n_neg) != (EXPECTED_POS, EXPECTED_NEG):
        raise DatasetError(
            f"{train}: found {n_pos} pos + {n_neg} neg windows, expected {EXPECTED_POS} + {EXPECTED_NEG}. {how}"
        )
    if n_test != EXPECTED_TEST:
        raise DatasetError(f"{test}: found {n_test} test scenes, expected {EXPECTED_TEST}. {how}")
    parsed = parse_truth(truth)
    if len(parsed) != EXPECTED_TEST:
        raise DatasetError(f"{truth}: {len(parsed)} lines parsed, expected {EXPECTED_TEST}. {how}")
    return {"train_windows": n_pos + n_neg, "test_scenes": n_test, "cars_in_test": sum(len(v) for v in parsed.values())}


def _from_mirror(mirror: Path, dest: Path) -> bool:
    src = mirror / "CarData"
    if not src.is_dir():
        return False
    log.info("copying %s -> %s", src, dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    tmp.rename(dest)
    return True


def _download(url: str, dest: Path) -> None:
    log.info("downloading %s", url)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp) / "CarData.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except OSError as exc:
            raise DatasetError(
                f"could not download {url}: {exc}. Put CarData/ in a folder and run "
                "`make data DATA_MIRROR=/that/folder`."
            ) from None
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / "CarData"
        if not src.is_dir():
            raise DatasetError(f"{url} did not unpack to CarData/")
        shutil.move(str(src), str(dest))


def fetch_cardata(dest: Path, mirror: Path | None, url: str = PUBLIC_URL) -> dict[str, int]:
    """Idempotent: an existing, complete copy is only re-verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        if not (mirror and _from_mirror(mirror, dest)):
            if mirror:
                log.info("no CarData/ in mirror %s; falling back to the public URL", mirror)
            _download(url, dest)
    return verify_cardata(dest)


# Where each shared set comes from, for the message when neither data/ nor the mirror has it.
ORIGINS = {
    "drone-madison": "https://github.com/CATSLab-UW/Drone-View-Vehicle-Image-Set (images/ + labels/)",
    "openimages-vehicles": "https://public.roboflow.com/object-detection/vehicles-openimages (YOLO export)",
    "gti-vehicles": "https://www.gti.ssr.upm.es/data/vehicle-database (or Udacity's vehicles.zip / non-vehicles.zip)",
    "CNRPark-A": "http://cnrpark.it/ (CNRPark-Patches-150x150, camera A: busy/ and free/)",
}


def check_source(spec, root: Path) -> str:
    """Cheap structural check (no decoding): pictures present, labels parse, classes resolve."""
    if spec.kind == "uiuc":
        return ", ".join(f"{k} {v}" for k, v in verify_cardata(root).items())
    if spec.kind == "yolo":
        names = yolo.class_names(root)
        _, _, n_classes = yolo.resolve_classes(names, list(spec.car_classes), list(spec.ignore_classes), spec.name)
        problems = yolo.LabelProblems()
        items = yolo.scan(root, n_classes, problems)
        n_obj = sum(len(i.objects) for i in items)
        if not items:
            raise DatasetError(f"{root}: no pictures")
        return (f"{len(items)} pictures, {n_obj} labelled objects, {problems.n_bad_lines} bad label lines, "
                f"{len(problems.labels_without_picture)} label files without a picture")
    counts = {}
    for folder, cls in spec.classes:
        d = root / folder
        n = sum(1 for p in d.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES) if d.is_dir() else 0
        if n == 0:
            raise DatasetError(f"{d}: no pictures for class {cls}")
        counts[folder] = n
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def fetch_all(dest: Path, mirror: Path | None, spec_path: str | None = None) -> list[dict]:
    """Every mix source into `dest` (CarData copied, the rest linked), each checked; one
    missing or broken source is reported and the others still go on."""
    from training.sources import DEFAULT_SPEC, load_spec

    spec = load_spec(spec_path or DEFAULT_SPEC, dest)
    dest.mkdir(parents=True, exist_ok=True)
    results = []
    for s in spec.sources:
        root = spec.path_of(s)
        try:
            if s.kind == "uiuc":
                fetch_cardata(root, mirror)
            elif not root.exists():
                src = mirror / Path(s.path).name if mirror else None
                if not (src and src.exists()):
                    raise DatasetError(f"{root} is missing and {src or 'no mirror'} does not have it; get it from "
                                       f"{ORIGINS.get(s.name, 'its publisher')} and put it at {root} "
                                       "or in DATA_MIRROR")
                root.symlink_to(src.resolve(), target_is_directory=True)
            results.append({"name": s.name, "ok": True, "detail": check_source(s, root)})
        except (DatasetError, yolo.YoloError, OSError) as exc:
            results.append({"name": s.name, "ok": False, "detail": str(exc)})
    return results
