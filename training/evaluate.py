"""Score a model the way the Pi runs it: through `edge`'s interpreter wrapper and decoder.

- Box sources (YOLO): COCO AP and AP@0.5 by pycocotools (the reference implementation);
  ignore regions (buses, trucks) are COCO crowd regions: a detection on one is neither
  right nor wrong.
- Every source: picture-level "is there a car" (top score vs "has a car"): ROC AUC and
  accuracy at the default threshold.
- UIUC test scenes: the dataset's official rule (single-scale), and a multi-scale check
  built by rescaling each scene (0.5x-1.3x) with its truth scaled to match. A detection
  becomes a UIUC window centred on its box: 100x40 single-scale, box-wide multi-scale.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field

import numpy as np

from edge.decode import iou
from edge.detector import detect_picture
from edge.events import Box
from edge.model import ScoreMapModel
from edge.preprocess import resize
from training.datasets import WINDOW_WIDTH

# Detections are collected once at this low threshold; curves sweep above it.
SWEEP_FLOOR = 0.01
UIUC_RESCALES = (0.5, 0.7, 0.9, 1.1, 1.3)
# The UIUC windows frame the car with a small margin; the trainer's box for a window is
# its inner 96% (mix.toml car_box), so a box maps back to a window 1/0.96 as wide.
UIUC_BOX_TO_WINDOW = 1 / 0.96


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under ROC = probability a random car outscores a random non-car (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.all() or not labels.any():
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    return {
        "n": int(len(labels)),
        "accuracy": round(float((tp + tn) / max(1, len(labels))), 6),
        "auc": round(roc_auc(labels, np.asarray(scores)), 6),
        "threshold": threshold,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


@dataclass
class PictureResult:
    name: str
    shape: tuple[int, int]
    truth: np.ndarray  # (N, 4) cars
    ignore: np.ndarray  # (M, 4)
    boxes: list[Box]  # at SWEEP_FLOOR
    top_score: float
    hits: list[int] = field(default_factory=list)  # per box (score order): 1 car, 0 false, -1 on an ignore region


def run_pictures(model: ScoreMapModel, pictures, floor: float = SWEEP_FLOOR) -> tuple[list[PictureResult], float]:
    """Every picture through edge's detector; returns results and ms per picture."""
    out, t = [], 0.0
    for p in pictures:
        t0 = time.perf_counter()
        boxes, top = detect_picture(model, p.image, floor, model.manifest.nms_iou)
        t += time.perf_counter() - t0
        r = PictureResult(p.name, p.image.shape, p.boxes, p.ignore, sorted(boxes, key=lambda b: -b.score), top)
        r.hits = match_iou(r.boxes, r.truth, r.ignore)
        out.append(r)
    return out, t * 1000 / max(1, len(pictures))


def match_iou(boxes: list[Box], truth: np.ndarray, ignore: np.ndarray, thr: float = 0.5) -> list[int]:
    """Greedy in score order (boxes sorted): 1 = takes an unmatched car at IoU >= thr,
    -1 = lies on an ignore region (IoU of the detection's area >= thr), 0 = false."""
    used = np.zeros(len(truth), bool)
    hits = []
    for b in boxes:
        arr = np.array([b.x, b.y, b.width, b.height])
        hit = 0
        if len(truth):
            ious = iou(arr, truth)
            ious[used] = -1
            k = int(np.argmax(ious))
            if ious[k] >= thr:
                used[k] = True
                hit = 1
        if not hit and len(ignore):
            x1 = np.maximum(arr[0], ignore[:, 0])
            y1 = np.maximum(arr[1], ignore[:, 1])
            x2 = np.minimum(arr[0] + arr[2], ignore[:, 0] + ignore[:, 2])
            y2 = np.minimum(arr[1] + arr[3], ignore[:, 1] + ignore[:, 3])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            if (inter / max(arr[2] * arr[3], 1e-9)).max() >= thr:
                hit = -1
        hits.append(hit)
    return hits


