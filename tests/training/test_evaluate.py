"""Detection scoring on hand-built cases: COCO AP via pycocotools with ignore regions, IoU
matching, presence, and the UIUC rule (PR curve, EER, window from a box, rescaled scenes)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.events import Box
from training.evaluate import (
    PictureResult,
    Truth,
    classification_metrics,
    coco_ap,
    detection_at,
    equal_error_rate,
    is_match,
    match_image,
    match_iou,
    pr_curve,
    presence,
    rescaled_scenes,
    roc_auc,
    uiuc_window,
)

NONE = np.zeros((0, 4))


def box(y, x, score=0.9, w=100):
    return Box(x, y, w, 0.4 * w, score)


def test_uiuc_ellipse_rule():
    t = Truth(50, 100, 100)  # semi-axes: 10 rows, 25 cols
    assert is_match(box(50, 100), t, False)
    assert is_match(box(60, 100), t, False)  # on the ellipse
    assert not is_match(box(61, 100), t, False)
    assert is_match(box(50, 125), t, False)
    assert not is_match(box(50, 126), t, False)
    assert not is_match(box(58, 120), t, False)  # (0.8)^2 + (0.8)^2 > 1
    assert is_match(box(-5, -20), Truth(-4, -10, 100), False)  # cut by the border


def test_multiscale_ellipsoid_checks_width():
    t = Truth(50, 100, 200)  # 80x200 window: semi-axes 20 rows, 50 cols, 50 in width
    assert is_match(box(50, 100, w=200), t, True)
    assert is_match(box(50, 100, w=249), t, True)
    assert not is_match(box(50, 100, w=260), t, True)
    assert not is_match(box(50, 100, w=100), t, True)


def test_each_car_matched_once_best_score_first():
    t = [Truth(50, 100, 100)]
    hits = match_image([box(50, 102, 0.6), box(51, 100, 0.95)], t, False)
    assert hits == [True, False]  # in score order: 0.95 hits, 0.6 is a duplicate = false positive


def test_pr_curve_and_eer_hand_built():
    # 4 true cars; detections by score: hit, hit, miss, hit, miss
    dets = [(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False)]
    c = pr_curve(dets, 4)
    assert c["recall"] == [0.25, 0.5, 0.5, 0.75, 0.75]
    assert c["precision"] == pytest.approx([1.0, 1.0, 2 / 3, 0.75, 0.6], abs=1e-6)
    assert c["eer"] == pytest.approx(0.75)  # recall = precision = 0.75 at threshold 0.6
    assert c["eer_threshold"] == pytest.approx(0.6)


def test_eer_interpolates_between_points():
    recall = np.array([0.5, 0.9])
    precision = np.array([1.0, 0.7])
    eer, thr = equal_error_rate(recall, precision, np.array([0.9, 0.5]))
    # diff goes -0.5 -> 0.2; crossing at a = 0.5/0.7; value = 0.5 + a*0.4
    assert eer == pytest.approx(0.5 + 0.4 * 0.5 / 0.7, abs=1e-6)
    assert 0.5 < thr < 0.9


def test_eer_is_not_the_empty_start_when_the_best_scores_are_false():
    # the two best-scoring detections are false: recall = precision = 0 there, which is no
    # crossing; the real one comes later (recall 0.5 = precision 0.5 at 0.6)
    c = pr_curve([(0.9, False), (0.8, False), (0.7, True), (0.6, True), (0.5, False)], 4)
    assert c["eer"] == pytest.approx(0.5)
    assert c["eer_threshold"] == pytest.approx(0.6)


def test_eer_without_a_true_detection_is_zero():
    assert pr_curve([(0.9, False), (0.8, False)], 3)["eer"] == 0.0


def test_perfect_detector_has_eer_one():
    c = pr_curve([(0.9, True), (0.8, True)], 2)
    assert c["eer"] == 1.0


def test_auc_and_confusion():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    m = classification_metrics(y, np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    assert m["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 1} and m["accuracy"] == 0.5


def _res(truth, boxes, ignore=NONE, shape=(100, 200)):
    r = PictureResult("p", shape, np.asarray(truth, float).reshape(-1, 4), np.asarray(ignore, float).reshape(-1, 4),
                      sorted(boxes, key=lambda b: -b.score), max((b.score for b in boxes), default=0.0))
    r.hits = match_iou(r.boxes, r.truth, r.ignore)
    return r


def test_iou_matching_ignore_regions_and_duplicates():
    r = _res([[10, 10, 40, 20]], [Box(11, 10, 40, 20, 0.9), Box(10, 11, 40, 20, 0.8), Box(100, 50, 30, 30, 0.7),
                                  Box(150, 10, 20, 20, 0.6)], ignore=[[140, 0, 50, 40]])
    assert r.hits == [1, 0, 0, -1]  # match, duplicate, false, on a bus


def test_coco_ap_perfect_and_ignored_detections_do_not_count():
    perfect = [_res([[10, 10, 40, 20]], [Box(10, 10, 40, 20, 0.9), Box(150, 10, 20, 20, 0.95)],
                    ignore=[[140, 0, 50, 40]]),
               _res([[60, 30, 80, 50]], [Box(60, 30, 80, 50, 0.8)])]
    ap = coco_ap(perfect)
    assert ap["ap50"] == pytest.approx(1.0) and ap["ap"] == pytest.approx(1.0) and ap["cars"] == 2
    # Without the ignore region the 0.95 box is the best-scoring false positive.
    ap2 = coco_ap([_res([[10, 10, 40, 20]], [Box(10, 10, 40, 20, 0.9), Box(150, 10, 20, 20, 0.95)])])
    assert ap2["ap50"] < 0.6


def test_coco_ap_counts_missed_cars_and_loose_boxes():
    half = [_res([[10, 10, 40, 20], [100, 50, 40, 20]], [Box(10, 10, 40, 20, 0.9)])]
    assert coco_ap(half)["ap50"] == pytest.approx(0.5, abs=0.01)
    loose = [_res([[10, 10, 40, 20]], [Box(10, 10, 60, 20, 0.9)])]  # IoU 0.67: in AP50, not at 0.75+
    a = coco_ap(loose)
    assert a["ap50"] == pytest.approx(1.0) and a["ap"] < 0.5
    assert coco_ap([_res([], [Box(1, 1, 5, 5, 0.5)])])["ap50"] is None  # no cars: nothing to score


def test_detection_at_threshold_and_presence():
    rs = [_res([[10, 10, 40, 20]], [Box(10, 10, 40, 20, 0.9), Box(100, 50, 30, 30, 0.4)]),
          _res([], [Box(1, 1, 5, 5, 0.6)]), _res([[5, 5, 20, 20]], [])]
    at = detection_at(rs, 0.5)
    assert (at["tp"], at["fp"], at["cars"]) == (1, 1, 2) and at["precision"] == 0.5 and at["recall"] == 0.5
    pr = presence(rs, 0.5)
    assert pr["confusion"] == {"tp": 1, "fp": 1, "tn": 0, "fn": 1}


def test_uiuc_window_from_a_box():
    b = Box(20, 10, 96, 38.4, 0.9)  # the trainer's box is the window's inner 96%
    w1 = uiuc_window(b, multiscale=False)
    assert (w1.x, w1.y, w1.width, w1.height) == pytest.approx((18, 9.2, 100, 40))
    wm = uiuc_window(Box(20, 10, 192, 76.8, 0.9), multiscale=True)
    assert wm.width == pytest.approx(200) and wm.height == pytest.approx(80)


def test_rescaled_scenes_scale_truth_with_the_picture():
    scenes = {n: np.zeros((100, 200), np.uint8) for n in range(5)}
    truth = {n: [(40, 60, 100)] for n in range(5)}
    s, t = rescaled_scenes(scenes, truth)
    assert s[0].shape == (50, 100) and t[0] == [(20, 30, 50)]
    assert s[4].shape == (130, 260) and t[4] == [(52, 78, 130)]
