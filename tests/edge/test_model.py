"""The interpreter wrapper on a real model: inputs padded by edge replication to the input
multiple, two raw outputs, threshold and scores in the manifest's calibration."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model import ScoreMapModel, dequantise, input_lut


@pytest.fixture(scope="module")
def model(trained_model_dir) -> ScoreMapModel:
    return ScoreMapModel.load(trained_model_dir, runtime="litert")


def picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (h // 4 + 1, w // 4 + 1)).repeat(4, 0).repeat(4, 1)[:h, :w]).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(12, 20), (1, 1), (40, 100), (240, 320), (33, 65)])
def test_any_size_is_padded_bottom_right_by_edge_replication(model: ScoreMapModel, h: int, w: int) -> None:
    """Same outputs as the picture padded by hand (np.pad 'edge') to the input multiple."""
    img = picture(h, w)
    raw = model.invoke_raw(img)
    ph, pw = model.manifest.padded_size(h, w)
    assert model.input_size == (ph, pw)
    oh, ow = model.manifest.output_size(h, w)
    assert raw.heat.shape == (oh, ow) and raw.box.shape == (oh, ow, 4)
    assert raw.heat.dtype == np.int8 and raw.box.dtype == np.int8
    padded = np.pad(img, ((0, ph - h), (0, pw - w)), mode="edge")
    by_hand = model.invoke_raw(padded)  # all cells of the padded input
    np.testing.assert_array_equal(raw.heat, by_hand.heat[:oh, :ow])
    np.testing.assert_array_equal(raw.box, by_hand.box[:oh, :ow])


def test_outputs_are_copies_not_views_of_the_interpreter(model: ScoreMapModel) -> None:
    a = model.invoke_raw(picture(64, 64, 1))
    keep = a.heat.copy()
    model.invoke_raw(picture(64, 64, 2))
    np.testing.assert_array_equal(a.heat, keep)


def test_rejects_what_is_not_a_greyscale_uint8_picture(model: ScoreMapModel) -> None:
    with pytest.raises(ValueError, match="uint8 greyscale"):
        model.invoke_raw(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 greyscale"):
        model.invoke_raw(np.zeros((32, 32), np.float32))


@pytest.mark.parametrize("thr", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_raw_heat_threshold_agrees_with_the_calibrated_score(model: ScoreMapModel, thr: float) -> None:
    """Peaks are thresholded on raw int8 values: raw >= raw threshold iff score >= threshold."""
    raw = np.arange(-128, 128, dtype=np.int8)
    s = model.scores(raw)
    assert np.all(np.diff(s) >= 0)
    t = model.raw_heat_threshold(thr)
    agree = (raw >= t) == (s >= thr)
    close = np.abs(s - thr) < 1e-9  # float ties at the boundary itself
    assert np.all(agree | close)


def test_input_quantisation_table(model: ScoreMapModel) -> None:
    lut = input_lut(model.spec.input)
    back = dequantise(lut, model.spec.input)
    np.testing.assert_allclose(back, np.arange(256) / 255.0, atol=model.spec.input.scale / 2 + 1e-7)


def test_float_model_matches_int8_roughly(trained_model_dir) -> None:
    f = ScoreMapModel.load(trained_model_dir, runtime="litert", precision="float")
    i8 = ScoreMapModel.load(trained_model_dir, runtime="litert")
    img = picture(64, 96, 3)
    rf, ri = f.invoke_raw(img), i8.invoke_raw(img)
    assert rf.heat.dtype == np.float32 and rf.heat.shape == ri.heat.shape
    assert np.abs(f.box_values(rf.box) - i8.box_values(ri.box)).mean() < 0.25
