"""The parts of `make pi-sim` that decide PASS/FAIL, on real inputs, without emulation.

The emulated run itself is `make pi-sim` (minutes, builds arm64 roots); these check that
its measuring stick is right: the MAC count (against the manifest's), the verdict rules on
both outputs (heat and box), the reference kernels' padded input, the frames, and that the
daemon config it writes is one the daemon accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pisim import compare

# As `infer` writes them: raw heat -20 is the calibrated threshold (logit 0 at scale 0.05).
FACTS = {"threshold": 0.5, "heat_raw_threshold": -20.0,
         "outputs": {"heat": {"scale": 0.05, "zero_point": -20}, "box": {"scale": 0.01, "zero_point": 0}},
         "runtime": "tflite-runtime", "runtime_version": "2.14.0"}
FRAME = (240, 320)  # the highway clip's frames; the detector pads them to 256x320



def full_int8(model, shape: tuple[int, ...], seed: int) -> bytes:
    """A full-int8 TFLite flatbuffer of a small Keras model, calibrated on random inputs."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(8):
            yield [rng.random(shape, dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()

@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv3x3(1->4) -> depthwise3x3(4) -> conv1x1(4->2) -> dense(2*4*8 -> 3), int8, 10x12 input."""
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((10, 12, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3)(inp)  # 8x10x4
    x = tf.keras.layers.DepthwiseConv2D(3)(x)  # 6x8x4
    x = tf.keras.layers.Conv2D(2, 1)(x)  # 6x8x2
    x = tf.keras.layers.MaxPooling2D(2)(x)  # 3x4x2
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(3)(x)
    model = tf.keras.Model(inp, out)
    path = tmp_path_factory.mktemp("tflite") / "small_int8.tflite"
    path.write_bytes(full_int8(model, (1, 10, 12, 1), seed=0))
    return path


def _tiny_detector_macs(h: int, w: int) -> int:
    """Hand count for `tiny_detector` at an h x w input (multiples of 16)."""
    return ((h // 2) * (w // 2) * 4 * 9 + (h // 4) * (w // 4) * (4 * 9 + 8 * 4)
            + (h // 8) * (w // 8) * (8 * 9 + 8 * 8 + 1 * 8 + 4 * 8) + (h // 16) * (w // 16) * (8 * 9 + 8 * 8))


def _detector_dir(folder: Path, keras_upsampling: bool = False) -> Path:
    """A model directory in the detector's format: any input size, stride 8, a heat output
    (1 channel) and a box output (4), an upsampled coarser level added in (ADD and
    RESIZE_NEAREST_NEIGHBOR, or TILE/RESHAPE for Keras' UpSampling2D: no MACs), int8, with
    its manifest. Untrained: mechanics only."""
    tf = pytest.importorskip("tensorflow")
    from edge.manifest import Calibration, Manifest, ModelFile, TensorSpec, sha256_file

    tf.keras.utils.set_random_seed(3)  # the same untrained weights every run

    class UpNearest(tf.keras.layers.Layer):
        def call(self, x):
            s = tf.shape(x)
            return tf.image.resize(x, [s[1] * 2, s[2] * 2], method="nearest")

    up = tf.keras.layers.UpSampling2D(2) if keras_upsampling else UpNearest()

    layers = tf.keras.layers
    inp = tf.keras.Input((None, None, 1), batch_size=1)
    x = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)  # /2
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # /4
    x = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # /8
    c8 = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(c8)  # /16
    c16 = layers.Conv2D(8, 1, activation="relu")(x)
    p = layers.Add()([c8, up(c16)])
    model = tf.keras.Model(inp, [layers.Conv2D(1, 1)(p), layers.Conv2D(4, 1)(p)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_int8.tflite"
    path.write_bytes(full_int8(model, (1, 64, 96, 1), seed=1))

    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))

    def spec(d: dict) -> TensorSpec:
        scale, zp = d["quantization"]
        return TensorSpec(np.dtype(d["dtype"]).name, [int(v) for v in d["shape"]], float(scale), int(zp))

    outs = {{1: "heat", 4: "box"}[int(d["shape"][-1])]: spec(d) for d in interp.get_output_details()}
    mf = Manifest(
        directory=folder, name="tiny",
        models={"int8": ModelFile(path.name, sha256_file(path), path.stat().st_size,
                                  spec(interp.get_input_details()[0]), outs)},
        stride=8, input_multiple=32, calibration=Calibration(1.0, 0.0), threshold=0.5, nms_iou=0.45,
        classes=["car"],
        extra={"macs": {"input": list(FRAME), "padded_input": [256, 320], "macs": _tiny_detector_macs(256, 320)}},
    )
    mf.write()
    return folder


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _detector_dir(tmp_path_factory.mktemp("tiny_detector"))


def _frames(n: int) -> np.ndarray:
    """Frames whose bottom row and right column differ sharply from zero padding."""
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (n, *FRAME), dtype=np.uint8)
    frames[:, -3:, :] = 255
    frames[:, :, -3:] = 0
    return frames


def test_macs_count_the_detector_graph_as_the_manifest_does(tiny_detector: Path, tmp_path: Path) -> None:
    """Conv and depthwise layers at the padded size; the ADD and the upsampling have none."""
    out = tmp_path / "macs.json"
    assert compare.main(["macs", "--model", str(tiny_detector), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["frame"] == [240, 320] and got["input"] == [256, 320]
    assert got["macs"] == _tiny_detector_macs(256, 320) and got["matches_manifest"] is True
    assert set(got["by_op"]) == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert compare.manifest_macs_agree(got, {"padded_input": [256, 320], "macs": got["macs"] + 1}) is False
    assert compare.manifest_macs_agree(got, {"padded_input": [480, 640], "macs": 1}) is None


def test_reference_kernels_get_the_model_s_own_padded_input(tiny_detector: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The BUILTIN_REF run sees exactly the tensor the detector writes (edge-replicated to
    256x320), so both its outputs agree with the optimized kernels' to within rounding."""
    from edge.model import ScoreMapModel, input_lut

    model = ScoreMapModel.load(tiny_detector, runtime="litert")
    frames = _frames(2)
    raws = [model.invoke_raw(f) for f in frames]
    written = model.interpreter.get_tensor(model.interpreter.get_input_details()[0]["index"])
    assert model.input_size == (256, 320)
    assert np.array_equal(compare.padded_input(frames[-1], (256, 320), input_lut(model.spec.input)), written)
    got = {name: np.stack([getattr(r, name) for r in raws]) for name in ("heat", "box")}
    cells = got["heat"].shape[1:3]
    assert cells == (30, 40)  # invoke_raw keeps the picture's cells, not the padding's
    ref = compare.reference_kernel_outputs(model, list(frames), cells)
    assert ref["heat"].shape == (2, 30, 40) and ref["box"].shape == (2, 30, 40, 4)
    for name in got:  # int8 rounding of an untrained model's tiny values: a few LSB
        assert compare._diff(ref[name], got[name])["max_abs_lsb"] <= 4, name

    def zero_padded(image: np.ndarray, size: tuple[int, int], lut: np.ndarray) -> np.ndarray:
        out = np.full((1, *size, 1), lut[0])
        out[0, : image.shape[0], : image.shape[1], 0] = lut[image]
        return out

    monkeypatch.setattr(compare, "padded_input", zero_padded)
    wrong = compare.reference_kernel_outputs(model, list(frames), cells)
    # The check can tell: zero padding lands well beyond the rounding bound above (the tiny
    # model is untrained, so how far varies with its initial weights: 14 to 30+ LSB seen).
    assert compare._diff(wrong["heat"], got["heat"])["max_abs_lsb"] > 8


def test_infer_and_report_judge_both_outputs(tiny_detector: Path, tmp_path: Path) -> None:
    """infer writes heat and box (and their reference-kernel runs); the report judges each:
    a box map 1 LSB off with agreeing reference kernels is bounded, with the heat identical."""
    work = tmp_path / "work"
    res = work / "results"
    np.savez(work.mkdir() or work / "frames.npz", frames=_frames(3))
    assert compare.main(["macs", "--model", str(tiny_detector), "--out", str(work / "macs.json")]) == 0
    assert compare.main(["infer", "--model", str(tiny_detector), "--runtime", "litert", "--frames",
                         str(work / "frames.npz"), "--label", "x86-litert", "--out", str(res / "x86-litert"),
                         "--ref-frames", "2"]) == 0
    facts = json.loads((res / "x86-litert.json").read_text())
    assert facts["model_input"] == [256, 320] and facts["frame"] == [240, 320]
    assert facts["outputs"]["heat"]["shape"] == [3, 30, 40] and facts["outputs"]["box"]["shape"] == [3, 30, 40, 4]
    assert facts["reference_kernels_error"] is None
    outs, ref = compare.load_outputs(res / "x86-litert.npz")
    assert set(outs) == {"heat", "box"} and ref is not None and ref["box"].shape == (2, 30, 40, 4)
    # An "arm64" run of the same runtime whose box map rounds one cell differently.
    arm = dict(outs)
    arm["box"] = outs["box"].copy()
    arm["box"][0, 5, 5, 1] += 1 if arm["box"][0, 5, 5, 1] < 127 else -1
    np.savez(res / "trixie-pi5.npz", **arm, **{"ref_" + k: v for k, v in ref.items()})
    (res / "trixie-pi5.json").write_text(json.dumps({**facts, "machine": "aarch64", "label": "trixie-pi5"}))
    (res / "trixie-pi5-preflight.json").write_text(json.dumps({"ok": True, "golden": {"max_abs": 0.0}}))
    rep = compare.build_report(work, ["trixie-pi5:litert"])
    row = rep["targets"][0]
    assert row["ok"] and row["vs_x86_same_runtime"]["verdict"] == "bounded"
    assert row["vs_x86_same_runtime"]["outputs"]["heat"]["verdict"] == "identical"
    assert row["vs_x86_same_runtime"]["outputs"]["box"]["cells_differing"] == 1
    table = compare.format_table(rep)
    assert "heat identical; box bounded: <=1 LSB" in table and "RESULT: PASS" in table
    assert "manifest says" in table and "(same)" in table


def test_a_model_the_reference_kernels_cannot_run_is_still_compared(tmp_path: Path) -> None:
    """Keras' UpSampling2D converts to TILE version 3, which neither runtime's BUILTIN_REF
    resolver registers: infer still writes both outputs and says why nothing can be
    explained, the MAC count still matches, and the report names the cause of a DIFFERS."""
    model_dir = _detector_dir(tmp_path / "model", keras_upsampling=True)
    work = tmp_path / "work"
    res = work / "results"
    np.savez(work.mkdir() or work / "frames.npz", frames=_frames(2))
    assert compare.main(["macs", "--model", str(model_dir), "--out", str(work / "macs.json")]) == 0
    assert json.loads((work / "macs.json").read_text())["matches_manifest"] is True
    assert compare.main(["infer", "--model", str(model_dir), "--runtime", "litert", "--frames",
                         str(work / "frames.npz"), "--label", "x86-litert", "--out", str(res / "x86-litert")]) == 0
    facts = json.loads((res / "x86-litert.json").read_text())
    assert "TILE" in facts["reference_kernels_error"]
    outs, ref = compare.load_outputs(res / "x86-litert.npz")
    assert ref is None and outs["heat"].shape == (2, 30, 40) and outs["box"].shape == (2, 30, 40, 4)
    outs["heat"][1, 0, 0] += 1 if outs["heat"][1, 0, 0] < 127 else -1
    np.savez(res / "trixie-pi4.npz", **outs)
    (res / "trixie-pi4.json").write_text(json.dumps({**facts, "machine": "aarch64"}))
    (res / "trixie-pi4-preflight.json").write_text(json.dumps({"ok": True, "golden": {"max_abs": 0.0}}))
    rep = compare.build_report(work, ["trixie-pi4:litert"])
    assert not rep["ok"] and rep["targets"][0]["vs_x86_same_runtime"]["verdict"] == "DIFFERS"
    assert "not explainable: the reference kernels could not run the model" in compare.format_table(rep)


def test_macs_match_the_trained_model_s_manifest(trained_model_dir: Path) -> None:
    """The real detector graph (whatever its upsampling and adds became in the converter):
    the .tflite count at the padded 320x240 frame equals the trainer's Keras count."""
    from edge.manifest import load_manifest

    mf = load_manifest(trained_model_dir)
    got = compare.count_macs(mf.model_path("int8"), *mf.padded_size(240, 320))
    assert got["macs"] == mf.extra["macs"]["macs"] > 0
    assert compare.manifest_macs_agree(got, mf.extra["macs"]) is True


def test_macs_are_counted_per_layer_from_the_tflite(small_tflite: Path) -> None:
    got = compare.count_macs(small_tflite, 10, 12)
    conv1, dw, pw, dense = 8 * 10 * 4 * 9 * 1, 6 * 8 * 4 * 9, 6 * 8 * 2 * 4, 3 * (3 * 4 * 2)
    assert got["by_op"] == {"CONV_2D": conv1 + pw, "DEPTHWISE_CONV_2D": dw, "FULLY_CONNECTED": dense}
    assert got["macs"] == conv1 + dw + pw + dense


def test_macs_follow_a_resized_input_through_every_layer(tmp_path: Path) -> None:
    """The fully convolutional part at a bigger size: shapes must be re-propagated, which
    only happens without the XNNPACK delegate (it freezes intermediate shapes)."""
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((None, None, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3)(inp)
    out = tf.keras.layers.DepthwiseConv2D(3)(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
    path = tmp_path / "fcn.tflite"
    path.write_bytes(conv.convert())
    got = compare.count_macs(path, 40, 60)
    assert got["layers"][0]["output"] == [1, 38, 58, 4]
    assert got["macs"] == 38 * 58 * 4 * 9 + 36 * 56 * 4 * 9


def test_pi_floors_use_the_issue_s_throughput() -> None:
    floors = compare.pi_floors_ms(28_800_000)
    assert floors["pi4"] == pytest.approx(1e3 * 28.8e6 / (16 * 1.8e9))  # 1.0 ms
    assert floors["pi5"] == pytest.approx(1e3 * 28.8e6 / (32 * 2.4e9), abs=1e-3)


def _outputs(heat: np.ndarray) -> dict[str, np.ndarray]:
    """Both outputs of a few frames: the given heat maps and a box map of the same cells."""
    box = (np.arange(heat.size * 4) % 200 - 100).astype(np.int8).reshape(*heat.shape, 4)
    return {"heat": heat, "box": box}


def _copy(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in outs.items()}


def test_identical_outputs_pass_as_identical() -> None:
    a = _outputs(np.arange(-50, 50, dtype=np.int8).reshape(4, 5, 5))
    ref = {k: v[:1] for k, v in a.items()}
    v = compare.judge_outputs(a, _copy(a), ref, _copy(ref), FACTS, max_lsb=2)
    assert v["verdict"] == "identical" and v["decision_flips"] == 0
    assert {n: o["verdict"] for n, o in v["outputs"].items()} == {"heat": "identical", "box": "identical"}


def test_small_difference_passes_only_when_reference_kernels_agree() -> None:
    x86 = _outputs(np.full((2, 3, 3), -21, dtype=np.int8))  # just below the raw threshold -20
    arm = _copy(x86)
    arm["heat"][0, 0, 0] = -19  # +2 LSB: now a peak above the threshold, a new candidate
    ref = _outputs(np.zeros((1, 3, 3), dtype=np.int8))
    bounded = compare.judge_outputs(arm, x86, ref, _copy(ref), FACTS, max_lsb=2)
    assert bounded["verdict"] == "bounded" and bounded["decision_flips"] == 1
    heat = bounded["outputs"]["heat"]
    assert heat["max_abs_lsb"] == 2 and heat["cells_differing"] == 1
    assert heat["fraction_differing"] == pytest.approx(1 / 18, abs=1e-6)
    assert "reference kernels" in heat["explanation"] and bounded["outputs"]["box"]["verdict"] == "identical"
    ref_arm = _copy(ref)
    ref_arm["box"][0, 1, 1, 2] += 1  # the reference kernels disagree, on the other output
    unexplained = compare.judge_outputs(arm, x86, ref_arm, ref, FACTS, max_lsb=2)
    assert unexplained["verdict"] == "DIFFERS" and unexplained["outputs"]["heat"]["verdict"] == "DIFFERS"
    too_big = compare.judge_outputs(arm, x86, ref, _copy(ref), FACTS, max_lsb=1)
    assert too_big["verdict"] == "DIFFERS"


def test_the_box_output_is_judged_too() -> None:
    """Identical heat maps do not hide a box map that differs (beyond the bound, or at all
    without the reference kernels to explain it), nor a missing output."""
    x86 = _outputs(np.full((2, 3, 3), -21, dtype=np.int8))
    ref = _outputs(np.zeros((1, 3, 3), dtype=np.int8))
    arm = _copy(x86)
    arm["box"][1, 2, 2, 3] += 3
    v = compare.judge_outputs(arm, x86, ref, _copy(ref), FACTS, max_lsb=2)
    assert v["verdict"] == "DIFFERS" and v["outputs"]["heat"]["verdict"] == "identical"
    assert v["outputs"]["box"]["max_abs_lsb"] == 3 and "decision_flips" not in v["outputs"]["box"]
    arm["box"][1, 2, 2, 3] -= 2  # 1 LSB: bounded with the reference kernels, DIFFERS without them
    assert compare.judge_outputs(arm, x86, ref, _copy(ref), FACTS, max_lsb=2)["verdict"] == "bounded"
    assert compare.judge_outputs(arm, x86, None, None, FACTS, max_lsb=2)["verdict"] == "DIFFERS"
    missing = compare.judge_outputs({"heat": x86["heat"].copy()}, x86, None, None, FACTS, max_lsb=2)
    assert missing["verdict"] == "DIFFERS" and "missing" in missing["outputs"]["box"]["reason"]


def test_shape_or_dtype_mismatch_is_never_identical() -> None:
    a = np.zeros((2, 3, 3), dtype=np.int8)
    assert compare._diff(a, np.zeros((2, 3, 4), dtype=np.int8))["identical"] is False
    assert compare._diff(a, np.zeros((2, 3, 3), dtype=np.uint8))["identical"] is False


def test_events_are_compared_without_wall_clock_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        {"event": "car_arrived", "zone": "frame", "time": 1.5, "frame_id": 2, "score": 0.72, "box": None,
         "dwell_s": None},
        {"event": "car_left", "zone": "frame", "time": 9.0, "frame_id": 7, "score": 0.1, "box": None,
         "dwell_s": 7.5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    got = compare._events(path)
    assert got == [{k: v for k, v in r.items() if k not in ("time", "dwell_s")} for r in rows]
    assert compare._events(tmp_path / "missing.jsonl") == []


def test_frames_are_the_video_s_first_frames_as_grey(video_path: Path, tmp_path: Path) -> None:
    frames = compare.decode_frames(video_path, 3, 240, 320)
    assert frames.shape == (3, 240, 320) and frames.dtype == np.uint8
    assert frames.std() > 10  # a real picture, not a blank decode
    rc = compare.main(["frames", "--video", str(video_path), "--count", "2", "--out", str(tmp_path)])
    assert rc == 0
    saved = np.load(tmp_path / "frames.npz")["frames"]
    assert np.array_equal(saved, frames[:2])
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["frame_0000.png", "frame_0001.png"]


def test_frames_of_the_wrong_size_are_refused_by_name(video_path: Path) -> None:
    with pytest.raises(compare.CompareError, match="expected 640x480"):
        compare.decode_frames(video_path, 1, 480, 640)
    with pytest.raises(compare.CompareError, match="not found"):
        compare.decode_frames(video_path.with_name("nope.avi"), 1, 240, 320)


def test_replay_config_is_accepted_by_the_daemon_s_loader(tmp_path: Path) -> None:
    from edge.config import load_config

    cfg_path = tmp_path / "replay.toml"
    rc = compare.main(["config", "--model", "/m", "--runtime", "auto", "--frames-dir", str(tmp_path),
                       "--events", str(tmp_path / "ev.jsonl"), "--out", str(cfg_path)])
    assert rc == 0
    cfg = load_config(cfg_path)
    assert cfg.source.kind == "images" and cfg.source.path == str(tmp_path) and not cfg.source.loop
    assert cfg.model.path == "/m" and cfg.model.num_threads == 1 and cfg.model.precision == "int8"
    assert cfg.events.path == str(tmp_path / "ev.jsonl")
    assert not cfg.mqtt.enabled and not cfg.http.enabled and not cfg.capture.enabled
