"""Calibrated scores: Platt scaling of the heat logit, the default threshold, and the ECE.

Raw heat logits are trained by a focal loss, which pushes scores down (a car's centre cell
rarely reaches 0.9): thresholding them at 0.5 misses cars. Platt scaling fits
score = sigmoid(a * logit + b) to "is this detection a car" on validation data, so a
score of 0.7 means about 7 in 10 such detections are cars; the default threshold is then
the one with the best F1 averaged over the validation sets (each set counts once, so the
big crop sets do not drown the box sets).

Examples: on box sources every detection (IoU >= 0.5 with a car = 1, else 0; detections
on ignore regions are left out) and each missed car counts against recall; on crop
sources, each crop's top score against "has a car".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.manifest import Calibration

ECE_BINS = 10


@dataclass
class SourceScores:
    """What calibration needs from one validation set, in raw-logit units."""

    name: str
    logits: np.ndarray  # one per example
    labels: np.ndarray  # 1 car, 0 not
    missed: int  # cars no example stands for (box sources: cars never detected at the floor)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _platt_loss(a: float, b: float, x: np.ndarray, t: np.ndarray) -> float:
    z = a * x + b
    return float(np.sum(np.logaddexp(0, z) - t * z))  # log loss, overflow-free


def fit_platt(logits: np.ndarray, labels: np.ndarray, iters: int = 100) -> Calibration:
    """Newton's method with backtracking (as in Platt 1999 / Lin et al. 2007) on the log loss
    of sigmoid(a*x + b), with Platt's smoothed targets so a separable set stays finite."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    if n_pos == 0 or n_neg == 0:
        return Calibration()
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    loss = _platt_loss(a, b, x, t)
    for _ in range(iters):
        p = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # sigmoid without overflow
        g = np.array([np.sum((p - t) * x), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        hess = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, g)
        k = 1.0
        while k > 1e-8:
            na, nb = a - k * step[0], b - k * step[1]
            new = _platt_loss(na, nb, x, t)
            if new < loss + 1e-4 * k * float(g @ -step):
                break
            k /= 2
        if k <= 1e-8 or abs(loss - new) < 1e-10 * max(1.0, abs(loss)):
            a, b = (na, nb) if k > 1e-8 and new < loss else (a, b)
            break
        a, b, loss = na, nb, new
    if not a > 0:  # a useless model; keep the scores monotonic rather than inverted
        return Calibration()
    return Calibration(round(float(a), 6), round(float(b), 6))


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Weighted mean |accuracy - confidence| over equal-width score bins."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    if not len(scores):
        return float("nan")
    idx = np.minimum((scores * bins).astype(int), bins - 1)
    err = 0.0
    for k in range(bins):
        m = idx == k
        if m.any():
            err += m.sum() * abs(labels[m].mean() - scores[m].mean())
    return round(float(err / len(scores)), 6)


def f1_at(src: SourceScores, cal: Calibration, threshold: float) -> float:
    s = cal.score(src.logits)
    pos = s >= threshold
    tp = float(np.sum(pos & (src.labels == 1)))
    fp = float(np.sum(pos & (src.labels == 0)))
    fn = float(np.sum(~pos & (src.labels == 1))) + src.missed
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_threshold(sources: list[SourceScores], cal: Calibration) -> tuple[float, float]:
    """(threshold, mean F1 over sources) maximising the mean F1, on a 0.01 grid."""
    best = (0.5, -1.0)
    for thr in np.round(np.arange(0.05, 0.96, 0.01), 2):
        f = float(np.mean([f1_at(s, cal, float(thr)) for s in sources]))
        if f > best[1] + 1e-12:
            best = (float(thr), f)
    return best[0], round(best[1], 6)


def calibrate(sources: list[SourceScores]) -> dict:
    """Fit on every source's examples pooled; report ECE before/after and the threshold."""
    x = np.concatenate([s.logits for s in sources])
    y = np.concatenate([s.labels for s in sources])
    cal = fit_platt(x, y)
    thr, mean_f1 = best_threshold(sources, cal)
    raw = 1 / (1 + np.exp(-np.clip(x, -60, 60)))
    return {
        "calibration": cal,
        "threshold": thr,
        "mean_f1": mean_f1,
        "examples": int(len(x)),
        "ece_raw": expected_calibration_error(raw, y),
        "ece": expected_calibration_error(cal.score(x), y),
        "per_source_ece": {s.name: expected_calibration_error(cal.score(s.logits), s.labels) for s in sources},
    }

