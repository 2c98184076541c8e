"""Write a run's artifacts atomically and keep `artifacts/latest` pointing at a good one.

Everything goes to a temporary sibling directory first; only a complete run that passed
the int8 gate is renamed into place, so a failed or interrupted run never replaces a
good model.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.manifest import OUTPUT_NAMES, sha256_file
from edge.preflight import golden_key

GOLDEN_NAME = "golden.npz"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tensorflow", "keras", "numpy", "ai-edge-litert", "tflite-runtime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_golden(work_dir: Path, frames: list[np.ndarray], precisions: list[str]) -> dict[str, Any]:
    """Run the just-written models on real frames and store inputs + raw outputs.

    The Pi re-runs these frames at preflight: a different result means a corrupted file or
    a broken kernel, caught before the first camera frame. Runtimes round int8
    requantisation differently (tflite-runtime 2.14 differs from ai-edge-litert by 1 LSB
    in some cells), so outputs are stored per runtime available here and preflight demands
    an exact match for a runtime it has outputs for; the first runtime's are the reference
    (keys by `edge.preflight.golden_key`).
    """
    from edge.runtimes import available_runtimes

    arrays: dict[str, np.ndarray] = {}
    entries = []
    for i, frame in enumerate(frames):
        arrays[f"frame_{i}"] = frame
        entries.append({"name": f"frame_{i}", "height": int(frame.shape[0]), "width": int(frame.shape[1])})
    runtimes = [r for r in available_runtimes() if r != "tensorflow"] or ["tensorflow"]
    frames_file = work_dir / ".golden-frames.npz"
    np.savez(frames_file, **{f"frame_{i}": f for i, f in enumerate(frames)})
    try:
        for rt in runtimes:
            out_file = work_dir / f".golden-{rt}.npz"
            proc = subprocess.run(
                [sys.executable, "-m", "training.golden_worker", str(work_dir), str(frames_file), rt, str(out_file),
                 *precisions], capture_output=True, text=True, timeout=300,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"golden outputs with runtime {rt} failed: {proc.stderr.strip()[-2000:]}")
            with np.load(out_file) as data:
                arrays.update({k: data[k] for k in data.files})
            out_file.unlink()
    finally:
        frames_file.unlink(missing_ok=True)
    for prec in precisions:
        for i in range(len(frames)):
            for name in OUTPUT_NAMES:
                arrays[golden_key(prec, None, i, name)] = arrays[golden_key(prec, runtimes[0], i, name)]
    np.savez_compressed(work_dir / GOLDEN_NAME, **arrays)
    return {
        "file": GOLDEN_NAME,
        "sha256": sha256_file(work_dir / GOLDEN_NAME),
        "frames": entries,
        "precisions": precisions,
        "reference_runtime": runtimes[0],
        "runtimes": runtimes,
        "machine": platform.machine(),
        "tolerance": {
            "same_runtime_and_machine": "exact",
            # Runtimes' optimized int8 kernels round requantisation differently per
            # architecture, and the difference grows through the layers and with the weights:
            # `make pi-sim` measured tflite-runtime 2.14 arm64 vs x86 on the golden frames at
            # <= 9 LSB in 55-62% of cells for one detector (run full5) and <= 16 LSB in 70% for
            # a longer-trained one (run-20261206-222424), TFLite's reference kernels
            # bit-identical across the two and the replayed events the same each time. The
            # bound is twice that. A model that is not the manifest's fails its sha256 check
            # before this one is reached.
            "otherwise": {"int8_max_abs_lsb": 32, "int8_max_fraction_differing": 0.85, "float_max_abs": 1e-3},
        },
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def new_work_dir(artifacts_root: Path, run_name: str) -> Path:
    artifacts_root.mkdir(parents=True, exist_ok=True)
    work = artifacts_root / f".tmp-{run_name}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return work


@dataclass
class Promotion:
    promote: bool
    reason: str


def promotion(artifacts_root: Path, report: dict[str, Any], regress_points: float, force: bool) -> Promotion:
    """Move `latest` only to a run that loses no more than `regress_points` of AP50 on any
    dataset the current `latest` was also scored on (the int8 gate has already passed)."""
    prev = artifacts_root / "latest" / "report.json"
    if force:
        return Promotion(True, "promoted (--promote)")
    if not prev.is_file():
        return Promotion(True, "promoted (no previous latest)")
    try:
        old = json.loads(prev.read_text()).get("datasets", {})
    except (OSError, json.JSONDecodeError):
        return Promotion(True, f"promoted (previous {prev} unreadable)")
    worse = []
    for name, m in report.get("datasets", {}).items():
        a, b = old.get(name, {}).get("ap50_int8"), m.get("ap50_int8")
        if a is not None and b is not None and (a - b) * 100 > regress_points:
            worse.append(f"{name} AP50 {b:.3f} < {a:.3f}")
    if worse:
        target = (artifacts_root / "latest").resolve().name
        return Promotion(False, f"not promoted: worse than latest ({target}) on {'; '.join(worse)} "
                                f"(allowed drop {regress_points} points); use --promote to force")
    return Promotion(True, "promoted (no dataset regressed)")


def publish(work_dir: Path, artifacts_root: Path, run_name: str, promote: bool = True) -> Path:
    """Rename the finished run into place; repoint `latest` atomically (symlink swap) if promoted."""
    final = artifacts_root / run_name
    if final.exists():
        if (artifacts_root / "latest").resolve() == final.resolve():
            raise FileExistsError(f"{final} is what latest points at; choose another --run-name")
        shutil.rmtree(final)
    os.replace(work_dir, final)
    if promote:
        tmp_link = artifacts_root / f".latest-{os.getpid()}"
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        tmp_link.symlink_to(run_name)
        os.replace(tmp_link, artifacts_root / "latest")
    return final


def discard(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
