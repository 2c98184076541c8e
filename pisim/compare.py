"""The measuring half of `make pi-sim`: frames, inference, MAC count, and the verdict.

One file, run by two Pythons: the host's x86 venv (frames, MACs, x86 reference outputs and
timing, the report) and the emulated arm64 venvs (inference with the *installed* `edge`
wheel). So the top level imports only the standard library and NumPy; everything else is
imported by the subcommand that needs it. Run as a script (never `-m`), so that sys.path[0]
is pisim/ and `import edge` finds the installed package, not the checkout.

Subcommands:
  frames   decode N frames of a video on the host into frames.npz + PNGs (the replay input)
  infer    raw int8 outputs (heat and box maps) for frames.npz with one runtime; NPZ + JSON facts
  macs     multiply-accumulates per invoke at a given input size, counted from the .tflite
  config   a daemon config that replays the PNGs with the events going to a file
  report   compare everything, print the table, write report.json; exit 1 on any mismatch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# The floors the issue asks for: int8 MACs per cycle per core (NEON, single thread).
PI_FLOORS = {
    "pi4": {"name": "Pi 4 (4x Cortex-A72 @ 1.8 GHz)", "macs_per_cycle": 16, "ghz": 1.8},
    "pi5": {"name": "Pi 5 (4x Cortex-A76 @ 2.4 GHz)", "macs_per_cycle": 32, "ghz": 2.4},
}
# MIDR part numbers in /proc/cpuinfo -> which board the emulated root pretends to be.
CPU_PARTS = {"0xd08": "pi4 (Cortex-A72)", "0xd0b": "pi5 (Cortex-A76)"}
AT_HWCAP = 16
HWCAP_ASIMDDP = 1 << 20  # arm64 dot-product instructions (Pi 5 has them, Pi 4 does not)
REF_PREFIX = "ref_"  # infer NPZ: "heat", "box" = the runtime's kernels; "ref_heat", "ref_box" = BUILTIN_REF
VERDICTS = ("identical", "bounded", "DIFFERS")  # best first: a run's verdict is its worst output's


class CompareError(RuntimeError):
    """Bad input to a subcommand; the message says which file and what to do."""


# ---------------------------------------------------------------- frames (host) ---


def decode_frames(video: Path, count: int, height: int, width: int) -> np.ndarray:
    """The first `count` frames as uint8 greyscale, exactly the size the model will see."""
    import av  # host only: the arm64 side reads the PNGs/NPZ made here

    if not video.is_file():
        raise CompareError(f"video {video} not found; set PISIM_VIDEO or fetch ../shared/datasets")
    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            grey = frame.to_ndarray(format="gray")
            if grey.shape != (height, width):
                raise CompareError(
                    f"{video}: frames are {grey.shape[1]}x{grey.shape[0]}, expected {width}x{height}; "
                    "use the 320x240 highway clip or pass --width/--height"
                )
            frames.append(np.ascontiguousarray(grey, dtype=np.uint8))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise CompareError(f"{video} has only {len(frames)} frames, {count} requested")
    return np.stack(frames)


def cmd_frames(args: argparse.Namespace) -> int:
    from PIL import Image

    frames = decode_frames(Path(args.video), args.count, args.height, args.width)
    out = Path(args.out)
    png = out / "png"
    png.mkdir(parents=True, exist_ok=True)
    for old in png.glob("*.png"):
        old.unlink()
    for i, img in enumerate(frames):
        Image.fromarray(img, mode="L").save(png / f"frame_{i:04d}.png")
    np.savez(out / "frames.npz", frames=frames)
    print(f"{len(frames)} frames {args.width}x{args.height} -> {out / 'frames.npz'} and {png}/")
    return 0


# ------------------------------------------------------------- infer (any arch) ---


def runtime_facts() -> dict[str, Any]:
    """What this Python actually is: the report proves the run happened where it claims."""
    facts: dict[str, Any] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_file": np.__file__,
        "executable": sys.executable,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("CPU part"):
                part = line.split(":", 1)[1].strip()
                facts["cpu_part"] = CPU_PARTS.get(part, part)
                break
    except OSError:
        pass
    if facts["machine"] == "aarch64":
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        facts["hwcap_asimddp"] = bool(libc.getauxval(AT_HWCAP) & HWCAP_ASIMDDP)
    try:
        facts["os"] = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        ).get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return facts


def cmd_infer(args: argparse.Namespace) -> int:
    import edge
    from edge.manifest import OUTPUT_NAMES
    from edge.model import ScoreMapModel

    edge_file = str(Path(edge.__file__).resolve())
    if args.require_installed and "site-packages" not in edge_file:
        raise CompareError(
            f"edge was imported from {edge_file}, not from the installed wheel; "
            "run compare.py as a script from outside the checkout"
        )
    from edge.preprocess import scaled

    frames = np.load(args.frames)["frames"]
    model = ScoreMapModel.load(args.model, runtime=args.runtime, num_threads=1, precision="int8")
    mf = model.manifest
    # Exactly what the detector feeds the model at scale 1: the frame as is; the model pads
    # it (edge replication) up to the input multiple while writing its input tensor.
    inputs = [scaled(f, [1.0])[0].image for f in frames]
    model.set_input_size(*inputs[0].shape)
    raws = [model.invoke_raw(x) for x in inputs]
    outputs = {name: np.stack([getattr(r, name) for r in raws]) for name in OUTPUT_NAMES}
    ref, ref_error = None, None
    if args.ref_frames:
        try:
            ref = reference_kernel_outputs(model, inputs[: args.ref_frames], outputs["heat"].shape[1:3])
        except ValueError as exc:  # e.g. an op version the reference resolver does not register
            ref_error = str(exc).strip().splitlines()[0]
            print(f"{args.label}: reference kernels (BUILTIN_REF) cannot run this model: {ref_error}; "
                  "a difference from x86 will not be explainable", file=sys.stderr)
    facts = runtime_facts()
    facts.update(
        label=args.label,
        runtime=model.runtime,
        runtime_version=model.runtime_version,
        edge_file=edge_file,
        edge_version=getattr(edge, "__version__", "?"),
        frames=int(len(frames)),
        frame=list(inputs[0].shape),
        model_input=list(model.input_size or ()),
        outputs={name: {"dtype": str(arr.dtype), "shape": list(arr.shape),
                        "scale": float(model.spec.outputs[name].scale),
                        "zero_point": int(model.spec.outputs[name].zero_point)}
                 for name, arr in outputs.items()},
        threshold=float(mf.threshold),
        # The raw heat value the decoder compares peaks with (calibration applied backwards).
        heat_raw_threshold=float(model.raw_heat_threshold(mf.threshold)),
        reference_kernels_error=ref_error,
    )
    if args.time_runs and facts["machine"] == "x86_64":
        # Only the host's own timing is ever recorded: an emulated one measures qemu.
        for x in inputs[: min(5, len(inputs))]:
            model.invoke_raw(x)
        times = []
        for i in range(args.time_runs):
            t0 = time.perf_counter()
            model.invoke_raw(inputs[i % len(inputs)])
            times.append(time.perf_counter() - t0)
        facts["x86_invoke_ms_median"] = round(1e3 * float(np.median(times)), 3)
        facts["x86_invoke_ms_p90"] = round(1e3 * float(np.percentile(times, 90)), 3)
        facts["x86_cpu"] = _x86_cpu_name()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(outputs)
    if ref is not None:
        arrays.update({REF_PREFIX + name: arr for name, arr in ref.items()})
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(facts, indent=1))
    shapes = ", ".join(f"{n} {a.shape} {a.dtype}" for n, a in outputs.items())
    print(f"{args.label}: {facts['machine']} python {facts['python']} {model.runtime} "
          f"{model.runtime_version} numpy {np.__version__}: {shapes}")
    return 0


def load_outputs(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """An `infer` NPZ: the outputs by name, and the reference-kernel outputs (None if not run)."""
    with np.load(path) as arrays:
        outs = {k: arrays[k] for k in arrays.files if not k.startswith(REF_PREFIX)}
        ref = {k[len(REF_PREFIX):]: arrays[k] for k in arrays.files if k.startswith(REF_PREFIX)}
    return outs, ref or None


def padded_input(image: np.ndarray, size: tuple[int, int], lut: np.ndarray) -> np.ndarray:
    """The whole input tensor edge.model writes for `image`: quantised through `lut`, the last
    row and column replicated into the bottom/right padding (as `ScoreMapModel._write_input`)."""
    h, w = image.shape
    grown = np.pad(image, ((0, size[0] - h), (0, size[1] - w)), mode="edge")
    return np.take(lut, grown)[None, :, :, None]


def reference_kernel_outputs(model: Any, inputs: list[np.ndarray], cells: tuple[int, int]) -> dict[str, np.ndarray]:
    """The same invokes on TFLite's portable reference kernels (BUILTIN_REF) of the same
    runtime: plain C++ integer arithmetic with no per-architecture code path. If these agree
    across x86 and arm64 while the optimized kernels do not, the difference is in the
    runtime's architecture-specific kernels, not in our preprocessing or the model file.
    Both outputs, at the padded size the detector invokes at, with the same padding, cut to
    the `cells` (rows, columns) that `invoke_raw` keeps for these pictures (its own outputs'
    shape: the cells of the padding are dropped there)."""
    from edge.model import input_lut
    from edge.runtimes import RUNTIMES

    cls = RUNTIMES[model.runtime].interpreter_class()
    resolver = sys.modules[cls.__module__].OpResolverType.BUILTIN_REF
    interp = cls(model_path=str(model.manifest.model_path(model.precision)), num_threads=1,
                 experimental_op_resolver_type=resolver)
    det_in = interp.get_input_details()[0]
    size = model.manifest.padded_size(*inputs[0].shape)
    interp.resize_tensor_input(det_in["index"], [1, *size, 1], strict=False)
    interp.allocate_tensors()
    lut = input_lut(model.spec.input)
    # Same file, so the same tensor indices as the model's own interpreter.
    index = {name: model.output_index(name) for name in model.spec.outputs}
    outs: dict[str, list[np.ndarray]] = {name: [] for name in index}
    for x in inputs:
        interp.set_tensor(det_in["index"], padded_input(x, size, lut))
        interp.invoke()
        for name, i in index.items():
            out = interp.get_tensor(i)[0]
            # As ScoreMapModel.invoke_raw: heat (H', W'), box (H', W', 4).
            out = out[: cells[0], : cells[1]]
            outs[name].append((out[:, :, 0] if out.shape[-1] == 1 else out).copy())
    return {name: np.stack(v) for name, v in outs.items()}


def _x86_cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ------------------------------------------------------------------ macs (host) ---


def _interpreter_without_delegates(model_path: Path) -> Any:
    """Shapes of intermediate tensors are only recomputed on resize when no delegate
    (XNNPACK) swallowed the graph, so count on the plain builtin resolver."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    return Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )


