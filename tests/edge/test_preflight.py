"""Preflight: the Pi's proof that it runs the model the workstation built."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge.manifest import ManifestError, sha256_file
from edge.preflight import PreflightError, golden_key, preflight_dir


@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
@pytest.mark.parametrize("precision", ["int8", "float"])
def test_each_runtime_reproduces_its_golden_outputs_exactly(trained_model_dir, runtime, precision):
    """Through the CLI the deploy calls, in a fresh process (as on the Pi)."""
    r = subprocess.run([sys.executable, "-m", "edge", "preflight", "--model", str(trained_model_dir),
                        "--runtime", runtime, "--precision", precision], check=False, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    frames = json.loads((trained_model_dir / "manifest.json").read_text())["golden"]["frames"]
    assert rep["runtime"] == runtime and rep["golden"]["frames"] == len(frames) >= 1
    assert rep["golden"]["exact_runtime_match"] is True and rep["golden"]["max_abs"] == 0.0


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite_golden(model_dir, mutate) -> None:
    """Change golden.npz and re-sign it in the manifest, as a different build would."""
    path = model_dir / "golden.npz"
    with np.load(path) as d:
        arrays = {k: d[k].copy() for k in d.files}
    mutate(arrays)
    np.savez_compressed(path, **arrays)
    man = json.loads((model_dir / "manifest.json").read_text())
    man["golden"]["sha256"] = sha256_file(path)
    (model_dir / "manifest.json").write_text(json.dumps(man))


def bump(key: str, by: int = 1):
    """Move one stored int8 value by `by` LSB, away from the int8 limits."""
    def mutate(a):
        v = int(a[key].flat[0])
        a[key].flat[0] = v + by if v + by <= 127 else v - by
    return mutate


def test_golden_keys_cover_both_outputs_of_every_frame(trained_model_dir):
    man = json.loads((trained_model_dir / "manifest.json").read_text())
    g = man["golden"]
    with np.load(trained_model_dir / g["file"]) as d:
        keys = set(d.files)
        for prec in g["precisions"]:
            for rt in [None, *g["runtimes"]]:
                for i, frame in enumerate(g["frames"]):
                    assert frame["name"] in keys
                    heat, box = d[golden_key(prec, rt, i, "heat")], d[golden_key(prec, rt, i, "box")]
                    rows, cols = -(-frame["height"] // 8), -(-frame["width"] // 8)  # cells covering the frame
                    assert heat.shape == (rows, cols) and box.shape == (rows, cols, 4)
    assert golden_key("int8", None, 2, "box") == "int8_2_box"
    assert golden_key("int8", "litert", 0, "heat") == "int8_litert_0_heat"


@pytest.mark.parametrize("output", ["heat", "box"])
def test_one_lsb_off_fails_for_a_runtime_the_workstation_ran(trained_model_dir, tmp_path, output):
    m = copy_model(trained_model_dir, tmp_path / "m")
    rewrite_golden(m, bump(golden_key("int8", "litert", 0, output)))
    with pytest.raises(PreflightError, match="golden: outputs differ.*must match exactly"):
        preflight_dir(m, runtime="litert")


def test_a_missing_golden_output_is_named(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")

    def drop_box(a):
        del a[golden_key("int8", "litert", 1, "box")]

    rewrite_golden(m, drop_box)
    with pytest.raises(PreflightError, match="golden: no int8 box output for frame_1"):
        preflight_dir(m, runtime="litert")


def test_unknown_runtime_gets_the_bounded_tolerance(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")

    def drop_tflite(a):  # as if the workstation had no tflite-runtime
        for k in [k for k in a if "_tflite-runtime_" in k]:
            del a[k]

    rewrite_golden(m, drop_tflite)
    cmd = [sys.executable, "-m", "edge", "preflight", "--model", str(m), "--runtime", "tflite-runtime"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    lsb = lsb_bound(m)
    assert rep["golden"]["exact_runtime_match"] is False and rep["golden"]["max_abs"] <= lsb

    def far_off(a):
        k = golden_key("int8", None, 0, "heat")
        n = lsb + 3
        a[k] = np.where(a[k] > 0, a[k].astype(np.int16) - n, a[k].astype(np.int16) + n).astype(np.int8)

    rewrite_golden(m, far_off)
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "tolerance" in r.stderr


@pytest.mark.parametrize("keys,value,words", [
    (("input", "zero_point"), 0, "models.int8.input.scale/zero_point: model has"),
    (("outputs", "heat", "dtype"), "uint8", "models.int8.outputs.heat.dtype: model has int8, manifest says uint8"),
    (("outputs", "box", "zero_point"), 99, "models.int8.outputs.box.scale/zero_point"),
    (("outputs", "box", "scale"), 0.5, "models.int8.outputs.box.scale/zero_point"),
])
def test_manifest_field_mismatches_are_named(trained_model_dir, tmp_path, keys, value, words):
    m = copy_model(trained_model_dir, tmp_path / "m")
    man = json.loads((m / "manifest.json").read_text())
    node = man["models"]["int8"]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    (m / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PreflightError, match=words.replace(".", r"\.")):
        preflight_dir(m)


def test_tampered_files_fail_naming_the_field(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")
    (m / "golden.npz").write_bytes(b"x")
    with pytest.raises(PreflightError, match="golden.sha256"):
        preflight_dir(m)
    data = bytearray((m / "model_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (m / "model_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(PreflightError, match=r"models\.int8\.sha256"):
        preflight_dir(m)
    (m / "model_float.tflite").unlink()
    with pytest.raises(PreflightError, match=r"models\.float\.file: .* is missing"):
        preflight_dir(m, precision="float")
    man = json.loads((m / "manifest.json").read_text())
    del man["golden"]
    (m / "manifest.json").write_text(json.dumps(man))
    shutil.copy(trained_model_dir / "model_int8.tflite", m / "model_int8.tflite")
    with pytest.raises(PreflightError, match="golden: manifest has no golden frames"):
        preflight_dir(m)
    (m / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        preflight_dir(m)


def lsb_bound(model_dir) -> int:
    """The manifest's bound for another runtime or CPU architecture (written by training)."""
    man = json.loads((model_dir / "manifest.json").read_text())
    return int(man["golden"]["tolerance"]["otherwise"]["int8_max_abs_lsb"])


