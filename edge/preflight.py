"""Check, before the first camera frame, that this Pi runs the model the workstation built.

sha256 of the file, input/output dtype, shape and quantisation against the manifest, and
the golden frames reproduced within tolerance. Each failure names the manifest field.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np

from edge.manifest import OUTPUT_NAMES, Manifest, load_manifest, sha256_file
from edge.model import ScoreMapModel

log = logging.getLogger(__name__)


class PreflightError(RuntimeError):
    """The model on this machine is not the model described by its manifest."""


def check_file(mf: Manifest, precision: str) -> None:
    """Before the interpreter touches it: a truncated file can crash a runtime outright."""
    if precision not in mf.models:
        raise PreflightError(f"models.{precision}: not in the manifest (has {', '.join(mf.models)})")
    spec = mf.models[precision]
    path = mf.directory / spec.file
    if not path.is_file():
        raise PreflightError(f"models.{precision}.file: {path} is missing")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise PreflightError(
            f"models.{precision}.sha256: {path} has sha256 {digest[:16]}..., manifest says "
            f"{spec.sha256[:16]}...; the file is corrupt or belongs to another run: redeploy the model"
        )


def _check_tensors(model: ScoreMapModel) -> None:
    interp = model.interpreter
    by_index = {d["index"]: d for d in interp.get_output_details()}
    pairs = [("input", interp.get_input_details()[0], model.spec.input)]
    pairs += [(f"outputs.{n}", by_index[model.output_index(n)], model.spec.outputs[n]) for n in OUTPUT_NAMES]
    for key, det, want in pairs:
        got_dtype = np.dtype(det["dtype"]).name
        field = f"models.{model.precision}.{key}"
        if got_dtype != want.dtype:
            raise PreflightError(f"{field}.dtype: model has {got_dtype}, manifest says {want.dtype}")
        scale, zp = det["quantization"]
        if want.dtype != "float32" and (abs(scale - want.scale) > 1e-6 * max(1.0, abs(want.scale)) or zp != want.zero_point):
            raise PreflightError(
                f"{field}.scale/zero_point: model has ({scale}, {zp}), manifest says ({want.scale}, {want.zero_point})"
            )
        got_rank, want_rank = len(det["shape"]), len(want.shape)
        if got_rank != want_rank or det["shape"][-1] != want.shape[-1]:
            raise PreflightError(f"{field}.shape: model has {list(det['shape'])}, manifest says {want.shape}")


def golden_key(precision: str, runtime: str | None, i: int, output: str) -> str:
    """Key of one stored golden output in golden.npz; runtime None = the reference runtime's."""
    return f"{precision}_{i}_{output}" if runtime is None else f"{precision}_{runtime}_{i}_{output}"


def _golden_runtime(data, precision: str, runtime: str, same_machine: bool) -> tuple[str | None, bool]:
    """This runtime's stored outputs if the workstation had it, else the reference.

    Exactness is demanded only on the same runtime and CPU architecture: int8 kernels for
    arm64 and x86 may round requantisation ties differently.
    """
    if golden_key(precision, runtime, 0, OUTPUT_NAMES[0]) in data:
        return runtime, same_machine
    return None, False


def _within(worst: dict, precision: str, exact: bool, tol: dict) -> bool:
    if exact:
        return worst["max_abs"] == 0.0
    if precision == "float":
        return worst["max_abs"] <= tol.get("float_max_abs", 1e-3)
    return worst["max_abs"] <= tol.get("int8_max_abs_lsb", 2) and worst["fraction_differing"] <= tol.get(
        "int8_max_fraction_differing", 0.35)


def _check_golden(model: ScoreMapModel) -> dict:
    mf = model.manifest
    golden = mf.extra.get("golden")
    if not golden:
        raise PreflightError("golden: manifest has no golden frames; retrain with a current `make train`")
    path = mf.directory / golden["file"]
    if not path.is_file():
        raise PreflightError(f"golden.file: {path} is missing")
    if sha256_file(path) != golden["sha256"]:
        raise PreflightError(f"golden.sha256: {path} does not match the manifest")
    tol = golden.get("tolerance", {}).get("otherwise", {})
    same_machine = golden.get("machine") == platform.machine()
    worst = {"max_abs": 0.0, "fraction_differing": 0.0, "frames": 0, "exact_runtime_match": True}
    differing = cells = 0
    with np.load(path, allow_pickle=False) as data:
        rt, exact = _golden_runtime(data, model.precision, model.runtime, same_machine)
        worst["exact_runtime_match"] = exact
        for i, entry in enumerate(golden["frames"]):
            raw = model.invoke_raw(data[entry["name"]])
            for name in OUTPUT_NAMES:
                key = golden_key(model.precision, rt, i, name)
                if key not in data:
                    raise PreflightError(f"golden: no {model.precision} {name} output for {entry['name']}")
                want, got = data[key], getattr(raw, name)
                if got.shape != want.shape:
                    raise PreflightError(f"golden.frames[{i}]: {name} shape {got.shape}, expected {want.shape}")
                diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
                worst["max_abs"] = max(worst["max_abs"], float(diff.max()))
                differing += int((diff > 0).sum())
                cells += diff.size
            worst["frames"] += 1
    worst["fraction_differing"] = differing / max(1, cells)  # pooled over frames and outputs
    if not _within(worst, model.precision, bool(worst["exact_runtime_match"]), tol):
        how = ("must match exactly (the workstation ran this runtime on this CPU architecture)"
               if worst["exact_runtime_match"]
               else f"tolerance {tol}")
        raise PreflightError(
            f"golden: outputs differ from the workstation's (max |diff| {worst['max_abs']}, "
            f"{worst['fraction_differing']:.2%} of cells; {how}) with runtime {model.runtime} "
            f"{model.runtime_version}; try another runtime (model.runtime) or reinstall it"
        )
    return worst


def run_preflight(model: ScoreMapModel) -> dict:
    """All checks; restores the interpreter's input size afterwards. Raises PreflightError."""
    size = model.input_size
    check_file(model.manifest, model.precision)
    _check_tensors(model)
    golden = _check_golden(model)
    if size is not None:
        model.set_input_size(*size)
    report = {
        "ok": True,
        "model": str(model.manifest.directory / model.spec.file),
        "sha256": model.spec.sha256,
        "precision": model.precision,
        "runtime": model.runtime,
        "runtime_version": model.runtime_version,
        "golden": golden,
    }
    log.info("preflight ok: %s", report)
    return report


def preflight_dir(model_dir: str | Path, runtime: str = "auto", precision: str = "int8", num_threads: int = 1) -> dict:
    """Load + check; ManifestError and PreflightError both mean: do not run this model."""
    check_file(load_manifest(model_dir), precision)
    try:
        model = ScoreMapModel.load(model_dir, runtime=runtime, num_threads=num_threads, precision=precision)
    except ValueError as exc:  # e.g. the runtime cannot parse the file at all
        raise PreflightError(f"models.{precision}.file: cannot load: {exc}") from exc
    return run_preflight(model)
