"""Session fixtures shared by every test folder: real data and one real trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DATA_MIRROR", ROOT.parent / "shared" / "datasets"))
VIDEO = SHARED / "video" / "highway-320x240.avi"


@pytest.fixture(scope="session")
def cardata() -> Path:
    """UIUC CarData as `make data` lays it out (copied from the mirror if needed)."""
    from training.data import fetch_cardata

    dest = ROOT / "data" / "CarData"
    fetch_cardata(dest, SHARED)
    return dest


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cardata) -> Path:
    """A real training run on real data with few epochs: the model every edge test uses.

    This is CI's real-data training (about a minute on 2 cores). It runs as `make train`
    does, in its own process: TensorFlow must not be loaded in the test process, where
    tflite-runtime would then fail to read models (two TFLite builds in one process).
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("artifacts")
    cmd = [sys.executable, "-m", "training", "train", "--data", str(cardata), "--artifacts", str(root),
           "--run-name", "ci", "--epochs", "3", "--dense-epochs", "2", "--patience", "3",
           "--calibration-samples", "100"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"training failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return root / "ci"


@pytest.fixture(scope="session")
def trained_model_dir(trained_run) -> Path:
    """Directory with manifest.json, model_int8.tflite, model_float.tflite, golden.npz."""
    return trained_run


@pytest.fixture(scope="session")
def video_path() -> Path:
    if not VIDEO.is_file():
        pytest.fail(f"{VIDEO} missing: the shared datasets must sit beside the repo (../shared/datasets)")
    return VIDEO