def count_macs(model_path: Path, height: int, width: int) -> dict[str, Any]:
    """MACs per invoke: conv out_h*out_w*out_c*kh*kw*in_c; depthwise out_h*out_w*out_c*kh*kw;
    fully connected rows*out*in. The same rule as the trainer's Keras count (manifest
    `macs.macs`), so the two must agree. Everything else the detector's graph holds is not a
    multiply-accumulate and is left out: the feature pyramid's ADDs, its upsampling
    (RESIZE_NEAREST_NEIGHBOR, or TILE/RESHAPE for a Keras repeat, with scalar shape MULs),
    pooling and activations."""
    interp = _interpreter_without_delegates(model_path)
    inp = interp.get_input_details()[0]
    shape = list(inp["shape"])
    shape[1], shape[2] = height, width
    interp.resize_tensor_input(inp["index"], shape, strict=False)
    interp.allocate_tensors()
    # One invoke: a tensor whose shape is computed in the graph (the size a runtime-sized
    # RESIZE_NEAREST_NEIGHBOR upsamples to) is dynamic and only gets its shape when run.
    interp.set_tensor(inp["index"], np.zeros(shape, dtype=inp["dtype"]))
    interp.invoke()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    per_op: dict[str, int] = {}
    layers = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only public-ish graph view
        name = op["op_name"]
        ins = [tensors[i]["shape"].tolist() if i >= 0 else None for i in op["inputs"]]
        out = tensors[op["outputs"][0]]["shape"].tolist()
        if name == "CONV_2D":
            _, oh, ow, oc = out
            _, kh, kw, ic = ins[1]
            macs = oh * ow * oc * kh * kw * ic
        elif name == "DEPTHWISE_CONV_2D":
            _, oh, ow, oc = out
            _, kh, kw, _ = ins[1]
            macs = oh * ow * oc * kh * kw
        elif name == "FULLY_CONNECTED":
            n_out, n_in = ins[1]
            rows = int(np.prod(out[:-1])) if len(out) > 1 else 1
            macs = rows * n_out * n_in
        else:
            continue
        per_op[name] = per_op.get(name, 0) + macs
        layers.append({"op": name, "output": out, "macs": macs})
    total = sum(per_op.values())
    return {"input": [height, width], "macs": total, "by_op": per_op, "layers": layers}


