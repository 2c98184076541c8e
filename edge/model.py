"""Run the score-map CNN: quantise a uint8 frame, one invoke, dequantise to scores.

The model is fully convolutional: the interpreter's input is resized once to the
processing size, and one invoke yields a dense score map (one score per stride step).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.manifest import Manifest, TensorSpec, load_manifest
from edge.runtimes import LoadedInterpreter, load_interpreter

log = logging.getLogger(__name__)


def input_lut(spec: TensorSpec) -> np.ndarray | None:
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class ScoreMapModel:
    """One TFLite model from a trained model directory, ready to score frames."""

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
        self._out_index = self.interpreter.get_output_details()[0]["index"]
        self.input_size: tuple[int, int] | None = None
        self._buf: np.ndarray | None = None

    @classmethod
    def load(
        cls, model_dir: str | Path, runtime: str = "auto", num_threads: int = 1, precision: str = "int8"
    ) -> "ScoreMapModel":
        manifest = load_manifest(model_dir)
        loaded = load_interpreter(manifest.model_path(precision), runtime=runtime, num_threads=num_threads)
        return cls(manifest, loaded, precision)

    def set_input_size(self, height: int, width: int) -> None:
        """Resize the interpreter once; later frames must have exactly this size."""
        if height < self.manifest.window_height or width < self.manifest.window_width:
            raise ValueError(
                f"input {width}x{height} is smaller than the model window "
                f"{self.manifest.window_width}x{self.manifest.window_height}"
            )
        if self.input_size == (height, width):
            return
        self.interpreter.resize_tensor_input(self._in_index, [1, height, width, 1], strict=False)
        self.interpreter.allocate_tensors()
        self.input_size = (height, width)

    def _write_input(self, image: np.ndarray, pad_rows: int, pad_cols: int) -> None:
        """Quantise straight into the interpreter's input tensor, then replicate the border.

        Replicating after the (elementwise) quantisation equals quantising a padded frame,
        and it spares two full-frame copies per invoke.
        """
        h, w = image.shape
        view = self.interpreter.tensor(self._in_index)()
        buf = view[0, :, :, 0]
        centre = buf[pad_rows : pad_rows + h, pad_cols : pad_cols + w]
        if self._xor128:
            np.bitwise_xor(image, 0x80, out=centre.view(np.uint8))
        else:
            centre[...] = self._lut[image]
        if pad_rows:
            buf[:pad_rows, pad_cols : pad_cols + w] = centre[:1]
            buf[pad_rows + h :, pad_cols : pad_cols + w] = centre[-1:]
        if pad_cols:
            buf[:, :pad_cols] = buf[:, pad_cols : pad_cols + 1]
            buf[:, pad_cols + w :] = buf[:, pad_cols + w - 1 : pad_cols + w]
        del view, buf, centre  # no reference to tensor memory may outlive this call

    def invoke_raw(self, image: np.ndarray, pad_rows: int = 0, pad_cols: int = 0) -> np.ndarray:
        """Raw output tensor (int8 for the int8 model) as a 2-D score map.

        `pad_rows`/`pad_cols`: replicate the border by that much (the model input is then
        larger than `image`), so windows may start outside the picture.
        """
        if image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"expected a uint8 greyscale HxW image, got {image.dtype} {image.shape}")
        size = (image.shape[0] + 2 * pad_rows, image.shape[1] + 2 * pad_cols)
        if self.input_size != size:
            self.set_input_size(*size)
        self._write_input(image, pad_rows, pad_cols)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out_index)
        return out[0, :, :, 0].copy()

    def logits(self, raw: np.ndarray) -> np.ndarray:
        o = self.spec.output
        if o.dtype == "float32":
            return raw.astype(np.float32)
        return (raw.astype(np.float32) - o.zero_point) * o.scale

    def score_map(self, image: np.ndarray, pad_rows: int = 0, pad_cols: int = 0) -> np.ndarray:
        """Car probability per window position (row r, col c = window at r*stride, c*stride
        in the padded input)."""
        return sigmoid(self.logits(self.invoke_raw(image, pad_rows, pad_cols)))

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Scores of a batch of window-sized uint8 crops (N, h, w), one invoke each."""
        h, w = self.manifest.window_height, self.manifest.window_width
        self.set_input_size(h, w)
        return np.array([float(self.score_map(win)[0, 0]) for win in windows], dtype=np.float32)