def coco_ap(results: list[PictureResult]) -> dict:
    """COCO AP (IoU .50:.95), AP50 and the AP50 precision-recall curve, by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, r in enumerate(results):
        images.append({"id": i, "height": int(r.shape[0]), "width": int(r.shape[1])})
        for crowd, arr in ((0, r.truth), (1, r.ignore)):
            for b in arr:
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [float(v) for v in b],
                             "area": float(b[2] * b[3]), "iscrowd": crowd})
        dets += [{"image_id": i, "category_id": 1, "bbox": [b.x, b.y, b.width, b.height], "score": b.score}
                 for b in r.boxes]
    n_cars = sum(len(r.truth) for r in results)
    if n_cars == 0:
        return {"ap": None, "ap50": None, "cars": 0}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else None
        if dt is None:
            return {"ap": 0.0, "ap50": 0.0, "cars": n_cars, "curve": {"recall": [], "precision": []}}
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][0, :, 0, 0, 2]  # IoU .5, all recall points, all areas, 100 dets
    rec = ev.params.recThrs
    ok = prec > -1
    return {"ap": round(max(0.0, float(ev.stats[0])), 6), "ap50": round(max(0.0, float(ev.stats[1])), 6),
            "cars": n_cars, "curve": {"recall": [round(float(x), 3) for x in rec[ok]],
                                      "precision": [round(float(x), 4) for x in prec[ok]]}}


def detection_at(results: list[PictureResult], threshold: float) -> dict:
    """Box-level precision/recall at one threshold (IoU 0.5; ignore-region boxes not counted)."""
    tp = fp = 0
    for r in results:
        for b, h in zip(r.boxes, r.hits):
            if b.score >= threshold:
                tp += h == 1
                fp += h == 0
    n = sum(len(r.truth) for r in results)
    p, rc = tp / max(1, tp + fp), tp / max(1, n)
    return {"precision": round(p, 6), "recall": round(rc, 6), "f1": round(2 * p * rc / max(p + rc, 1e-9), 6),
            "tp": tp, "fp": fp, "cars": n}


def presence(results: list[PictureResult], threshold: float) -> dict:
    labels = np.array([len(r.truth) > 0 for r in results])
    return classification_metrics(labels, np.array([r.top_score for r in results]), threshold)


# --- UIUC official rule ---------------------------------------------------------------

@dataclass
class Truth:
    row: float
    col: float
    width: float

    @property
    def height(self) -> float:
        return 0.4 * self.width


def uiuc_window(b: Box, multiscale: bool) -> Box:
    """The UIUC window a detection stands for: centred on the box."""
    w = b.width * UIUC_BOX_TO_WINDOW if multiscale else WINDOW_WIDTH
    h = 0.4 * w
    return Box(b.x + b.width / 2 - w / 2, b.y + b.height / 2 - h / 2, w, h, b.score)


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
    last = np.r_[scores[1:] != scores[:-1], True]  # one point per distinct score
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
    two meet. If they never cross, the closest point's mean is reported. The search starts
    at the first true detection: while only false ones have been seen, recall and precision
    are both 0, a "crossing" that says nothing (it made one model's rescaled UIUC EER read
    0.0 when its best-scoring boxes were false and 40% of the later ones true).
    """
    seen = np.nonzero(recall > 0)[0]
    if not len(seen):
        return 0.0, None
    first = int(seen[0])
    recall, precision, thresholds = recall[first:], precision[first:], thresholds[first:]
    diff = recall - precision
    if diff[0] >= 0:  # already past the crossing at the first true detection
        return round(float((recall[0] + precision[0]) / 2), 6), round(float(thresholds[0]), 6)
    for i in range(1, len(diff)):
        if diff[i - 1] <= 0 <= diff[i] or diff[i - 1] >= 0 >= diff[i]:
            denom = diff[i - 1] - diff[i]
            a = 0.0 if denom == 0 else diff[i - 1] / denom
            value = recall[i - 1] + a * (recall[i] - recall[i - 1])
            thr = thresholds[i - 1] + a * (thresholds[i] - thresholds[i - 1])
            return round(float(value), 6), round(float(thr), 6)
    k = int(np.argmin(np.abs(diff)))
    return round(float((recall[k] + precision[k]) / 2), 6), round(float(thresholds[k]), 6)


def rescaled_scenes(scenes: dict[int, np.ndarray], truth: dict[int, list[tuple[int, int, int]]]):
    """Each scene at one of UIUC_RESCALES (by its number), truth scaled to match: the
    multi-scale check, since the dataset's own multi-scale set is not in this copy."""
    out_s, out_t = {}, {}
    for n in sorted(truth):
        s = UIUC_RESCALES[n % len(UIUC_RESCALES)]
        img = scenes[n]
        h, w = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
        out_s[n] = resize(img, w, h)
        out_t[n] = [(round(r * s), round(c * s), round(ww * s)) for r, c, ww in truth[n]]
    return out_s, out_t


def evaluate_uiuc(model: ScoreMapModel, scenes: dict[int, np.ndarray], truth: dict[int, list[tuple[int, int, int]]],
                  threshold: float, multiscale: bool) -> dict:
    """Official rule: recall, precision and F at `threshold`; PR curve and EER over all scores."""
    missing = sorted(set(truth) - set(scenes))
    if missing:
        raise ValueError(f"truth names scenes {missing[:5]} that are not in the scene folder")
    all_hits: list[tuple[float, bool]] = []
    per_image: dict[int, list[Box]] = {}
    n_true, t_total = 0, 0.0
    for n in sorted(truth):
        t0 = time.perf_counter()
        boxes, _ = detect_picture(model, scenes[n], SWEEP_FLOOR, model.manifest.nms_iou)
        t_total += time.perf_counter() - t0
        wins = sorted((uiuc_window(b, multiscale) for b in boxes), key=lambda b: -b.score)
        truths = [Truth(r, c, w) for r, c, w in truth[n]]
        n_true += len(truths)
        hits = match_image(wins, truths, multiscale)
        all_hits += [(b.score, h) for b, h in zip(wins, hits)]
        per_image[n] = wins
    curve = pr_curve(all_hits, n_true)
    tp = sum(1 for s, h in all_hits if h and s >= threshold)
    fp = sum(1 for s, h in all_hits if not h and s >= threshold)
    recall, prec = tp / max(1, n_true), tp / max(1, tp + fp)
    return {
        "scenes": len(truth), "cars": n_true, "multiscale": multiscale, "threshold": threshold,
        "recall": round(recall, 6), "precision": round(prec, 6),
        "f_measure": round(2 * recall * prec / max(recall + prec, 1e-9), 6),
        "true_positives": tp, "false_positives": fp, "eer": curve["eer"], "eer_threshold": curve["eer_threshold"],
        "ms_per_scene": round(t_total * 1000 / max(1, len(truth)), 3), "curve": curve, "_boxes": per_image,
    }

