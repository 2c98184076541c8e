"""Frames in, boxes out on a real model: fixed-size frames for the daemon, any size for
`edge detect` and evaluation, one invoke per scale."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.detector import Detector, detect_picture
from edge.model import ScoreMapModel


def frame(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h // 8 + 1, w // 8 + 1)).repeat(8, 0).repeat(8, 1)[:h, :w].astype(np.uint8)


def test_detector_sizes_one_interpreter_per_scale(trained_model_dir) -> None:
    d = Detector(trained_model_dir, 240, 320, scales=[1.0, 0.5], runtime="litert")
    assert [m.input_size for m in d.models] == [d.manifest.padded_size(240, 320), d.manifest.padded_size(120, 160)]
    assert d.threshold == d.manifest.threshold and d.nms_iou == d.manifest.nms_iou
    assert Detector(trained_model_dir, 240, 320, runtime="litert", threshold=-1).threshold == d.manifest.threshold
    assert Detector(trained_model_dir, 240, 320, runtime="litert", threshold=0.3, nms_iou=0.2).nms_iou == 0.2


def test_detector_refuses_a_frame_of_another_size(trained_model_dir) -> None:
    d = Detector(trained_model_dir, 240, 320, runtime="litert")
    with pytest.raises(ValueError, match="frame is 300x240, detector expects 320x240"):
        d.detect(frame(240, 300))


def test_detector_and_detect_picture_agree(trained_model_dir) -> None:
    d = Detector(trained_model_dir, 240, 320, scales=[1.0, 0.5], runtime="litert")
    img = frame()
    boxes, top = d.detect(img, threshold=0.0)
    m = ScoreMapModel.load(trained_model_dir, runtime="litert")
    again, top2 = detect_picture(m, img, 0.0, d.nms_iou, [1.0, 0.5])
    assert boxes == again and top == pytest.approx(top2)
    assert boxes and all(b.score >= 0.0 for b in boxes)
    assert d.decode(d.infer(d.preprocess(img)), threshold=1.0) == []


@pytest.mark.parametrize("h,w", [(12, 20), (64, 64), (137, 275), (500, 90)])
def test_detect_picture_any_size_boxes_inside_the_picture(trained_model_dir, h: int, w: int) -> None:
    m = ScoreMapModel.load(trained_model_dir, runtime="litert")
    boxes, top = detect_picture(m, frame(h, w, 1), 0.0, 0.45)
    assert 0.0 <= top <= 1.0
    for b in boxes:
        assert 0 <= b.x and b.x + b.width <= w + 1e-6 and 0 <= b.y and b.y + b.height <= h + 1e-6
        assert b.width > 0 and b.height > 0 and b.score <= top + 1e-9


def test_a_fine_tune_names_the_processing_scales_its_figures_hold_at(trained_model_dir, tmp_path) -> None:
    assert Detector(trained_model_dir, 240, 320, runtime="litert").scales_mismatch() is None  # general model
    site = tmp_path / "site"
    shutil.copytree(trained_model_dir, site)
    raw = json.loads((site / "manifest.json").read_text())
    (site / "manifest.json").write_text(json.dumps({**raw, "processing": {"scales": [2.0]}}))
    assert Detector(site, 240, 320, scales=[2.0], runtime="litert").scales_mismatch() is None
    why = Detector(site, 240, 320, runtime="litert").scales_mismatch()
    assert why is not None and "processing.scales = [2.0]" in why and "runs [1.0]" in why
