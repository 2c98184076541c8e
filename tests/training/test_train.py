"""Real training on real data (few epochs): artifacts, manifest contract, gate, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.manifest import load_manifest, sha256_file
from edge.model import ScoreMapModel
from training import train as train_mod
from training.train import GateError, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_artifacts_are_complete(trained_run):
    for name in ("model_int8.tflite", "model_float.tflite", "dense_baseline_int8.tflite", "manifest.json",
                 "golden.npz", "report.json", "report.md", "training_curves.png", "pr_curve.png",
                 "confusion_int8.png", "scenes_int8.png"):
        assert (trained_run / name).is_file(), name
    latest = trained_run.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == trained_run.resolve()
    assert not list(trained_run.parent.glob(".tmp-*"))


def test_manifest_fields(trained_run):
    raw = json.loads((trained_run / "manifest.json").read_text())
    mf = load_manifest(trained_run)
    i8 = mf.models["int8"]
    assert i8.sha256 == sha256_file(trained_run / "model_int8.tflite")
    assert i8.input.dtype == "int8" and i8.output.dtype == "int8"
    assert i8.input.shape == [1, 40, 100, 1]
    assert i8.input.scale == pytest.approx(1 / 255, rel=1e-3) and i8.input.zero_point == -128
    assert mf.models["float"].input.dtype == "float32"
    assert (mf.window_height, mf.window_width, mf.stride) == (40, 100, 8)
    assert raw["classes"] == ["no_car", "car"]
    assert 0 < raw["thresholds"]["detection"] < 1
    cal = raw["calibration"]
    assert cal["n"] == 100 and sum(cal["histogram"]["counts"]) == 100 * 40 * 100
    assert raw["training_data"]["train"]["n"] + raw["training_data"]["held_out"]["n"] == 1050
    assert raw["macs"]["macs"] > 1_000_000
    assert {"tensorflow", "numpy", "python"} <= set(raw["versions"])
    assert len(raw["golden"]["frames"]) == 4


def test_int8_model_is_fully_quantised(trained_run):
    from edge.runtimes import load_interpreter

    interp = load_interpreter(trained_run / "model_int8.tflite", "litert").interpreter
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, 40, 100, 1], strict=False)
    interp.allocate_tensors()
    float_tensors = [t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.float32]
    assert float_tensors == [], f"float tensors left in the int8 model: {float_tensors}"


def test_report_keys(trained_run):
    rep = json.loads((trained_run / "report.json").read_text())
    for path in ("float.accuracy", "int8.accuracy", "int8.auc", "int8.size_bytes", "int8.detection.eer",
                 "int8.detection.recall", "int8.detection.precision", "dense.params", "cnn.params", "train_seconds"):
        node = rep
        for k in path.split("."):
            node = node[k]
        assert isinstance(node, (int, float)), path
    assert rep["dense"]["params"] == 40 * 100 * 100 + 100 + 101
    assert rep["dense"]["first_layer_weights_200x100"] == 2_000_100
    assert rep["cnn"]["params"] < 50_000
    # Real data, 3 epochs: already far better than chance; the full run is in `make train`.
    assert rep["int8"]["auc"] > 0.8
    md = (trained_run / "report.md").read_text()
    assert "![pr_curve.png](pr_curve.png)" in md and "2,000,100" in md


def test_window_scores_equal_dense_map_cells(trained_run):
    """Valid convolutions: the score map cell at (r, c) is the score of that 40x100 crop."""
    m = ScoreMapModel.load(trained_run, precision="float")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (80, 196), dtype=np.uint8)
    dense = m.score_map(frame)
    assert dense.shape == m.manifest.output_size(80, 196) == (6, 13)
    for r, c in ((0, 0), (2, 5), (5, 12)):
        crop = frame[r * 8 : r * 8 + 40, c * 8 : c * 8 + 100]
        assert m.score_windows(crop[None])[0] == pytest.approx(dense[r, c], abs=1e-4)


def test_gate_keeps_previous_model(trained_run, cardata, tmp_path, monkeypatch):
    """An int8 drop above the gate raises and leaves artifacts/latest where it was."""
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "good").symlink_to(trained_run, target_is_directory=True)
    (root / "latest").symlink_to("good")
    real_eval = train_mod.__dict__.get("_finish")
    from training import evaluate

    orig = evaluate.evaluate_windows

    def lossy(model, images, labels, threshold=0.5):
        out = orig(model, images, labels, threshold)
        if model.precision == "int8":
            out["accuracy"] -= 0.05  # simulate a 5-point quantisation loss
        return out

    monkeypatch.setattr(evaluate, "evaluate_windows", lossy)
    cfg = TrainConfig(data=str(cardata), artifacts=str(root), run_name="bad", epochs=1, dense_epochs=1,
                      calibration_samples=20)
    with pytest.raises(GateError, match="points below float"):
        train_mod.run(cfg)
    assert real_eval is not None
    assert (root / "latest").resolve() == trained_run.resolve()
    assert not (root / "bad").exists() and not list(root.glob(".tmp-*"))


def test_training_is_reproducible(cardata):
    """Same seed, same data -> identical weights (deterministic ops, seeded augmentation)."""
    from training.datasets import load_uiuc_windows

    ws, _ = load_uiuc_windows(cardata)
    idx = np.r_[0:60, 600:660]
    small = ws.subset(idx)
    cfg = TrainConfig(epochs=1, batch_size=32, copies=1)
    weights = []
    for _ in range(2):
        train_mod.set_seeds(cfg.seed)
        model, _, _ = train_mod.train_cnn(cfg, small, small)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_evaluate_cli_single_and_multiscale(trained_run, cardata, tmp_path):
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "training", "evaluate", "--model", str(trained_run),
           "--scenes", str(cardata / "TestImages"), "--truth", str(cardata / "trueLocations.txt"), "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    rep = json.loads((trained_run / "report.json").read_text())
    assert got["int8"]["detection"]["eer"] == rep["int8"]["detection"]["eer"]
    # Multi-scale format: the same cars written as (i,j,w); scenes 0-9 only.
    ms = tmp_path / "ms.txt"
    lines = [ln for ln in (cardata / "trueLocations.txt").read_text().splitlines() if ln.split(":")[0] in map(str, range(10))]
    ms.write_text("\n".join(ln.replace(")", ",100)") for ln in lines) + "\n")
    r = subprocess.run(cmd[:-2] + ["--truth", str(ms), "--scales", "1.0,0.8", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    det = json.loads(out.read_text())["int8"]["detection"]
    assert det["multiscale"] is True and det["scenes"] == 10 and det["scales"] == [1.0, 0.8]


def test_evaluate_cli_pictures_and_bad_input(trained_run, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("busy", "free"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    r = subprocess.run([sys.executable, "-m", "training", "evaluate", "--model", str(trained_run), "--pictures",
                        str(tmp_path), "--classes", "busy=car,free=no_car", "--json", str(tmp_path / "o.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o.json").read_text())["int8"]["n"] == 8
    r = subprocess.run([sys.executable, "-m", "training", "evaluate", "--model", str(tmp_path / "nope"),
                        "--pictures", str(tmp_path), "--classes", "busy=car,free=no_car"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and "does not exist" in r.stderr


@pytest.mark.slow
def test_train_on_a_labelled_picture_folder(tmp_path):
    """CNRPark patches laid out as busy/ and free/: the user's-own-camera path, end to end."""
    import shutil

    from tests.conftest import SHARED

    src = SHARED / "CNRPark-A"
    for cls in ("busy", "free"):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for p in sorted((src / cls).iterdir())[:150]:
            shutil.copy(p, tmp_path / "pics" / cls / p.name)
    r = subprocess.run([sys.executable, "-m", "training", "train", "--dataset", "folder", "--data",
                        str(tmp_path / "pics"), "--classes", "busy=car,free=no_car", "--epochs", "2",
                        "--dense-epochs", "1", "--artifacts", str(tmp_path / "art"), "--run-name", "f"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "art" / "f" / "report.json").read_text())
    assert rep["data"]["per_class"] == {"car": 150, "no_car": 150}
    assert "detection" not in rep["int8"] and rep["int8"]["n"] == 44
