"""Frame -> model inputs: crop, resize, one input per scale (padding is the model's, see test_model)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess import crop, resize, scaled, scaled_size


def ramp(h: int, w: int) -> np.ndarray:
    """Pixel value encodes position, so a wrong row/column shows up in the values."""
    return ((np.arange(h)[:, None] * 7 + np.arange(w)[None, :]) % 256).astype(np.uint8)


def test_crop_takes_x_y_width_height() -> None:
    img = ramp(240, 320)
    out = crop(img, [10, 20, 100, 40])
    assert out.shape == (40, 100)
    np.testing.assert_array_equal(out, img[20:60, 10:110])
    assert out[0, 0] == img[20, 10]


def test_empty_crop_is_whole_frame() -> None:
    img = ramp(24, 32)
    assert crop(img, []) is img
    assert crop(img, ()) is img


def test_resize_is_a_no_op_at_the_same_size() -> None:
    img = ramp(240, 320)
    assert resize(img, 320, 240) is img


def test_resize_changes_size_width_then_height() -> None:
    img = ramp(240, 320)
    out = resize(img, 160, 100)
    assert out.shape == (100, 160) and out.dtype == np.uint8
    flat = np.full((240, 320), 77, np.uint8)
    np.testing.assert_array_equal(resize(flat, 50, 30), np.full((30, 50), 77, np.uint8))


@pytest.mark.parametrize("h,w,s,want", [(240, 320, 1.0, (240, 320)), (240, 320, 0.5, (120, 160)),
                                        (240, 320, 1.5, (360, 480)), (101, 99, 0.5, (50, 50)),
                                        (10, 10, 0.01, (1, 1))])
def test_scaled_size_rounds_and_never_hits_zero(h: int, w: int, s: float, want: tuple[int, int]) -> None:
    assert scaled_size(h, w, s) == want


def test_scaled_gives_one_input_per_scale() -> None:
    img = ramp(240, 320)
    out = scaled(img, [1.0, 0.75, 0.5, 1.5])
    assert [o.scale for o in out] == [1.0, 0.75, 0.5, 1.5]
    assert [o.image.shape for o in out] == [(240, 320), (180, 240), (120, 160), (360, 480)]
    assert all(o.image.dtype == np.uint8 for o in out)
    assert out[0].image is img, "scale 1.0 is the frame itself: no copy per frame"
    np.testing.assert_array_equal(out[2].image, resize(img, 160, 120))


def test_scaled_tiny_picture_never_hits_zero() -> None:
    (o,) = scaled(ramp(3, 5), [0.1])
    assert o.image.shape == (1, 1)


def test_crop_then_resize_keeps_the_region() -> None:
    img = np.zeros((240, 320), np.uint8)
    img[100:140, 50:150] = 200
    out = resize(crop(img, [50, 100, 100, 40]), 50, 20)
    assert out.shape == (20, 50) and (out == 200).all()
