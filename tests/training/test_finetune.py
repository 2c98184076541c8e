"""`python -m training finetune`, for real: the CI model adapted to the checked-in highway
frames (a short run), with the report's site section and the base's normalisation kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from training.site_frames import materialise

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "training" / "sites" / "highway"

pytestmark = pytest.mark.timeout(600)


def _weights(path: Path) -> dict[str, np.ndarray]:
    """Every layer variable of a Keras .weights.h5, by its path (layers/<layer>/vars/<i>); the
    optimizer's state is left out (frozen layers have none)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f["layers"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def finetuned(trained_run, data_root, video_path, tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("finetune")
    materialise(video_path, LABELS, tmp / "site")
    cmd = [sys.executable, "-m", "training", "finetune", "--base", str(trained_run), "--data", str(tmp / "site"),
           "--name", "highway", "--ignore-classes", "truck,cut", "--holdout-gap", "5", "--scale", "2",
           "--data-root", str(data_root), "--artifacts", str(tmp / "arts"), "--run-name", "ft", "--video", "",
           "--epochs", "2", "--per-epoch", "64", "--limit", "16", "--dense-epochs", "1",
           "--calibration-samples", "16", "--gate-points", "100"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tmp / "arts" / "ft", r.stdout


def test_report_compares_base_and_finetuned_on_the_newest_frames(finetuned, trained_run):
    run, out = finetuned
    rep = json.loads((run / "report.json").read_text())
    site = rep["site"]
    assert site["held_out_frames"] == 16 and site["base_run"] == str(trained_run)
    for side in ("base", "finetuned"):
        assert 0.0 <= site[side]["ap50"] <= 1.0 and site[side]["false_alarms_per_hour"] >= 0
    assert set(site["default_sets"]) == {"uiuc", "drone-madison", "openimages-vehicles", "gti-vehicles", "CNRPark-A"}
    assert rep["data"]["highway"]["train"] == 42  # 63 frames: 16 held out, the 5 before them unused
    assert "highway: 16 held-out frames  AP50 base" in out and "next: make deploy" in out
    assert "target fine-tune: site held-out AP50" in out and "make train seconds" not in out  # not a make train


def test_a_scaled_site_is_scored_and_labelled_at_its_processing_scale(finetuned):
    """--scale 2: frames twice the size, as the daemon with processing.scales = [2] feeds
    the model; the manifest says so, for the daemon to warn about a config that differs."""
    run, out = finetuned
    rep = json.loads((run / "report.json").read_text())
    assert rep["site"]["processing_scale"] == 2.0
    assert json.loads((run / "manifest.json").read_text())["processing"] == {"scales": [2.0]}
    assert "run this camera with processing.scales = [2]" in out
    assert "processing scale 2" in (run / "report.md").read_text()


def test_batch_norm_statistics_stay_the_bases(finetuned, trained_run):
    run, _ = finetuned
    base, new = _weights(trained_run / "detector.weights.h5"), _weights(run / "detector.weights.h5")
    assert base.keys() == new.keys()
    norm = [k for k in base if k.startswith("batch_normalization")]
    conv = [k for k in base if k.startswith(("conv2d", "depthwise_conv2d"))]
    assert norm and conv
    assert all(np.array_equal(base[k], new[k]) for k in norm)
    assert any(not np.array_equal(base[k], new[k]) for k in conv)  # and it did learn
