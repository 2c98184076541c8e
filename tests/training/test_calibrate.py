"""Platt scaling, ECE and the default threshold, on examples with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from edge.manifest import Calibration
from training.calibrate import SourceScores, best_threshold, calibrate, expected_calibration_error, fit_platt


def _draw(a, b, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * x + b)))).astype(float)
    return x, y


def test_platt_recovers_a_known_calibration():
    x, y = _draw(0.5, -1.0)
    cal = fit_platt(x, y)
    assert cal.a == pytest.approx(0.5, abs=0.05) and cal.b == pytest.approx(-1.0, abs=0.1)


def test_calibration_lowers_the_ece_of_overconfident_scores():
    x, y = _draw(0.4, 0.5, seed=1)
    raw = 1 / (1 + np.exp(-x))
    cal = fit_platt(x, y)
    assert expected_calibration_error(cal.score(x), y) < 0.02 < expected_calibration_error(raw, y)


def test_one_class_or_inverted_data_keeps_scores_monotonic():
    assert fit_platt(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == Calibration()
    assert fit_platt(np.array([-3.0, -2, 2, 3]), np.array([1.0, 1, 0, 0])) == Calibration()


def test_threshold_maximises_mean_f1_and_counts_missed_cars():
    cal = Calibration()
    logits = np.log(np.array([0.9, 0.8, 0.7, 0.3, 0.2]) / (1 - np.array([0.9, 0.8, 0.7, 0.3, 0.2])))
    src = SourceScores("s", logits, np.array([1.0, 1, 0, 0, 0]), missed=0)
    thr, f1 = best_threshold([src], cal)
    assert 0.7 < thr <= 0.8 and f1 == pytest.approx(1.0)
    missed = SourceScores("m", logits, np.array([1.0, 1, 0, 0, 0]), missed=2)
    assert best_threshold([missed], cal)[1] == pytest.approx(2 * 2 / (2 * 2 + 2))


def test_calibrate_reports_ece_before_and_after_per_source():
    x, y = _draw(0.3, 1.0, n=4000, seed=2)
    out = calibrate([SourceScores("a", x[:2000], y[:2000], 0), SourceScores("b", x[2000:], y[2000:], 0)])
    assert out["examples"] == 4000 and set(out["per_source_ece"]) == {"a", "b"}
    assert out["ece"] < out["ece_raw"] and 0.05 <= out["threshold"] <= 0.95
