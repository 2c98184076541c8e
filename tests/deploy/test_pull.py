"""`make pull PI=...`: the labelled captures of a real ssh "Pi" (tests/deploy/conftest.py)
reach this machine as a capture folder and a YOLO export; unlabelled frames stay behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.capture_store import CaptureStore
from tests.deploy.conftest import REPO, PiTarget

pytestmark = pytest.mark.timeout(180)


def pull(pi: PiTarget, tmp_path: Path, captures: Path, make: bool = True, **env: str
         ) -> subprocess.CompletedProcess[str]:
    """`make pull` (make's own exit status is 2 on any failure), or the script for its exit codes."""
    full = {**os.environ, "PI": pi.pi, "SSH_OPTS": pi.ssh_opts, "CAPTURES": str(captures),
            "DEST": str(tmp_path / "dest"), "OUT": str(tmp_path / "yolo"), "PYTHON": sys.executable, **env}
    cmd = ["make", "-s", "pull"] if make else ["bash", "deploy/pull.sh"]
    return subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def frames_on_the_pi(folder: Path, n: int) -> tuple[CaptureStore, list[str]]:
    store = CaptureStore(folder, 10_000_000)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        cid = store.add(rng.integers(0, 256, (60, 80), dtype=np.uint8), 1_700_000_000.0 + i, i, "random", 0.2, [])
        assert cid is not None
        ids.append(cid)
    return store, ids


def test_make_pull_copies_only_labelled_frames_and_exports_them(pi_target: PiTarget, tmp_path: Path) -> None:
    store, ids = frames_on_the_pi(tmp_path / "pi" / "capture", 4)
    store.set_labels(ids[1], [{"x": 10, "y": 10, "width": 20, "height": 10}], False)
    store.set_labels(ids[3], [], True)
    r = pull(pi_target, tmp_path, store.folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 labelled frame(s)" in r.stdout
    copied = sorted(p.name for p in (tmp_path / "dest").iterdir())
    assert copied == sorted([f"{ids[1]}.json", f"{ids[1]}.png", f"{ids[3]}.json", f"{ids[3]}.png"])
    assert sorted(p.stem for p in (tmp_path / "yolo" / "labels").iterdir()) == [ids[1], ids[3]]
    assert (tmp_path / "yolo" / "labels" / f"{ids[3]}.txt").read_text() == ""
    assert json.loads((tmp_path / "dest" / f"{ids[1]}.json").read_text())["labels"] == [
        {"x": 10.0, "y": 10.0, "width": 20.0, "height": 10.0}]
    # Labelling more on the Pi and pulling again refreshes the copy and the export.
    store.set_labels(ids[0], [], True)
    r = pull(pi_target, tmp_path, store.folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list((tmp_path / "yolo" / "images").iterdir())) == 3


def test_make_pull_with_nothing_labelled_or_no_folder_says_so(pi_target: PiTarget, tmp_path: Path) -> None:
    store, _ = frames_on_the_pi(tmp_path / "pi" / "capture", 2)
    r = pull(pi_target, tmp_path, store.folder, make=False)
    assert r.returncode == 1 and "no labelled frames" in r.stderr and "label frames on the page" in r.stderr
    r = pull(pi_target, tmp_path, tmp_path / "pi" / "nowhere", make=False)
    assert r.returncode == 4 and "no capture folder" in r.stderr and "capture.enabled" in r.stderr
    r = pull(pi_target, tmp_path, store.folder, make=False, PI="")
    assert r.returncode == 2 and "PI is not set" in r.stderr
