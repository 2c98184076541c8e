"""Score a model the way the Pi runs it: through `edge`'s interpreter wrapper and decoder.

Window classification (accuracy, ROC AUC, confusion) on held-out windows, and detection on
UIUC scenes with the dataset's official rule: a detection is correct when its top-left
corner lies in the ellipse centred on the true corner with semi-axes 25% of the window
(multi-scale: an ellipsoid that also spans 25% of the true width in scale); each true car
is matched at most once; everything else is a false positive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.detector import Detector
from edge.events import Box
from edge.model import ScoreMapModel

# Detections are collected once at this low threshold; the PR curve sweeps above it.
SWEEP_FLOOR = 0.02


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under ROC = probability a random car outscores a random non-car (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    labels = np.asarray(labels).astype(int)
    pred = (scores >= threshold).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    return {
        "n": int(len(labels)),
        "accuracy": round(float((tp + tn) / max(1, len(labels))), 6),
        "auc": round(roc_auc(labels, scores), 6),
        "threshold": threshold,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def evaluate_windows(model: ScoreMapModel, images: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy/AUC/confusion of one TFLite model on windows, plus per-invoke latency."""
    t0 = time.perf_counter()
    scores = model.score_windows(images)
    per_invoke_ms = (time.perf_counter() - t0) * 1000 / max(1, len(images))
    out = classification_metrics(labels, scores, threshold)
    out["window_invoke_ms"] = round(per_invoke_ms, 4)
    out["scores"] = scores
    return out


@dataclass
class Truth:
    row: int
    col: int
    width: int

    @property
    def height(self) -> float:
        return 0.4 * self.width


def is_match(det: Box, t: Truth, multiscale: bool) -> bool:
    """UIUC rule on the top-left corner (and the width, for multi-scale truth)."""
    d = ((det.y - t.row) / (0.25 * t.height)) ** 2 + ((det.x - t.col) / (0.25 * t.width)) ** 2
    if multiscale:
        d += ((det.width - t.width) / (0.25 * t.width)) ** 2
    return d <= 1.0


def match_image(dets: list[Box], truths: list[Truth], multiscale: bool) -> list[bool]:
    """Greedy in score order: each true car takes the best-scoring detection that hits it."""
    used = [False] * len(truths)
    hits = []
    for det in sorted(dets, key=lambda b: -b.score):
        hit = False
        for k, t in enumerate(truths):
            if not used[k] and is_match(det, t, multiscale):
                used[k] = hit = True
                break
        hits.append(hit)
    return hits


def pr_curve(scored_hits: list[tuple[float, bool]], n_true: int) -> dict:
    """Recall/precision at every score threshold, and the recall-precision EER."""
    if not scored_hits:
        return {"thresholds": [], "recall": [], "precision": [], "eer": 0.0, "eer_threshold": None}
    arr = sorted(scored_hits, key=lambda x: -x[0])
    scores = np.array([s for s, _ in arr])
    hits = np.array([h for _, h in arr], dtype=float)
    tp = np.cumsum(hits)
    fp = np.cumsum(1 - hits)
    recall = tp / max(1, n_true)
    precision = tp / np.maximum(1, tp + fp)
    # Keep one point per distinct score (the last of each run of ties).
    last = np.r_[scores[1:] != scores[:-1], True]
    scores, recall, precision = scores[last], recall[last], precision[last]
    eer, eer_thr = equal_error_rate(recall, precision, scores)
    return {
        "thresholds": [round(float(s), 6) for s in scores],
        "recall": [round(float(r), 6) for r in recall],
        "precision": [round(float(p), 6) for p in precision],
        "eer": eer,
        "eer_threshold": eer_thr,
    }


def equal_error_rate(recall: np.ndarray, precision: np.ndarray, thresholds: np.ndarray) -> tuple[float, float | None]:
    """The value where recall = precision along the curve (linear interpolation at the crossing).

    Recall rises and precision tends to fall as the threshold drops; the EER is where the
    two meet. If they never cross, the closest point's mean is reported.
    """
    diff = recall - precision
    for i in range(1, len(diff)):
        if diff[i - 1] <= 0 <= diff[i] or diff[i - 1] >= 0 >= diff[i]:
            denom = diff[i - 1] - diff[i]
            a = 0.0 if denom == 0 else diff[i - 1] / denom
            value = recall[i - 1] + a * (recall[i] - recall[i - 1])
            thr = thresholds[i - 1] + a * (thresholds[i] - thresholds[i - 1])
            return round(float(value), 6), round(float(thr), 6)
    k = int(np.argmin(np.abs(diff)))
    return round(float((recall[k] + precision[k]) / 2), 6), round(float(thresholds[k]), 6)


def evaluate_detection(
    model_dir: str | Path,
    scenes: dict[int, np.ndarray],
    truth: dict[int, list[tuple[int, int, int]]],
    precision: str = "int8",
    runtime: str = "auto",
    scales: list[float] | None = None,
    threshold: float | None = None,
    multiscale: bool | None = None,
) -> dict:
    """Run edge's Detector on each scene, score with the UIUC rule, return figures + curve.

    `threshold` (default: the manifest's) gives the operating point's recall/precision/F;
    the curve and EER come from sweeping all detections above SWEEP_FLOOR.
    """
    if multiscale is None:
        multiscale = any(w != 100 for items in truth.values() for (_, _, w) in items)
    scales = scales or ([1.0] if not multiscale else [1.25, 1.0, 0.8, 0.64, 0.5, 0.4])
    missing = sorted(set(truth) - set(scenes))
    if missing:
        raise ValueError(f"truth names scenes {missing[:5]} that are not in the scene folder")
    detectors: dict[tuple[int, int], Detector] = {}
    all_hits: list[tuple[float, bool]] = []
    per_image: dict[int, list[Box]] = {}
    n_true = 0
    t_total = 0.0
    op_thr = None
    for n in sorted(truth):
        img = scenes[n]
        key = img.shape
        if key not in detectors:
            detectors[key] = Detector(model_dir, img.shape[0], img.shape[1], scales, runtime=runtime, precision=precision)
        det = detectors[key]
        op_thr = det.threshold if threshold is None else threshold
        t0 = time.perf_counter()
        boxes, _ = det.detect(img, threshold=SWEEP_FLOOR)
        t_total += time.perf_counter() - t0
        truths = [Truth(r, c, w) for r, c, w in truth[n]]
        n_true += len(truths)
        hits = match_image(boxes, truths, multiscale)
        all_hits += [(b.score, h) for b, h in zip(sorted(boxes, key=lambda b: -b.score), hits)]
        per_image[n] = boxes
    curve = pr_curve(all_hits, n_true)
    assert op_thr is not None
    tp = sum(1 for s, h in all_hits if h and s >= op_thr)
    fp = sum(1 for s, h in all_hits if not h and s >= op_thr)
    recall = tp / max(1, n_true)
    prec = tp / max(1, tp + fp)
    f = 0.0 if recall + prec == 0 else 2 * recall * prec / (recall + prec)
    return {
        "scenes": len(truth),
        "cars": n_true,
        "multiscale": multiscale,
        "scales": scales,
        "threshold": op_thr,
        "recall": round(recall, 6),
        "precision": round(prec, 6),
        "f_measure": round(f, 6),
        "true_positives": tp,
        "false_positives": fp,
        "eer": curve["eer"],
        "eer_threshold": curve["eer_threshold"],
        "ms_per_scene": round(t_total * 1000 / max(1, len(truth)), 3),
        "curve": curve,
        "_boxes": per_image,
    }
