"""Training canvases and CenterNet targets: geometry must survive crops, flips and turns."""

from __future__ import annotations

import numpy as np
import pytest

from edge.head import BOX_CHANNELS, STRIDE, decode_cells
from training.canvas import MIN_CAR_SIDE, EpochSampler, Sample, _flip_h, _rot90, mosaic_sample, scene_sample, targets
from training.sources import Picture

NONE = np.zeros((0, 4), np.float32)


def _bright_box_picture(box, size=(200, 300)):
    img = np.zeros(size, np.uint8)
    x, y, w, h = (int(v) for v in box)
    img[y:y + h, x:x + w] = 255
    return Picture("p", img, np.array([box], np.float32), NONE.copy())


def _box_of_bright(img):
    ys, xs = np.nonzero(img > 128)
    return np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float)


def test_targets_peak_at_the_centre_and_decode_back_to_the_box():
    boxes = np.array([[37.0, 50.0, 60.0, 28.0], [150.0, 140.0, 24.0, 40.0]], np.float32)
    heat, box = targets(Sample(np.zeros((256, 256), np.uint8), boxes, NONE), 256)
    assert heat.shape == (32, 32, 2) and box.shape == (32, 32, BOX_CHANNELS + 1)
    rows, cols = np.nonzero(heat[..., 0] == 1.0)
    assert len(rows) == 2 and (box[..., BOX_CHANNELS] == 1).sum() == 2
    got = decode_cells(rows, cols, box[rows, cols, :BOX_CHANNELS])
    np.testing.assert_allclose(sorted(got.tolist()), sorted(boxes.tolist()), atol=1e-4)
    assert heat[..., 1].min() == 1.0  # nothing ignored


def test_gaussian_is_elongated_like_the_car():
    heat, _ = targets(Sample(np.zeros((256, 256), np.uint8), np.array([[28, 108, 200, 40]], np.float32), NONE), 256)
    r, c = np.unravel_index(np.argmax(heat[..., 0]), (32, 32))
    assert heat[r, c + 3, 0] > heat[r + 3, c, 0]  # wide car: the blob spreads sideways


def test_ignore_regions_and_tiny_cars_are_neither_positive_nor_negative():
    s = Sample(np.zeros((256, 256), np.uint8), np.array([[10, 10, MIN_CAR_SIDE - 2, 4]], np.float32),
               np.array([[100, 100, 80, 60]], np.float32))
    heat, box = targets(s, 256)
    assert heat[..., 0].max() == 0 and box[..., BOX_CHANNELS].sum() == 0
    assert heat[14, 14, 1] == 0 and heat[1, 1, 1] == 0  # inside the ignore region, on the tiny car
    assert heat[30, 30, 1] == 1


def test_flip_and_quarter_turn_move_boxes_with_the_pixels():
    pic = _bright_box_picture((40, 30, 70, 20), size=(128, 128))
    img, b, i = pic.image.copy(), pic.boxes.copy(), pic.ignore.copy()
    img = _flip_h(img, b, i)
    np.testing.assert_allclose(b[0], _box_of_bright(img))
    img, b, i = _rot90(img, b, i)
    np.testing.assert_allclose(b[0], _box_of_bright(img))


@pytest.mark.parametrize("seed", range(6))
def test_scene_crops_keep_boxes_on_the_car(seed):
    pic = _bright_box_picture((120, 70, 90, 40))
    s = scene_sample(pic, 256, np.random.default_rng(seed), top_down=True)
    assert s.image.shape == (256, 256)
    if len(s.boxes):
        x, y, w, h = s.boxes[0]
        inner = s.image[int(y) + 2:int(y + h) - 2, int(x) + 2:int(x + w) - 2]
        assert inner.size == 0 or inner.mean() > 200


def test_mosaic_pastes_cars_on_no_car_tiles():
    rng = np.random.default_rng(3)
    pos = [_bright_box_picture((4, 4, 56, 56), size=(64, 64))]
    neg = [Picture("n", np.zeros((64, 64), np.uint8), NONE, NONE)]
    n_cars = 0
    for _ in range(10):
        s = mosaic_sample(pos, neg, 256, rng)
        for x, y, w, h in s.boxes:
            assert s.image[int(y + h / 2), int(x + w / 2)] == 255
        n_cars += len(s.boxes)
    assert n_cars > 5


def test_sampler_draws_by_weight_and_is_seeded(data_root):
    from pathlib import Path

    from training.sources import DEFAULT_SPEC, load_mix, load_spec

    spec = load_spec(DEFAULT_SPEC, data_root)
    srcs = load_mix(spec, Path(data_root) / "cache")
    a = EpochSampler(srcs, spec.weights, 128, 16, seed=5).draw()
    b = EpochSampler(srcs, spec.weights, 128, 16, seed=5).draw()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x, yh, yb = a
    assert x.shape == (16, 128, 128, 1) and 0 <= x.min() and x.max() <= 1
    assert yh.shape == (16, 16, 16, 2) and yb.shape == (16, 16, 16, BOX_CHANNELS + 1)
    assert STRIDE == 8
