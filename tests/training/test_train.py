"""Real training on real data (few epochs): artifacts, manifest contract, report, gate, promotion,
the evaluate command, and a user's own YOLO folder end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.manifest import load_manifest, sha256_file
from training import artifacts
from training.report import TARGETS
from training.train import GateError, TrainConfig, int8_gate

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"uiuc", "drone-madison", "openimages-vehicles", "gti-vehicles", "CNRPark-A"}


def test_artifacts_are_complete(trained_run):
    for name in ("model_int8.tflite", "model_float.tflite", "manifest.json", "golden.npz", "report.json",
                 "report.md", "training_curves.png", "pr_curves.png", "highway_int8.png"):
        assert (trained_run / name).is_file(), name
    assert list(trained_run.glob("gallery_drone_madison_*.png"))
    latest = trained_run.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == trained_run.resolve()
    assert not list(trained_run.parent.glob(".tmp-*"))


def test_manifest_contract(trained_run):
    raw = json.loads((trained_run / "manifest.json").read_text())
    mf = load_manifest(trained_run)
    i8 = mf.models["int8"]
    assert i8.sha256 == sha256_file(trained_run / "model_int8.tflite")
    assert i8.input.dtype == "int8" and {o.dtype for o in i8.outputs.values()} == {"int8"}
    assert i8.outputs["heat"].shape[-1] == 1 and i8.outputs["box"].shape[-1] == 4
    assert i8.input.scale == pytest.approx(1 / 255, rel=1e-3) and i8.input.zero_point == -128
    assert mf.models["float"].input.dtype == "float32"
    assert (mf.stride, mf.input_multiple) == (8, 64) and mf.classes == ["car"]
    assert mf.calibration.a > 0 and 0 < mf.threshold < 1
    assert set(raw["training_data"]) == SOURCES
    assert 1_000_000 < raw["macs"]["macs"] <= 150_000_000 and raw["macs"]["padded_input"] == [256, 320]
    assert {"tensorflow", "numpy", "python"} <= set(raw["versions"])
    assert len(raw["golden"]["frames"]) == len(SOURCES) + 1


def test_int8_model_is_fully_quantised(trained_run):
    from edge.runtimes import load_interpreter

    interp = load_interpreter(trained_run / "model_int8.tflite", "litert").interpreter
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, 64, 96, 1], strict=False)
    interp.allocate_tensors()
    float_tensors = [t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.float32]
    assert float_tensors == [], f"float tensors left in the int8 model: {float_tensors}"


def test_report_figures_per_dataset(trained_run):
    rep = json.loads((trained_run / "report.json").read_text())
    assert set(rep["datasets"]) == SOURCES
    for name in ("drone-madison", "openimages-vehicles"):
        d = rep["datasets"][name]
        assert 0 <= d["ap50_int8"] <= 1 and 0 <= d["ap_int8"] <= d["ap50_int8"] and d["cars"] > 0
        assert set(d["at_threshold_int8"]) >= {"precision", "recall"}
    for d in rep["datasets"].values():
        assert "presence_auc_int8" in d and "int8_drop_points" in d and d["ece_int8"] is not None
    assert 0 <= rep["uiuc"]["single_scale_eer_int8"] <= 1 and 0 <= rep["uiuc"]["multi_scale_eer_int8"] <= 1
    assert {t["target"] for t in rep["targets"]} == {t[0] for t in TARGETS if t[3][0] != "site"}
    assert rep["dense_baseline"]["params"] == 40 * 100 * 100 + 100 + 101
    assert rep["dense_baseline"]["first_layer_weights_200x100"] == 2_000_100
    assert rep["model"]["params"] < 200_000 and rep["model"]["int8_bytes"] <= 512 * 1024
    assert rep["calibration"]["a"] > 0 and rep["calibration"]["ece"] is not None
    md = (trained_run / "report.md").read_text()
    for text in ("What this model can and cannot see", "**green** = true car", "![pr_curves.png](pr_curves.png)",
                 "2,000,100", "highway_int8.png", "worst false positives and misses"):
        assert text in md, text
    for ref in __import__("re").findall(r"\]\(([^)]+\.png)\)", md):
        assert (trained_run / ref).is_file(), ref


def _metrics(ap50_f, ap50_i, auc_f=0.9, auc_i=0.9):
    return {"float": {"a": {"ap50": ap50_f, "presence": {"auc": auc_f}}, "b": {"presence": {"auc": auc_f}}},
            "int8": {"a": {"ap50": ap50_i, "presence": {"auc": auc_i}}, "b": {"presence": {"auc": auc_i}}}}


def test_int8_gate_names_the_dataset_and_the_points():
    cfg = TrainConfig(gate_points=1.0, artifacts="arts")
    assert int8_gate(cfg, _metrics(0.80, 0.795)) == {"a": pytest.approx(0.5), "b": 0.0}
    with pytest.raises(GateError, match=r"lost 3.00 points to float on a.*arts/latest still points"):
        int8_gate(cfg, _metrics(0.80, 0.77))
    with pytest.raises(GateError, match="on b"):
        int8_gate(cfg, _metrics(0.80, 0.80, 0.9, 0.85))


def _run_dir(root: Path, name: str, ap50: dict[str, float]) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "report.json").write_text(json.dumps({"datasets": {k: {"ap50_int8": v} for k, v in ap50.items()}}))
    return d


def test_latest_moves_only_to_a_run_that_does_not_regress(tmp_path):
    root = tmp_path / "arts"
    work = _run_dir(root, ".tmp-first", {"drone": 0.9})
    first = json.loads((work / "report.json").read_text())
    d = artifacts.promotion(root, first, 1.0, force=False)
    assert d.promote and "no previous latest" in d.reason
    artifacts.publish(work, root, "first", promote=d.promote)
    assert (root / "latest").resolve().name == "first"

    worse = {"datasets": {"drone": {"ap50_int8": 0.88}, "new-set": {"ap50_int8": 0.1}}}
    d = artifacts.promotion(root, worse, 1.0, force=False)
    assert not d.promote and "drone AP50 0.880 < 0.900" in d.reason and "--promote" in d.reason
    artifacts.publish(_run_dir(root, ".tmp-second", {"drone": 0.88}), root, "second", promote=d.promote)
    assert (root / "latest").resolve().name == "first" and (root / "second" / "report.json").is_file()

    assert artifacts.promotion(root, worse, 1.0, force=True).promote
    slightly = {"datasets": {"drone": {"ap50_int8": 0.895}}}  # within one point
    assert artifacts.promotion(root, slightly, 1.0, force=False).promote


def _evaluate(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "training", "evaluate", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_evaluate_uiuc_single_and_multiscale_truth(trained_run, cardata, tmp_path):
    out = tmp_path / "eval.json"
    r = _evaluate("--model", str(trained_run), "--scenes", str(cardata / "TestImages"), "--truth",
                  str(cardata / "trueLocations.txt"), "--json", str(out))
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())["uiuc"]
    rep = json.loads((trained_run / "report.json").read_text())
    assert got["eer"] == rep["uiuc"]["single_scale_eer_int8"] and got["multiscale"] is False
    ms = tmp_path / "ms.txt"  # the same cars in the multi-scale (i,j,w) format, scenes 0-9
    lines = [ln for ln in (cardata / "trueLocations.txt").read_text().splitlines() if ln.split(":")[0] in map(str, range(10))]
    ms.write_text("\n".join(ln.replace(")", ",100)") for ln in lines) + "\n")
    r = _evaluate("--model", str(trained_run), "--scenes", str(cardata / "TestImages"), "--truth", str(ms),
                  "--json", str(out))
    assert r.returncode == 0, r.stderr
    det = json.loads(out.read_text())["uiuc"]
    assert det["multiscale"] is True and det["scenes"] == 10


def test_evaluate_pictures_goes_on_after_a_bad_picture(trained_run, tmp_path):
    from PIL import Image

    src = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "CNRPark-A"
    for cls in ("busy", "free"):
        (tmp_path / cls).mkdir()
        for p in sorted((src / cls).iterdir())[:4]:
            shutil.copy(p, tmp_path / cls / p.name)
    (tmp_path / "busy" / "zz-broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((10, 14), np.uint8)).save(tmp_path / "free" / "tiny.png")  # smaller than the model
    r = _evaluate("--model", str(trained_run), "--pictures", str(tmp_path), "--classes", "busy=car,free=no_car",
                  "--json", str(tmp_path / "o.json"))
    assert r.returncode == 0, r.stderr
    assert '"error": "cannot read picture' in r.stdout and "zz-broken.jpg" in r.stdout
    assert json.loads((tmp_path / "o.json").read_text())["pictures"]["n"] == 9
    r = _evaluate("--model", str(tmp_path / "nope"), "--pictures", str(tmp_path))
    assert r.returncode == 1 and "does not exist" in r.stderr


def _user_yolo_folder(dest: Path, n: int = 40) -> Path:
    """Real Open Images pictures laid out as a user's export, with one bad label line."""
    from tests.conftest import SHARED

    src = SHARED / "openimages-vehicles"
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir()
    shutil.copy(src / "classes.yaml", dest / "data.yaml")
    has_car = lambda p: any(ln.split()[:1] == ["2"] for ln in p.read_text().splitlines())  # noqa: E731
    labelled = [p for p in sorted((src / "train" / "labels").iterdir()) if has_car(p)][:n]
    for lf in labelled:
        pic = next((src / "train" / "images").glob(lf.stem + ".*"))
        shutil.copy(pic, dest / "images" / pic.name)
        shutil.copy(lf, dest / "labels" / lf.name)
    with open(dest / "labels" / labelled[0].name, "a") as fh:
        fh.write("2 0.5 0.5 1.7 0.2\n")
    return dest