def test_other_cpu_architecture_gets_the_lsb_bound(trained_model_dir, tmp_path):
    """Outputs recorded on x86, checked 'on arm64': kernels round requantisation ties
    differently, so up to the manifest's bound passes and one LSB more does not."""
    m = copy_model(trained_model_dir, tmp_path / "m")
    lsb = lsb_bound(m)
    key = golden_key("int8", "litert", 2, "heat")
    with np.load(m / "golden.npz") as d:
        towards_zero = 1 if int(d[key].flat[0]) < 0 else -1  # stays within int8

    def off_by(n):
        def mutate(a):
            a[key].flat[0] = int(a[key].flat[0]) + towards_zero * n
        return mutate

    rewrite_golden(m, off_by(lsb))
    man = json.loads((m / "manifest.json").read_text())
    man["golden"]["machine"] = "aarch64" if man["golden"]["machine"] != "aarch64" else "x86_64"
    (m / "manifest.json").write_text(json.dumps(man))
    rep = preflight_dir(m, runtime="litert")
    assert rep["golden"]["exact_runtime_match"] is False and rep["golden"]["max_abs"] == lsb
    rewrite_golden(m, off_by(1))  # now one LSB beyond the bound
    man2 = json.loads((m / "manifest.json").read_text())
    man2["golden"]["machine"] = man["golden"]["machine"]
    (m / "manifest.json").write_text(json.dumps(man2))
    with pytest.raises(PreflightError, match=f"max \\|diff\\| {lsb + 1}.0"):
        preflight_dir(m, runtime="litert")
