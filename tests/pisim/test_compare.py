"""The parts of `make pi-sim` that decide PASS/FAIL, on real inputs, without emulation.

The emulated run itself is `make pi-sim` (minutes, builds arm64 roots); these check that
its measuring stick is right: the MAC count, the verdict rules, the frames, and that the
daemon config it writes is one the daemon accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pisim import compare

FACTS = {"threshold": 0.5, "output_scale": 0.05, "output_zero_point": -20,
         "runtime": "tflite-runtime", "runtime_version": "2.14.0"}


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
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(8):
            yield [rng.random((1, 10, 12, 1), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("tflite") / "small_int8.tflite"
    path.write_bytes(conv.convert())
    return path


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


def test_identical_outputs_pass_as_identical() -> None:
    a = np.arange(-50, 50, dtype=np.int8).reshape(4, 5, 5)
    v = compare.judge_outputs(a, a.copy(), a[:1], a[:1].copy(), FACTS, max_lsb=2)
    assert v["verdict"] == "identical" and v["decision_flips"] == 0


def test_small_difference_passes_only_when_reference_kernels_agree() -> None:
    x86 = np.full((2, 3, 3), -21, dtype=np.int8)  # logit -0.05: below the 0.5 threshold
    arm = x86.copy()
    arm[0, 0, 0] = -19  # +2 LSB: logit +0.05, crosses the threshold
    ref = np.zeros((1, 3, 3), dtype=np.int8)
    bounded = compare.judge_outputs(arm, x86, ref, ref.copy(), FACTS, max_lsb=2)
    assert bounded["verdict"] == "bounded"
    assert bounded["max_abs_lsb"] == 2 and bounded["cells_differing"] == 1 and bounded["decision_flips"] == 1
    assert "reference kernels" in bounded["explanation"]
    ref_arm = ref.copy()
    ref_arm[0, 1, 1] = 1
    unexplained = compare.judge_outputs(arm, x86, ref_arm, ref, FACTS, max_lsb=2)
    assert unexplained["verdict"] == "DIFFERS"
    too_big = compare.judge_outputs(arm, x86, ref, ref.copy(), FACTS, max_lsb=1)
    assert too_big["verdict"] == "DIFFERS"


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