def pi_floors_ms(macs: int) -> dict[str, float]:
    return {
        key: round(1e3 * macs / (spec["macs_per_cycle"] * spec["ghz"] * 1e9), 3)
        for key, spec in PI_FLOORS.items()
    }


def cmd_macs(args: argparse.Namespace) -> int:
    from edge.manifest import load_manifest

    mf = load_manifest(args.model)
    # The size the detector really invokes at: the frame padded up to the input multiple.
    h, w = mf.padded_size(args.height, args.width)
    counted = count_macs(mf.model_path("int8"), h, w)
    counted["frame"] = [args.height, args.width]
    counted["floors_ms"] = pi_floors_ms(counted["macs"])
    counted["manifest_macs"] = mf.extra.get("macs")
    counted["matches_manifest"] = manifest_macs_agree(counted, counted["manifest_macs"])
    Path(args.out).write_text(json.dumps(counted, indent=1))
    print(f"MACs for a {args.width}x{args.height} frame (model input {w}x{h}): {counted['macs']:,} {counted['by_op']}"
          + _manifest_macs_note(counted))
    return 0


def manifest_macs_agree(counted: dict[str, Any], manifest_macs: Any) -> bool | None:
    """Does the .tflite count equal the trainer's Keras count? None when the manifest has no
    count for this padded size (another frame size), so nothing can be compared."""
    if not isinstance(manifest_macs, dict) or not isinstance(manifest_macs.get("macs"), int):
        return None
    if list(manifest_macs.get("padded_input", [])) != list(counted["input"]):
        return None
    return manifest_macs["macs"] == counted["macs"]


