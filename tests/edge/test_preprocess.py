"""Frame -> model inputs: crop, resize, edge-replicating pad, pyramid geometry."""

from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess import crop, model_input_size, pad, pyramid, resize, scaled_size


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


def test_pad_replicates_the_border() -> None:
    img = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    out = pad(img, 1, 2)
    assert out.shape == (4, 7)
    np.testing.assert_array_equal(out, [
        [1, 1, 1, 2, 3, 3, 3],
        [1, 1, 1, 2, 3, 3, 3],
        [4, 4, 4, 5, 6, 6, 6],
        [4, 4, 4, 5, 6, 6, 6],
    ])
    assert pad(img, 0, 0) is img


@pytest.mark.parametrize("h,w,s,want", [(240, 320, 1.0, (240, 320)), (240, 320, 0.5, (120, 160)),
                                        (240, 320, 1.5, (360, 480)), (101, 99, 0.5, (50, 50)),
                                        (10, 10, 0.01, (1, 1))])
def test_scaled_size_rounds_and_never_hits_zero(h: int, w: int, s: float, want: tuple[int, int]) -> None:
    assert scaled_size(h, w, s) == want


def test_pyramid_sizes_match_model_input_size() -> None:
    img = ramp(240, 320)
    scales = [1.0, 0.75, 0.5]
    out = pyramid(img, scales, pad_rows=20, pad_cols=50)
    assert [o.scale for o in out] == scales
    assert [o.image.shape for o in out] == [(280, 420), (220, 340), (160, 260)]
    for o in out:
        assert (o.pad_rows, o.pad_cols) == (20, 50)
        assert o.image.dtype == np.uint8
        assert o.image.shape == model_input_size(240, 320, o.scale, 20, 50)
    # Scale 1.0: the frame itself sits unchanged inside the padding.
    np.testing.assert_array_equal(out[0].image[20:260, 50:370], img)
    # The padding replicates the frame's border pixels.
    np.testing.assert_array_equal(out[0].image[:20, 50:370], np.broadcast_to(img[0], (20, 320)))
    np.testing.assert_array_equal(out[0].image[20:260, :50], np.broadcast_to(img[:, :1], (240, 50)))


def test_model_input_size_without_pad() -> None:
    assert model_input_size(240, 320, 1.0, 0, 0) == (240, 320)
    assert model_input_size(240, 320, 0.5, 3, 4) == (126, 168)
