"""Score maps -> boxes: cell geometry (stride, scale, pad), NMS, and decoding several scales."""

from __future__ import annotations

import numpy as np
import pytest

from edge.decode import cells_to_boxes, decode, iou, nms
from edge.events import Box

WH, WW = 40, 100  # UIUC window: 40 rows x 100 columns


def test_cells_to_boxes_scale_one_no_pad() -> None:
    scores = np.zeros((5, 8), np.float32)
    scores[2, 3] = 0.9
    out = cells_to_boxes(scores, 0.5, stride=4, window_height=WH, window_width=WW)
    np.testing.assert_allclose(out, [[12.0, 8.0, 100.0, 40.0, 0.9]], rtol=1e-6)


def test_cells_to_boxes_undoes_pad_then_scale() -> None:
    scores = np.zeros((4, 6), np.float32)
    scores[0, 0] = 0.8  # border cell: its window starts in the padding
    scores[3, 5] = 0.6
    scores[1, 2] = 0.5  # exactly at the threshold: kept
    scores[2, 2] = 0.49  # just below: dropped
    out = cells_to_boxes(scores, 0.5, stride=4, window_height=WH, window_width=WW,
                         scale=0.5, pad_rows=8, pad_cols=20)
    got = {(round(r[0], 3), round(r[1], 3)): r for r in out}
    assert len(out) == 3
    # Cell (0, 0): ((0 - 20) / 0.5, (0 - 8) / 0.5) -- negative, like UIUC's cut-off cars.
    np.testing.assert_allclose(got[(-40.0, -16.0)], [-40.0, -16.0, 200.0, 80.0, 0.8], rtol=1e-6)
    # Cell (3, 5): ((20 - 20) / 0.5, (12 - 8) / 0.5)
    np.testing.assert_allclose(got[(0.0, 8.0)], [0.0, 8.0, 200.0, 80.0, 0.6], rtol=1e-6)
    # Cell (1, 2): ((8 - 20) / 0.5, (4 - 8) / 0.5)
    np.testing.assert_allclose(got[(-24.0, -8.0)], [-24.0, -8.0, 200.0, 80.0, 0.5], rtol=1e-6)


def test_cells_to_boxes_upscale_shrinks_boxes() -> None:
    scores = np.zeros((3, 3), np.float32)
    scores[1, 1] = 1.0
    (row,) = cells_to_boxes(scores, 0.5, stride=8, window_height=WH, window_width=WW, scale=2.0,
                            pad_rows=4, pad_cols=10)
    np.testing.assert_allclose(row, [(8 - 10) / 2.0, (8 - 4) / 2.0, 50.0, 20.0, 1.0])


def test_cells_to_boxes_nothing_above_threshold() -> None:
    out = cells_to_boxes(np.full((3, 3), 0.2, np.float32), 0.5, 4, WH, WW)
    assert out.shape == (0, 5)


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
    kept = nms(cands, 0.3)
    np.testing.assert_allclose(kept, [[4, 0, 100, 40, 0.95], [200, 100, 100, 40, 0.6]])


def test_nms_threshold_is_strictly_greater() -> None:
    a = [0, 0, 10, 10, 0.9]
    b = [0, 0, 10, 5, 0.8]  # IoU with a is exactly 0.5
    cands = np.array([a, b], float)
    assert len(nms(cands, 0.5)) == 2
    assert len(nms(cands, 0.49)) == 1


def test_nms_suppressed_boxes_do_not_suppress_others() -> None:
    a = [0, 0, 10, 10, 0.9]
    b = [6, 0, 10, 10, 0.8]  # IoU(a, b) = 0.25 -> suppressed by a
    c = [12, 0, 10, 10, 0.7]  # IoU(b, c) = 0.25 but IoU(a, c) = 0 -> kept
    kept = nms(np.array([c, b, a], float), 0.2)
    np.testing.assert_allclose(kept, [a, c])


def test_nms_keeps_non_overlapping_in_score_order_and_caps() -> None:
    cands = np.array([[i * 200.0, 0, 100, 40, s] for i, s in enumerate([0.5, 0.9, 0.7, 0.6])])
    kept = nms(cands, 0.3)
    np.testing.assert_allclose(kept[:, 4], [0.9, 0.7, 0.6, 0.5])
    assert len(nms(cands, 0.3, max_boxes=2)) == 2
    assert nms(np.zeros((0, 5)), 0.3).shape == (0, 5)


def test_decode_across_two_scales() -> None:
    stride = 4
    # Scale 1.0, no pad: a car at (40, 20), full window size.
    s1 = np.zeros((10, 20), np.float32)
    s1[5, 10] = 0.9
    # Scale 0.5 with pad 8/20: cell (4, 10) -> ((40 - 20) / 0.5, (16 - 8) / 0.5) = (40, 16), 200x80.
    # It contains the first box (IoU 0.25) and a weaker duplicate at (2, 5) overlaps it more.
    s2 = np.zeros((8, 16), np.float32)
    s2[4, 10] = 0.8
    s2[4, 11] = 0.5  # (48, 16) 200x80: IoU with (40, 16) = 192/208 -> suppressed by it
    boxes = decode([(s1, 1.0, 0, 0), (s2, 0.5, 8, 20)], threshold=0.4, nms_iou=0.3, stride=stride,
                   window_height=WH, window_width=WW)
    assert boxes == [
        Box(40.0, 20.0, 100.0, 40.0, pytest.approx(0.9)),
        Box(40.0, 16.0, 200.0, 80.0, pytest.approx(0.8)),
    ]
    assert all(isinstance(v, float) for b in boxes for v in (b.x, b.y, b.width, b.height, b.score))

    # A lower NMS IoU makes the big box overlap "too much" with the small one: only the best stays.
    boxes = decode([(s1, 1.0, 0, 0), (s2, 0.5, 8, 20)], 0.4, 0.2, stride, WH, WW)
    assert [(b.x, b.y, b.width) for b in boxes] == [(40.0, 20.0, 100.0)]


def test_decode_nothing() -> None:
    assert decode([(np.zeros((3, 3), np.float32), 1.0, 0, 0)], 0.5, 0.3, 4, WH, WW) == []
    assert decode([], 0.5, 0.3, 4, WH, WW) == []