def _manifest_macs_note(m: dict[str, Any]) -> str:
    agree, mm = m.get("matches_manifest"), m.get("manifest_macs")
    if agree is None:
        return ""
    return f"; manifest says {mm['macs']:,} ({'same' if agree else 'DIFFERENT: the counters disagree'})"


# ---------------------------------------------------------------- config (host) ---


def cmd_config(args: argparse.Namespace) -> int:
    """The deployed daemon, fed from PNGs instead of the camera, publishing only to a file."""
    text = f"""# written by pisim/compare.py config: replay {args.frames_dir}
[model]
path = "{args.model}"
runtime = "{args.runtime}"
num_threads = 1
precision = "int8"
# Off: the preflight has its own column; the replay tests the pipeline on its own.
preflight = false

[source]
kind = "images"
path = "{args.frames_dir}"
width = {args.width}
height = {args.height}
loop = false
pace = false

[processing]
width = {args.width}
height = {args.height}

[events]
path = "{args.events}"

[mqtt]
enabled = false

[http]
enabled = false

[capture]
enabled = false
"""
    Path(args.out).write_text(text)
    return 0


# ---------------------------------------------------------------- report (host) ---


def _events(path: Path) -> list[dict[str, Any]]:
    """Events minus wall-clock fields (time, dwell_s), which differ by construction."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            ev = json.loads(line)
            rows.append({k: v for k, v in ev.items() if k not in ("time", "dwell_s")})
    return rows


def _diff(a: np.ndarray | None, b: np.ndarray | None) -> dict[str, Any]:
    if a is None or b is None:
        return {"identical": False, "reason": "output missing" + (" here" if a is None else " in the reference")}
    if a.shape != b.shape:
        return {"identical": False, "reason": f"shape {a.shape} vs {b.shape}"}
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    differing = int((d > 0).sum())
    return {
        "identical": bool(np.array_equal(a, b)) and a.dtype == b.dtype,
        "max_abs_lsb": int(d.max()) if d.size else 0,
        "cells_differing": differing,
        "cells": int(d.size),
        "fraction_differing": round(differing / max(1, d.size), 6),
    }


def _diff_all(outs: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """_diff per output name (heat, box), over the names either side has."""
    return {name: _diff(outs.get(name), other.get(name)) for name in dict.fromkeys([*outs, *other])}


def _flips(a: np.ndarray, b: np.ndarray, facts: dict[str, Any]) -> int:
    """Heat cells that are a detection candidate on one side only (a local peak at or above
    the raw threshold, exactly the decoder's test): what a difference would change."""
    from edge.decode import local_peaks

    cut = facts["heat_raw_threshold"]
    return int(sum((local_peaks(fa, cut) != local_peaks(fb, cut)).sum() for fa, fb in zip(a, b)))


def judge_output(name: str, out: np.ndarray | None, x86_out: np.ndarray | None, refs_agree: bool,
                 facts: dict[str, Any], max_lsb: int) -> dict[str, Any]:
    """One output: identical; or bounded (explained: the reference kernels agree bit for bit,
    so the runtime's arch-specific optimized kernels are the cause, and within max_lsb); or DIFFERS."""
    v = _diff(out, x86_out)
    if "cells" in v and name == "heat":
        v["decision_flips"] = _flips(out, x86_out, facts)
    if v["identical"]:
        v["verdict"] = "identical"
    elif refs_agree and v.get("max_abs_lsb", max_lsb + 1) <= max_lsb:
        scale = facts["outputs"][name]["scale"]
        v["verdict"] = "bounded"
        v["explanation"] = (
            f"{name}: {facts['runtime']} {facts['runtime_version']}: on TFLite's portable reference kernels arm64 "
            "and x86 agree bit for bit; the optimized int8 kernels this runtime ships per architecture round "
            f"differently (<= {v['max_abs_lsb']} LSB = {v['max_abs_lsb'] * scale:.4f} in {name} units)"
        )
    else:
        v["verdict"] = "DIFFERS"
    return v


def judge_outputs(outs: dict[str, np.ndarray], x86_outs: dict[str, np.ndarray],
                  ref: dict[str, np.ndarray] | None, x86_ref: dict[str, np.ndarray] | None,
                  facts: dict[str, Any], max_lsb: int) -> dict[str, Any]:
    """Every output judged on its own (judge_output); the run's verdict is the worst of them.
    A difference is explained only if the reference kernels agree on *every* output (they run
    one graph: a disagreement anywhere means more than the optimized kernels differs).
    An output either side lacks DIFFERS."""
    from edge.manifest import OUTPUT_NAMES

    names = list(dict.fromkeys([*OUTPUT_NAMES, *outs, *x86_outs]))
    ref_diffs = _diff_all(ref, x86_ref) if ref is not None and x86_ref is not None else None
    refs_agree = bool(ref_diffs) and set(OUTPUT_NAMES) <= set(ref_diffs) and all(
        d["identical"] for d in ref_diffs.values())
    per = {name: judge_output(name, outs.get(name), x86_outs.get(name), refs_agree, facts, max_lsb)
           for name in names}
    verdict = max((v["verdict"] for v in per.values()), key=VERDICTS.index)
    return {
        "verdict": verdict,
        "identical": verdict == "identical",
        "decision_flips": per.get("heat", {}).get("decision_flips"),
        "reference_kernels": ref_diffs,
        "outputs": per,
    }


def build_report(work: Path, targets: list[str], max_lsb: int = 2) -> dict[str, Any]:
    res = work / "results"
    macs = json.loads((work / "macs.json").read_text())
    x86: dict[str, dict[str, Any]] = {}
    for rt in ("tflite-runtime", "litert"):
        meta = res / f"x86-{rt}.json"
        if meta.is_file():
            out, ref = load_outputs(res / f"x86-{rt}.npz")
            x86[rt] = {"facts": json.loads(meta.read_text()), "out": out, "ref": ref}
    if not x86:
        raise CompareError(f"no x86 reference in {res}; run pisim/run.sh from the start")
    rows = []
    for target in targets:
        label, _, expected_runtime = target.partition(":")
        row: dict[str, Any] = {"target": label, "expected_runtime": expected_runtime or None}
        meta = res / f"{label}.json"
        if not meta.is_file():
            row.update(ok=False, error=f"{meta} missing: the emulated inference did not finish (see {work}/logs)")
            rows.append(row)
            continue
        facts = json.loads(meta.read_text())
        out, out_ref = load_outputs(res / f"{label}.npz")
        row["facts"] = facts
        same = x86.get(facts["runtime"])
        if same is None:
            row["vs_x86_same_runtime"] = {"identical": False, "verdict": "DIFFERS",
                                          "reason": f"no x86 run of {facts['runtime']}"}
        else:
            row["vs_x86_same_runtime"] = judge_outputs(out, same["out"], out_ref, same["ref"], facts, max_lsb)
        row["vs_x86_other_runtimes"] = {
            rt: _diff_all(out, v["out"]) for rt, v in x86.items() if rt != facts["runtime"]
        }
        pf_path = res / f"{label}-preflight.json"
        row["preflight"] = json.loads(pf_path.read_text()) if pf_path.is_file() else {"ok": False}
        verdict = row["vs_x86_same_runtime"]["verdict"]
        rc_file = res / f"{label}-replay.rc"
        if rc_file.is_file():
            rc = int(rc_file.read_text().strip())
            want = _events(res / f"x86-{facts['runtime']}-events.jsonl")
            got = _events(res / f"{label}-events.jsonl")
            exact = rc == 0 and got == want
            decisions = rc == 0 and [(e["event"], e["zone"], e["frame_id"]) for e in got] == [
                (e["event"], e["zone"], e["frame_id"]) for e in want]
            row["replay"] = {"rc": rc, "events": len(got), "x86_events": len(want), "identical": exact,
                             "same_decisions": decisions,
                             "ok": exact if verdict == "identical" else decisions}
        row["runtime_as_deployed"] = not expected_runtime or facts["runtime"] == expected_runtime
        row["ok"] = bool(
            row["runtime_as_deployed"]
            and facts["machine"] == "aarch64"
            and verdict in ("identical", "bounded")
            and row["preflight"].get("ok")
            and row.get("replay", {"ok": True})["ok"]
        )
        rows.append(row)
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "frames": int(np.load(work / "frames.npz")["frames"].shape[0]),
        "max_lsb_bound": max_lsb,
        "macs": macs,
        "x86": {rt: v["facts"] for rt, v in x86.items()},
        "x86_runtimes_agree": _diff_all(*[v["out"] for v in x86.values()]) if len(x86) == 2 else None,
        "targets": rows,
        "ok": all(r["ok"] for r in rows),
        "note": "Timings are the x86 host's; emulated runs are never timed (qemu is not a Pi). "
                "Pi floors = MACs / (MACs per cycle per core x clock), one thread, compute only.",
    }


