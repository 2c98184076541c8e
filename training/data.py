"""`make data`: put UIUC CarData in data/CarData, from a local mirror or the public URL, and check it.

A mirror (DATA_MIRROR, default ../shared/datasets) is tried first because the public
server is slow and sometimes down; the download is the fallback for a fresh laptop.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

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
