"""Keras -> SavedModel (model.export) -> TFLite float and full-integer int8.

Full int8 (weights and activations, int8 input and outputs) is what runs fast on the Pi's
Cortex-A cores; calibration uses a representative set of training pictures from every
source, so activation ranges match what the Pi will see.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge.manifest import TensorSpec
from training.quiet import native_stderr_silenced

log = logging.getLogger(__name__)


def export_saved_model(model, directory: Path) -> Path:
    model.export(str(directory), format="tf_saved_model", verbose=False)
    return directory


def convert(
    model,
    out_path: Path,
    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
) -> int:
    """Write a .tflite (int8 when `representative` is given, float otherwise); returns bytes."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        saved = export_saved_model(model, Path(tmp) / "saved_model")
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if representative is not None:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        with native_stderr_silenced():
            data = conv.convert()
    out_path.write_bytes(data)
    return len(data)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Replicate the last row/column up to a multiple, as `edge.model` fills its input tensor."""
    h, w = image.shape
    ph, pw = max(multiple, -(-h // multiple) * multiple), max(multiple, -(-w // multiple) * multiple)
    return np.pad(image, ((0, ph - h), (0, pw - w)), mode="edge")


def representative_fn(samples: list[np.ndarray], multiple: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Calibration pictures (uint8, any size) as the model sees them: padded, pixel/255."""
    def gen() -> Iterator[list[np.ndarray]]:
        for s in samples:
            yield [pad_to_multiple(s, multiple)[None, :, :, None].astype(np.float32) / 255.0]

    return gen


def calibration_stats(samples: list[np.ndarray]) -> dict:
    """What the calibration set looked like, so a Pi can compare its camera against it."""
    flat = np.concatenate([s.reshape(-1) for s in samples])
    hist, edges = np.histogram(flat, bins=16, range=(0, 256))
    return {
        "n": len(samples),
        "mean": round(float(flat.mean()), 3),
        "std": round(float(flat.std()), 3),
        "histogram": {"bin_edges": edges.astype(int).tolist(), "counts": hist.astype(int).tolist()},
    }


def tensor_details(model_path: Path) -> tuple[TensorSpec, dict[str, TensorSpec]]:
    """dtype/shape/quantisation of the input and of each output (named by channel count)."""
    from edge.head import BOX_CHANNELS, HEAT_CHANNELS
    from edge.runtimes import load_interpreter

    interp = load_interpreter(model_path, runtime="auto").interpreter

    def spec(det: dict) -> TensorSpec:
        scale, zp = det["quantization"]
        return TensorSpec(np.dtype(det["dtype"]).name, [int(x) for x in det["shape"]], float(scale), int(zp))

    outs = {}
    for det in interp.get_output_details():
        name = {HEAT_CHANNELS: "heat", BOX_CHANNELS: "box"}[int(det["shape"][-1])]
        outs[name] = spec(det)
    return spec(interp.get_input_details()[0]), outs


def count_macs(build_fixed: Callable[[int, int], Any], height: int, width: int) -> int:
    """Multiply-accumulates of one invoke at height x width (conv and dense layers).

    `build_fixed(h, w)` builds the same architecture with a fixed input size, so every
    layer's input and output shapes are known (the TFLite interpreter hides intermediate
    shapes once XNNPack has taken the ops over).
    """
    from keras import layers

    model = build_fixed(height, width)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, (layers.DepthwiseConv2D, layers.Conv2D)):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            per_out = kh * kw * (1 if isinstance(layer, layers.DepthwiseConv2D) else int(layer.input.shape[-1]))
            macs += int(np.prod(out[1:])) * per_out
        elif isinstance(layer, layers.Dense):
            macs += int(np.prod(layer.input.shape[1:])) * layer.units
    return macs