def _output_text(name: str, v: dict[str, Any]) -> str:
    if v["verdict"] == "identical":
        return f"{name} identical"
    if "cells" not in v:
        return f"{name} DIFFERS ({v.get('reason')})"
    flips = f", {v['decision_flips']} flips" if "decision_flips" in v else ""
    return f"{name} {v['verdict']}: <={v['max_abs_lsb']} LSB in {v['fraction_differing']:.1%}{flips}"


def _verdict_text(same: dict[str, Any]) -> str:
    """One cell of the table: 'identical', or each output's verdict (heat and box)."""
    if same["verdict"] == "identical":
        return "identical"
    if "outputs" not in same:
        return f"DIFFERS ({same.get('reason')})"
    return "; ".join(_output_text(name, v) for name, v in same["outputs"].items())


def _agree_text(diffs: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name, d in diffs.items():
        if d["identical"]:
            parts.append(f"{name} identical")
        elif "cells" in d:
            parts.append(f"{name} differs by <= {d['max_abs_lsb']} LSB in {d['cells_differing']}/{d['cells']} cells")
        else:
            parts.append(f"{name} differs ({d.get('reason')})")
    return "; ".join(parts)


def format_table(rep: dict[str, Any]) -> str:
    m = rep["macs"]
    floors = m["floors_ms"]
    head = ["target", "python", "runtime", "numpy", "preflight (golden max|d|)",
            "int8 == x86", "replay events", "x86 ms (host)"]
    lines = []
    for r in rep["targets"]:
        f = r.get("facts")
        if not f:
            lines.append([r["target"], "-", "-", "-", "MISSING", "-", "-", "-"])
            continue
        pf = r["preflight"]
        pf_txt = f"ok ({pf['golden']['max_abs']:g} LSB)" if pf.get("ok") else "FAILED"
        same_txt = _verdict_text(r["vs_x86_same_runtime"])
        rp = r.get("replay")
        if rp is None:
            rp_txt = "-"
        elif rp["identical"]:
            rp_txt = f"identical ({rp['events']})"
        elif rp["ok"]:
            rp_txt = f"same decisions ({rp['events']})"
        else:
            rp_txt = f"DIFFER rc={rp['rc']} {rp['events']} vs {rp['x86_events']}"
        x86ms = rep["x86"].get(f["runtime"], {}).get("x86_invoke_ms_median")
        rt_txt = f"{f['runtime']} {f['runtime_version']}"
        if not r.get("runtime_as_deployed", True):
            rt_txt += f" (EXPECTED {r['expected_runtime']})"
        lines.append([r["target"], f["python"], rt_txt, f["numpy"], pf_txt,
                      same_txt, rp_txt, "-" if x86ms is None else f"{x86ms:.2f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])] + [fmt.format(*map(str, ln)) for ln in lines]
    cpu = next(iter(rep["x86"].values())).get("x86_cpu", "x86")
    out += [
        "",
        f"model: {m['macs']:,} MACs per invoke (counted from the .tflite) for a {m['frame'][1]}x{m['frame'][0]} "
        f"frame, model input {m['input'][1]}x{m['input'][0]}" + _manifest_macs_note(m),
        "compute floor, 1 thread, int8 NEON: "
        + "; ".join(f"{PI_FLOORS[k]['name']}: {v:.2f} ms" for k, v in floors.items())
        + " (MACs / (16 x 1.8 GHz) and / (32 x 2.4 GHz); real invokes are slower)",
        f"x86 ms: median invoke measured on this host ({cpu}), 1 thread, not a Pi timing; "
        "emulated runs are not timed.",
    ]
    agree = rep.get("x86_runtimes_agree")
    if agree is not None:
        same = all(d["identical"] for d in agree.values())
        out.append("x86 tflite-runtime vs litert: " + ("identical" if same else _agree_text(agree)
                   + " (different int8 kernels; each arm64 run is compared with its own runtime on x86)"))
    for r in rep["targets"]:
        for v in r.get("vs_x86_same_runtime", {}).get("outputs", {}).values():
            if v.get("explanation"):
                out.append(f"{r['target']}: bounded, explained: {v['explanation']}")
        ref_error = (r.get("facts") or {}).get("reference_kernels_error")
        if ref_error and r["vs_x86_same_runtime"]["verdict"] != "identical":
            out.append(f"{r['target']}: not explainable: the reference kernels could not run the model ({ref_error})")
        pf = r.get("preflight", {})
        if r.get("facts") and not pf.get("ok"):
            out.append(f"{r['target']}: preflight: {pf.get('error', 'no result').strip().splitlines()[-1]}")
    out.append("RESULT: " + ("PASS" if rep["ok"] else "FAIL"))
    return "\n".join(out)


def manifest_lsb_bound(model_dir: str) -> int:
    """The bound preflight applies to another runtime or CPU architecture (written by training):
    pi-sim explains a difference within the same bound, so the two cannot disagree."""
    from edge.manifest import load_manifest

    return int(load_manifest(model_dir).extra["golden"]["tolerance"]["otherwise"]["int8_max_abs_lsb"])


def cmd_report(args: argparse.Namespace) -> int:
    work = Path(args.work)
    max_lsb = args.max_lsb if args.max_lsb is not None else manifest_lsb_bound(args.model)
    rep = build_report(work, args.targets.split(","), max_lsb)
    Path(args.out).write_text(json.dumps(rep, indent=1))
    print(format_table(rep))
    print(f"report: {args.out}")
    return 0 if rep["ok"] else 1


# ----------------------------------------------------------------------- main ---


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="pi-sim measurements (see module docstring)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frames")
    f.add_argument("--video", required=True)
    f.add_argument("--count", type=int, default=24)
    f.add_argument("--width", type=int, default=320)
    f.add_argument("--height", type=int, default=240)
    f.add_argument("--out", required=True)
    i = sub.add_parser("infer")
    i.add_argument("--model", required=True)
    i.add_argument("--runtime", default="auto")
    i.add_argument("--frames", required=True)
    i.add_argument("--label", required=True)
    i.add_argument("--out", required=True, help="results/<label> (.npz and .json are written)")
    i.add_argument("--time-runs", type=int, default=0, help="x86 only: timed invokes")
    i.add_argument("--require-installed", action="store_true")
    i.add_argument("--ref-frames", type=int, default=3, help="frames also run on BUILTIN_REF kernels (0: none)")
    m = sub.add_parser("macs")
    m.add_argument("--model", required=True)
    m.add_argument("--width", type=int, default=320)
    m.add_argument("--height", type=int, default=240)
    m.add_argument("--out", required=True)
    c = sub.add_parser("config")
    c.add_argument("--model", required=True)
    c.add_argument("--runtime", default="auto")
    c.add_argument("--frames-dir", required=True)
    c.add_argument("--events", required=True)
    c.add_argument("--width", type=int, default=320)
    c.add_argument("--height", type=int, default=240)
    c.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--targets", required=True, help="comma-separated label[:expected runtime], e.g. bookworm-pi4:tflite-runtime")
    r.add_argument("--out", required=True)
    r.add_argument("--model", required=True, help="model directory (its manifest's golden tolerance is the bound)")
    r.add_argument("--max-lsb", type=int, default=None,
                   help="bound for an explained (reference kernels agree) int8 difference; default: the manifest's")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"frames": cmd_frames, "infer": cmd_infer, "macs": cmd_macs,
               "config": cmd_config, "report": cmd_report}[args.cmd]
    try:
        return handler(args)
    except CompareError as exc:
        print(f"pi-sim: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
