"""Raw detector outputs -> boxes: heat peaks on the raw (int8) map, box geometry from the box
map, threshold in raw units, clip to the frame, resize undone, NMS, several scales.

Maps are built by hand with a fake int8 quantisation (scale, zero point), so every expected
box follows from `edge.head`'s encoding by arithmetic, not from a model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.decode import _nms_small, decode, iou, local_peaks, nms, peak_boxes
from edge.events import Box
from edge.head import BOX_CHANNELS, STRIDE, encode_box

HEAT_SCALE, HEAT_ZP = 0.1, -10  # int8 heat: logit = (raw + 10) * 0.1
BOX_SCALE, BOX_ZP = 0.02, 3  # int8 box values: (raw - 3) * 0.02, so log sizes up to ~2.5 fit


def box_values(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.float64) - BOX_ZP) * BOX_SCALE


def scores(raw: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(raw, dtype=np.float64) - HEAT_ZP) * HEAT_SCALE))


def raw_threshold(score: float) -> float:
    return math.log(score / (1 - score)) / HEAT_SCALE + HEAT_ZP


class Maps:
    """An int8 heat map (all 'no car') and box map that cars are written into."""

    def __init__(self, rows: int, cols: int) -> None:
        self.heat = np.full((rows, cols), -128, np.int8)
        self.box = np.zeros((rows, cols, BOX_CHANNELS), np.int8)

    def car(self, cx: float, cy: float, w: float, h: float, raw_heat: int) -> tuple[int, int]:
        """A car centred at (cx, cy), w x h model pixels: heat peak in the cell holding its centre."""
        row, col = int(cy // STRIDE), int(cx // STRIDE)
        v = np.asarray(encode_box(cx, cy, w, h, row, col))
        self.box[row, col] = np.clip(np.round(v / BOX_SCALE) + BOX_ZP, -128, 127).astype(np.int8)
        self.heat[row, col] = raw_heat
        return row, col

    def boxes(self, score: float = 0.5, scale: float = 1.0, clip: tuple[int, int] | None = None) -> np.ndarray:
        return peak_boxes(self.heat, raw_threshold(score), self.box, box_values, scores, STRIDE, scale, clip)


def test_one_peak_gives_its_encoded_box_and_calibrated_score() -> None:
    m = Maps(6, 8)
    m.car(29.0, 19.0, 40.0, 24.0, raw_heat=50)
    (b,) = m.boxes()
    # int8 steps: 0.02 cells of offset (0.16 px), 2% of the size: within a pixel here.
    np.testing.assert_allclose(b[:4], [29 - 20, 19 - 12, 40, 24], atol=1.0)
    assert b[4] == pytest.approx(scores(np.int8(50)))


def test_many_peaks_each_decoded_from_its_own_cell() -> None:
    m = Maps(10, 12)
    cars = [(12.0, 10.0, 16.0, 16.0), (60.0, 44.0, 70.0, 30.0), (90.0, 70.0, 20.0, 50.0)]
    for i, c in enumerate(cars):
        m.car(*c, raw_heat=20 + 10 * i)
    out = sorted(m.boxes(0.01).tolist(), key=lambda r: r[4])
    assert len(out) == 3
    for (cx, cy, w, h), got in zip(cars, out):
        np.testing.assert_allclose(got[:4], [cx - w / 2, cy - h / 2, w, h], atol=1.0)


def test_threshold_is_compared_in_raw_units_inclusive() -> None:
    m = Maps(4, 12)
    thr = 0.8
    at = math.ceil(raw_threshold(thr))  # the lowest raw value whose score reaches thr
    assert scores(np.int8(at)) >= thr > scores(np.int8(at - 1))
    m.car(12, 12, 16, 16, raw_heat=at)
    m.car(52, 12, 16, 16, raw_heat=at - 1)
    m.car(84, 12, 16, 16, raw_heat=127)
    got = m.boxes(thr)
    assert sorted(got[:, 4].tolist()) == pytest.approx([scores(np.int8(at)), scores(np.int8(127))])


def test_float_maps_work_like_int8() -> None:
    m = Maps(6, 8)
    m.car(29.0, 19.0, 40.0, 24.0, raw_heat=50)
    f = peak_boxes(m.heat.astype(np.float32), raw_threshold(0.5), m.box.astype(np.float32), box_values, scores,
                   STRIDE)
    np.testing.assert_allclose(f, m.boxes())


def test_nothing_above_threshold_is_an_empty_array() -> None:
    m = Maps(5, 5)
    out = m.boxes()
    assert out.shape == (0, 5) and out.dtype == np.float64


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.75])
def test_scale_is_undone_into_frame_pixels(scale: float) -> None:
    """scale = model pixels per frame pixel: a 0.5 resize doubles the boxes back."""
    m = Maps(8, 8)
    m.car(28.0, 36.0, 24.0, 16.0, raw_heat=60)
    (one,) = m.boxes()
    (got,) = m.boxes(scale=scale)
    np.testing.assert_allclose(got[:4], one[:4] / scale)
    assert got[4] == one[4]


def test_clip_to_the_frame() -> None:
    m = Maps(6, 8)
    m.car(4.0, 4.0, 40.0, 30.0, raw_heat=40)  # sticks out left and top
    m.car(60.0, 44.0, 24.0, 24.0, raw_heat=30)  # sticks out right and bottom of a 40x64 frame
    unclipped = sorted(m.boxes().tolist(), key=lambda r: -r[4])
    assert unclipped[0][0] < 0 and unclipped[0][1] < 0
    got = sorted(m.boxes(clip=(40, 64)).tolist(), key=lambda r: -r[4])
    x0, y0 = unclipped[0][0], unclipped[0][1]
    np.testing.assert_allclose(got[0][:4], [0, 0, unclipped[0][2] + x0, unclipped[0][3] + y0])
    x, y = unclipped[1][:2]
    np.testing.assert_allclose(got[1][:4], [x, y, 64 - x, 40 - y])


def test_clip_drops_a_peak_whose_box_lies_wholly_in_the_padding() -> None:
    """A 20x12 picture is padded to 32x32: the model can fire on the replicated rows below it.
    Such a box has nothing in the picture, so it must not be reported (not even as 0 px tall)."""
    m = Maps(4, 4)
    m.car(10.0, 28.0, 8.0, 6.0, raw_heat=60)  # rows 25..31: all padding
    m.car(10.0, 6.0, 8.0, 6.0, raw_heat=50)  # inside the picture
    got = m.boxes(clip=(12, 20))
    assert len(got) == 1 and got[0][4] == pytest.approx(scores(np.int8(50)))
    x, y, w, h = got[0][:4]
    assert 0 <= x and x + w <= 20 and 0 <= y and y + h <= 12 and w > 0 and h > 0


def test_local_peaks_3x3_maximum_and_borders() -> None:
    s = np.array([[5, 1, 0, 0, 0],
                  [1, 1, 0, 7, 0],
                  [0, 0, 0, 6, 0],
                  [0, 2, 0, 0, 9]], np.int8)
    got = local_peaks(s, 2)
    want = np.zeros_like(got)
    want[0, 0] = want[1, 3] = want[3, 4] = True  # corners count; 6 is next to 7; 2 is next to nothing larger
    want[3, 1] = True
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(local_peaks(s, 6), s >= 7)


def test_a_plateau_keeps_only_its_first_cell() -> None:
    """int8 maps round neighbours near a peak to the same value. Only the plateau's first cell
    (raster order) is a peak: the next cell's box is untrained and need not overlap the car,
    so NMS could not be trusted to remove it."""
    m = Maps(6, 8)
    m.car(28.0, 20.0, 48.0, 32.0, raw_heat=127)
    m.car(36.0, 20.0, 8.0, 8.0, raw_heat=127)  # the next cell, same value, an 8 px box (IoU 0.04)
    np.testing.assert_array_equal(np.argwhere(local_peaks(m.heat, 0)), [[2, 3]])
    (kept,) = decode([m.boxes()], nms_iou=0.45)
    assert kept.score == pytest.approx(scores(np.int8(127))) and kept.width == pytest.approx(48.0, abs=1.0)


@pytest.mark.parametrize("second", [(0, 1), (1, -1), (1, 0), (1, 1)])
def test_plateau_of_two_in_any_direction_gives_one_peak(second: tuple[int, int]) -> None:
    s = np.zeros((5, 5), np.int8)
    s[2, 2] = s[2 + second[0], 2 + second[1]] = 40
    assert local_peaks(s, 1).sum() == 1


def test_a_flat_map_above_threshold_has_one_peak() -> None:
    assert np.argwhere(local_peaks(np.full((4, 6), 9, np.int8), 1)).tolist() == [[0, 0]]


def test_iou_values() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0, 1.0])
    others = np.array([[0, 0, 10, 10, 0], [5, 0, 10, 10, 0], [0, 0, 10, 5, 0], [20, 20, 5, 5, 0]], float)
    np.testing.assert_allclose(iou(a, others), [1.0, 50 / 150, 0.5, 0.0])


def test_nms_keeps_best_and_suppresses_overlaps() -> None:
    cands = np.array([
        [0, 0, 100, 40, 0.7],
        [4, 0, 100, 40, 0.95],  # best of the cluster
        [8, 4, 100, 40, 0.8],
        [200, 100, 100, 40, 0.6],  # far away: kept
    ], float)
    np.testing.assert_allclose(nms(cands, 0.3), [[4, 0, 100, 40, 0.95], [200, 100, 100, 40, 0.6]])


def test_nms_threshold_is_strictly_greater() -> None:
    cands = np.array([[0, 0, 10, 10, 0.9], [0, 0, 10, 5, 0.8]], float)  # IoU exactly 0.5
    assert len(nms(cands, 0.5)) == 2
    assert len(nms(cands, 0.49)) == 1


def test_nms_suppressed_boxes_do_not_suppress_others() -> None:
    a = [0, 0, 10, 10, 0.9]
    b = [6, 0, 10, 10, 0.8]  # IoU(a, b) = 0.25 -> suppressed by a
    c = [12, 0, 10, 10, 0.7]  # IoU(b, c) = 0.25 but IoU(a, c) = 0 -> kept
    np.testing.assert_allclose(nms(np.array([c, b, a], float), 0.2), [a, c])


def test_nms_score_order_cap_and_empty() -> None:
    cands = np.array([[i * 200.0, 0, 100, 40, s] for i, s in enumerate([0.5, 0.9, 0.7, 0.6])])
    np.testing.assert_allclose(nms(cands, 0.3)[:, 4], [0.9, 0.7, 0.6, 0.5])
    assert len(nms(cands, 0.3, max_boxes=2)) == 2
    assert nms(np.zeros((0, 5)), 0.3).shape == (0, 5)


@pytest.mark.parametrize("n", [33, 200])
def test_nms_numpy_path_matches_the_small_path(n: int) -> None:
    """Over 32 candidates NMS switches to numpy; both must keep the same boxes."""
    rng = np.random.default_rng(n)
    cands = np.column_stack([rng.uniform(0, 200, (n, 2)), rng.uniform(10, 60, (n, 2)), rng.random(n)])
    big = nms(cands, 0.3, max_boxes=1000)
    np.testing.assert_allclose(big, _nms_small(cands, 0.3, 1000))
    assert len(nms(cands, 0.3, max_boxes=5)) == 5


def test_decode_merges_scales_and_returns_float_boxes() -> None:
    one = Maps(6, 8)
    one.car(28.0, 20.0, 24.0, 16.0, raw_heat=80)
    half = Maps(3, 4)  # the same car at scale 0.5 (weaker), and another only this scale sees
    half.car(14.0, 10.0, 12.0, 8.0, raw_heat=60)
    half.car(26.0, 18.0, 10.0, 8.0, raw_heat=70)
    cands = [one.boxes(clip=(48, 64)), half.boxes(scale=0.5, clip=(48, 64))]
    boxes = decode(cands, nms_iou=0.45)
    assert [round(b.score, 6) for b in boxes] == [round(float(scores(np.int8(80))), 6),
                                                   round(float(scores(np.int8(70))), 6)]
    assert boxes[0].x == pytest.approx(16, abs=1) and boxes[1].x == pytest.approx(42, abs=1)
    assert all(type(v) is float for b in boxes for v in (b.x, b.y, b.width, b.height, b.score))
    assert all(isinstance(b, Box) for b in boxes)


def test_decode_nothing() -> None:
    assert decode([], 0.45) == []
    assert decode([np.zeros((0, 5))], 0.45) == []
