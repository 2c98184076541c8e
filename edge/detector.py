"""Frame in, boxes out: preprocess -> infer (one invoke per frame) -> decode.

The daemon times each step separately; `training` and `edge detect` call `detect`.
Optional extra scales (an image pyramid) cost one invoke each; the default is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.decode import decode, peak_boxes
from edge.events import Box
from edge.model import RawOutputs, ScoreMapModel
from edge.preprocess import ScaledInput, scaled, scaled_size


@dataclass
class Outputs:
    """Raw outputs of one frame's invokes, one per scale."""

    maps: list[tuple[RawOutputs, float]]  # (raw outputs, scale)
    top_score: float  # calibrated, the best cell over all scales


def candidates(model: ScoreMapModel, raw: RawOutputs, threshold: float, scale: float,
               clip: tuple[int, int]) -> np.ndarray:
    """[x, y, w, h, score] rows (frame pixels) at the heat peaks scoring >= threshold."""
    return peak_boxes(raw.heat, model.raw_heat_threshold(threshold), raw.box, model.box_values, model.scores,
                      model.manifest.stride, scale, clip)


def detect_picture(model: ScoreMapModel, image: np.ndarray, threshold: float, nms_iou: float,
                   scales: list[float] | tuple[float, ...] = (1.0,)) -> tuple[list[Box], float]:
    """One picture of any size (pictures vary in `edge detect` and in evaluation): the
    interpreter is resized when the padded size changes, then as `Detector.detect`."""
    cands, top = [], 0.0
    for si in scaled(image, list(scales)):
        raw = model.invoke_raw(si.image)
        cands.append(candidates(model, raw, threshold, si.scale, image.shape))
        top = max(top, float(model.scores(np.asarray(raw.heat.max()))))
    return decode(cands, nms_iou), top


class Detector:
    """Holds one interpreter per pyramid scale, each resized once to its padded input size."""

    def __init__(
        self,
        model_dir: str | Path,
        height: int,
        width: int,
        scales: list[float] | tuple[float, ...] = (1.0,),
        runtime: str = "auto",
        num_threads: int = 1,
        precision: str = "int8",
        threshold: float | None = None,
        nms_iou: float | None = None,
    ) -> None:
        self.height, self.width = height, width
        self.scales = list(scales)
        self.models: list[ScoreMapModel] = []
        for s in self.scales:
            m = ScoreMapModel.load(model_dir, runtime=runtime, num_threads=num_threads, precision=precision)
            m.set_input_size(*scaled_size(height, width, s))
            self.models.append(m)
        self.manifest = self.models[0].manifest
        self.threshold = self.manifest.threshold if threshold is None or threshold < 0 else threshold
        self.nms_iou = self.manifest.nms_iou if nms_iou is None or nms_iou < 0 else nms_iou

    @property
    def runtime(self) -> str:
        return self.models[0].runtime

    def scales_mismatch(self) -> str | None:
        """Why these scales are not the ones a fine-tuned model was measured at, or None.

        A fine-tune for a camera whose cars are small is trained and scored on frames resized
        by its processing scale (`training finetune --scale`); run at another scale, the
        site figures its report promises do not hold. Not an error: a user may trade them
        for a cheaper invoke."""
        want = self.manifest.processing_scales
        if not want or tuple(self.scales) == want:
            return None
        return (f"model {self.manifest.name} was fine-tuned and scored at processing.scales = {list(want)}, "
                f"this config runs {self.scales}; set [processing] scales = {list(want)} for the figures in its report")

    def preprocess(self, image: np.ndarray) -> list[ScaledInput]:
        if image.shape != (self.height, self.width):
            raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, detector expects {self.width}x{self.height}")
        return scaled(image, self.scales)

    def infer(self, inputs: list[ScaledInput]) -> Outputs:
        maps = [(m.invoke_raw(i.image), i.scale) for m, i in zip(self.models, inputs)]
        m0 = self.models[0]
        top = max(float(m0.scores(np.asarray(raw.heat.max()))) for raw, _ in maps)
        return Outputs(maps, top)

    def decode(self, outputs: Outputs, threshold: float | None = None) -> list[Box]:
        thr = self.threshold if threshold is None else threshold
        clip = (self.height, self.width)
        return decode([candidates(m, raw, thr, scale, clip) for m, (raw, scale) in zip(self.models, outputs.maps)],
                      self.nms_iou)

    def detect(self, image: np.ndarray, threshold: float | None = None) -> tuple[list[Box], float]:
        outputs = self.infer(self.preprocess(image))
        return self.decode(outputs, threshold), outputs.top_score
