"""Frame in, boxes out: preprocess -> infer (one invoke per pyramid scale) -> decode.

The daemon times each step separately; `training` and `edge detect` call `detect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.decode import decode
from edge.events import Box
from edge.model import ScoreMapModel
from edge.preprocess import ScaledInput, model_input_size, scaled


@dataclass
class ScoreMaps:
    maps: list[tuple[np.ndarray, float, int, int]]  # (scores, scale, pad_rows, pad_cols)

    @property
    def top_score(self) -> float:
        return max((float(m[0].max()) for m in self.maps if m[0].size), default=0.0)


class Detector:
    """Holds one interpreter per pyramid scale, each resized once to its input size."""

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
            mf = m.manifest
            m.set_input_size(*model_input_size(height, width, s, mf.pad_rows, mf.pad_cols))
            self.models.append(m)
        self.manifest = self.models[0].manifest
        self.threshold = self.manifest.threshold if threshold is None or threshold < 0 else threshold
        self.nms_iou = self.manifest.nms_iou if nms_iou is None else nms_iou

    @property
    def runtime(self) -> str:
        return self.models[0].runtime

    def preprocess(self, image: np.ndarray) -> list[ScaledInput]:
        if image.shape != (self.height, self.width):
            raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, detector expects {self.width}x{self.height}")
        mf = self.manifest
        return scaled(image, self.scales, mf.pad_rows, mf.pad_cols)

    def infer(self, inputs: list[ScaledInput]) -> ScoreMaps:
        return ScoreMaps(
            [(m.score_map(i.image) if i.padded else m.score_map(i.image, i.pad_rows, i.pad_cols),
              i.scale, i.pad_rows, i.pad_cols) for m, i in zip(self.models, inputs)]
        )

    def decode(self, maps: ScoreMaps, threshold: float | None = None) -> list[Box]:
        mf = self.manifest
        thr = self.threshold if threshold is None else threshold
        return decode(maps.maps, thr, self.nms_iou, mf.stride, mf.window_height, mf.window_width)

    def detect(self, image: np.ndarray, threshold: float | None = None) -> tuple[list[Box], float]:
        maps = self.infer(self.preprocess(image))
        return self.decode(maps, threshold), maps.top_score