def test_evaluate_a_yolo_folder(trained_run, tmp_path):
    folder = _user_yolo_folder(tmp_path / "cam", 12)
    r = _evaluate("--model", str(trained_run), "--yolo", str(folder), "--car-classes", "Car",
                  "--ignore-classes", "Bus,Truck,Ambulance", "--json", str(tmp_path / "o.json"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "o.json").read_text())["yolo"]
    assert got["coco"]["cars"] > 0 and 0 <= got["coco"]["ap50"] <= 1
    assert got["labels"]["bad_lines"] == 1 and "label problems" in r.stdout


def test_train_on_your_own_yolo_folder(tmp_path, data_root):
    """The user's path: a YOLO export of their camera, trained alone, reported like any source."""
    folder = _user_yolo_folder(tmp_path / "mycam", 40)
    r = subprocess.run([sys.executable, "-m", "training", "train", "--yolo", str(folder), "--car-classes", "Car",
                        "--ignore-classes", "Bus,Truck,Ambulance", "--only-user", "--epochs", "1", "--per-epoch",
                        "32", "--dense-epochs", "1", "--gate-points", "100", "--calibration-samples", "8",
                        "--artifacts", str(tmp_path / "art"), "--run-name", "mine", "--video", "",
                        "--cache", ""], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "art" / "mine" / "report.json").read_text())
    assert set(rep["datasets"]) == {"mycam"} and rep["data"]["mycam"]["labels"]["bad_lines"] == 1
    assert "ap50_int8" in rep["datasets"]["mycam"] and rep["uiuc"] == {}
    assert "next: " in r.stdout and "[" in r.stdout.splitlines()[0]  # progress lines
    assert "absl::InitializeLog" not in r.stderr and "oneDNN" not in r.stderr  # TF's C++ noise silenced
