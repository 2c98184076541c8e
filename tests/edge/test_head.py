"""The box encoding has one owner: what the trainer encodes, the Pi decodes back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edge.head import BOX_CHANNELS, HEAT_CHANNELS, STRIDE, decode_cells, encode_box


@pytest.mark.parametrize("stride", [STRIDE, 4, 16])
def test_encode_then_decode_round_trip(stride: int) -> None:
    rng = np.random.default_rng(stride)
    n = 200
    w = np.exp(rng.uniform(np.log(16), np.log(300), n))  # 16 px to most of a frame
    h = np.exp(rng.uniform(np.log(16), np.log(300), n))
    cx, cy = rng.uniform(0, 640, n), rng.uniform(0, 480, n)
    rows, cols = (cy // stride).astype(int), (cx // stride).astype(int)  # the cell holding the centre
    values = np.array([encode_box(*a, r, c, stride) for *a, r, c in zip(cx, cy, w, h, rows, cols)])
    assert values.shape == (n, BOX_CHANNELS)
    assert np.all(np.abs(values[:, :2]) <= 0.5 + 1e-9), "offsets stay within the cell"
    got = decode_cells(rows, cols, values, stride)
    np.testing.assert_allclose(got, np.column_stack([cx - w / 2, cy - h / 2, w, h]), rtol=1e-9, atol=1e-9)


def test_encoding_is_the_documented_one() -> None:
    """dx, dy in cells from the cell centre; log(width / stride), log(height / stride)."""
    assert encode_box(20.0, 12.0, 8.0, 16.0, row=1, col=2) == pytest.approx([0.0, 0.0, 0.0, np.log(2)])
    assert encode_box(17.0, 8.0, 32.0, 8.0, row=0, col=2) == pytest.approx([-0.375, 0.5, np.log(4), 0.0])


def test_decode_is_vectorised_over_cells_and_accepts_int_rows() -> None:
    rows, cols = np.array([0, 3]), np.array([5, 1])
    vals = np.array([[0.0, 0.0, 0.0, 0.0], [0.5, -0.5, np.log(2), np.log(4)]], np.float32)
    np.testing.assert_allclose(decode_cells(rows, cols, vals), [[40, 0, 8, 8], [8, 8, 16, 32]], atol=1e-5)


def test_extreme_log_sizes_are_bounded() -> None:
    """A garbage box value (e.g. a saturated int8) cannot make an infinite or zero-size box."""
    (b,) = decode_cells(np.array([0]), np.array([0]), np.array([[0.0, 0.0, 1e6, -1e6]]))
    assert np.isfinite(b).all() and b[2] == pytest.approx(np.exp(8) * STRIDE) and b[3] == pytest.approx(np.exp(-4) * STRIDE)


def test_channel_counts() -> None:
    assert (HEAT_CHANNELS, BOX_CHANNELS) == (1, 4)
