"""The detection score (UIUC rule, PR curve, EER) on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from edge.events import Box
from training.evaluate import (
    Truth,
    classification_metrics,
    equal_error_rate,
    is_match,
    match_image,
    pr_curve,
    roc_auc,
)


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


def test_perfect_detector_has_eer_one():
    c = pr_curve([(0.9, True), (0.8, True)], 2)
    assert c["eer"] == 1.0


def test_auc_and_confusion():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    m = classification_metrics(y, np.array([0.1, 0.6, 0.4, 0.9]))
    assert m["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 1} and m["accuracy"] == 0.5
