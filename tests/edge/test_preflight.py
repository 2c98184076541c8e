"""Preflight: the Pi's proof that it runs the model the workstation built."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge.manifest import ManifestError, sha256_file
from edge.preflight import PreflightError, preflight_dir


@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
@pytest.mark.parametrize("precision", ["int8", "float"])
def test_each_runtime_reproduces_its_golden_outputs_exactly(trained_model_dir, runtime, precision):
    """Through the CLI the deploy calls, in a fresh process (as on the Pi)."""
    r = subprocess.run([sys.executable, "-m", "edge", "preflight", "--model", str(trained_model_dir),
                        "--runtime", runtime, "--precision", precision], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["runtime"] == runtime and rep["golden"]["frames"] == 4
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


def test_one_lsb_off_fails_for_a_runtime_the_workstation_ran(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")

    def bump(a):
        a["int8_litert_0"][0, 0] += 1

    rewrite_golden(m, bump)
    with pytest.raises(PreflightError, match="golden: outputs differ.*must match exactly"):
        preflight_dir(m, runtime="litert")


def test_unknown_runtime_gets_the_bounded_tolerance(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")

    def drop_tflite(a):  # as if the workstation had no tflite-runtime
        for k in [k for k in a if "_tflite-runtime_" in k]:
            del a[k]

    rewrite_golden(m, drop_tflite)
    cmd = [sys.executable, "-m", "edge", "preflight", "--model", str(m), "--runtime", "tflite-runtime"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["golden"]["exact_runtime_match"] is False and rep["golden"]["max_abs"] <= 2

    def far_off(a):
        a["int8_0"] = (a["int8_0"].astype(np.int16) + 5).clip(-128, 127).astype(np.int8)

    rewrite_golden(m, far_off)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "tolerance" in r.stderr


def test_manifest_field_mismatches_are_named(trained_model_dir, tmp_path):
    m = copy_model(trained_model_dir, tmp_path / "m")
    man = json.loads((m / "manifest.json").read_text())
    man["models"]["int8"]["input"]["zero_point"] = 0
    (m / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PreflightError, match=r"models.int8.input.scale/zero_point"):
        preflight_dir(m)
    man["models"]["int8"]["input"]["zero_point"] = -128
    man["models"]["int8"]["output"]["dtype"] = "uint8"
    (m / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PreflightError, match=r"models.int8.output.dtype: model has int8, manifest says uint8"):
        preflight_dir(m)
    (m / "golden.npz").write_bytes(b"x")
    man["models"]["int8"]["output"]["dtype"] = "int8"
    (m / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PreflightError, match="golden.sha256"):
        preflight_dir(m)
    (m / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        preflight_dir(m)


def test_other_cpu_architecture_gets_the_two_lsb_bound(trained_model_dir, tmp_path):
    """Outputs recorded on x86, checked 'on arm64': tflite-runtime's arm64 kernels round ties
    differently (measured by make pi-sim), so up to 2 LSB pass and 3 LSB do not."""
    m = copy_model(trained_model_dir, tmp_path / "m")

    def off_by(n):
        def mutate(a):
            a["int8_litert_2"][0, 0] = np.clip(int(a["int8_litert_2"][0, 0]) + (n if a["int8_litert_2"][0, 0] < 0 else -n),
                                               -128, 127)
        return mutate

    rewrite_golden(m, off_by(2))
    man = json.loads((m / "manifest.json").read_text())
    man["golden"]["machine"] = "aarch64" if man["golden"]["machine"] != "aarch64" else "x86_64"
    (m / "manifest.json").write_text(json.dumps(man))
    rep = preflight_dir(m, runtime="litert")
    assert rep["golden"]["exact_runtime_match"] is False and rep["golden"]["max_abs"] == 2
    rewrite_golden(m, off_by(1))  # now 3 LSB off in total
    man2 = json.loads((m / "manifest.json").read_text())
    man2["golden"]["machine"] = man["golden"]["machine"]
    (m / "manifest.json").write_text(json.dumps(man2))
    with pytest.raises(PreflightError, match="max \\|diff\\| 3.0"):
        preflight_dir(m, runtime="litert")
