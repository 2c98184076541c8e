"""Run the detector: quantise a uint8 frame into the input tensor, one invoke, two outputs.

The model is fully convolutional: the interpreter's input is resized once to the padded
processing size (a multiple of the manifest's `input_multiple`), and one invoke yields the
heat map and the box map (see `edge.head`). Outputs stay raw (int8 for the int8 model):
the decoder thresholds the heat map in raw units and dequantises only the peaks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.manifest import OUTPUT_NAMES, Manifest, TensorSpec, load_manifest
from edge.runtimes import LoadedInterpreter, load_interpreter

log = logging.getLogger(__name__)


def input_lut(spec: TensorSpec) -> np.ndarray:
    """uint8 pixel -> model input value as a 256-entry table.

    The model sees pixel/255; for int8 input that is round(p/255/scale)+zp. A lookup
    table makes quantisation exact and costs one gather per pixel.
    """
    x = np.arange(256, dtype=np.float64) / 255.0
    if spec.dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(np.int8 if spec.dtype == "int8" else np.uint8)
    q = np.clip(np.round(x / spec.scale) + spec.zero_point, info.min, info.max)
    return q.astype(info.dtype)


def dequantise(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """float64: a peak's score must not depend on whether it was read as a scalar or in an array."""
    if spec.dtype == "float32":
        return raw.astype(np.float64)
    return (raw.astype(np.float64) - spec.zero_point) * spec.scale


@dataclass
class RawOutputs:
    """One invoke's outputs, as the runtime returned them (copied out of the interpreter),
    cut to the cells that cover part of the picture: the padding's cells only repeat the
    border and must neither add boxes nor raise the top score."""

    heat: np.ndarray  # (H', W') raw
    box: np.ndarray  # (H', W', 4) raw


class ScoreMapModel:
    """One TFLite detector from a trained model directory, ready to run frames."""

    def __init__(self, manifest: Manifest, loaded: LoadedInterpreter, precision: str) -> None:
        self.manifest = manifest
        self.precision = precision
        self.runtime = loaded.runtime
        self.runtime_version = loaded.version
        self.interpreter = loaded.interpreter
        self.spec = manifest.models[precision]
        self._lut = input_lut(self.spec.input)
        # int8 input with scale 1/255 and zero point -128 (what calibration on 0..255 pictures
        # gives) is just pixel - 128: an XOR of the sign bit, far cheaper than a table lookup.
        self._xor128 = self._lut.dtype == np.int8 and np.array_equal(
            self._lut, (np.arange(256) - 128).astype(np.int8))
        self._in_index = self.interpreter.get_input_details()[0]["index"]
        self._out_index = self._output_indices()
        self.input_size: tuple[int, int] | None = None

    def _output_indices(self) -> dict[str, int]:
        """Output tensors by meaning: the converter does not keep Keras' output order, the
        channel count (1 heat, 4 box) tells them apart."""
        by_channels = {int(d["shape"][-1]): d["index"] for d in self.interpreter.get_output_details()}
        want = {name: self.spec.outputs[name].shape[-1] for name in OUTPUT_NAMES}
        missing = [n for n, c in want.items() if c not in by_channels]
        if missing:
            raise ValueError(f"model outputs have {sorted(by_channels)} channels; the manifest expects "
                             f"{', '.join(f'{n}={c}' for n, c in want.items())}")
        return {n: by_channels[c] for n, c in want.items()}

    def output_index(self, name: str) -> int:
        return self._out_index[name]

    @classmethod
    def load(
        cls, model_dir: str | Path, runtime: str = "auto", num_threads: int = 1, precision: str = "int8"
    ) -> "ScoreMapModel":
        manifest = load_manifest(model_dir)
        loaded = load_interpreter(manifest.model_path(precision), runtime=runtime, num_threads=num_threads)
        return cls(manifest, loaded, precision)

    def set_input_size(self, height: int, width: int) -> None:
        """Resize the interpreter once to the padded size for height x width pictures."""
        size = self.manifest.padded_size(height, width)
        if self.input_size == size:
            return
        self.interpreter.resize_tensor_input(self._in_index, [1, size[0], size[1], 1], strict=False)
        self.interpreter.allocate_tensors()
        self.input_size = size

    def _write_input(self, image: np.ndarray) -> None:
        """Quantise straight into the input tensor's top-left, then replicate the last row and
        column into the padding (what the trainer's crops do at a border): no padded copy."""
        h, w = image.shape
        view = self.interpreter.tensor(self._in_index)()
        buf = view[0, :, :, 0]
        centre = buf[:h, :w]
        if self._xor128:
            np.bitwise_xor(image, 0x80, out=centre.view(np.uint8))
        else:
            centre[...] = self._lut[image]
        if h < buf.shape[0]:
            buf[h:, :w] = centre[-1:]
        if w < buf.shape[1]:
            buf[:, w:] = buf[:, w - 1 : w]
        del view, buf, centre  # no reference to tensor memory may outlive this call

    def invoke_raw(self, image: np.ndarray) -> RawOutputs:
        """Raw heat and box maps for a uint8 greyscale picture of any size (padded up)."""
        if image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"expected a uint8 greyscale HxW image, got {image.dtype} {image.shape}")
        self.set_input_size(*image.shape)  # a no-op when the size is unchanged
        self._write_input(image)
        self.interpreter.invoke()
        rows, cols = self.manifest.output_size(*image.shape)
        heat = self.interpreter.get_tensor(self._out_index["heat"])[0, :rows, :cols, 0].copy()
        box = self.interpreter.get_tensor(self._out_index["box"])[0, :rows, :cols].copy()
        return RawOutputs(heat, box)

    def heat_logits(self, raw: np.ndarray) -> np.ndarray:
        return dequantise(raw, self.spec.outputs["heat"])

    def box_values(self, raw: np.ndarray) -> np.ndarray:
        return dequantise(raw, self.spec.outputs["box"])

    def raw_heat_threshold(self, score: float) -> float:
        """The raw heat value at which the calibrated score reaches `score`: peaks are found on
        the raw map, so no per-cell dequantisation or sigmoid runs on the Pi."""
        logit = self.manifest.calibration.logit_for(score)
        o = self.spec.outputs["heat"]
        return logit if o.dtype == "float32" else logit / o.scale + o.zero_point

    def scores(self, raw_heat: np.ndarray) -> np.ndarray:
        """Calibrated car-centre score per cell."""
        return self.manifest.calibration.score(self.heat_logits(raw_heat))
