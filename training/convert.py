"""Keras -> SavedModel (model.export) -> TFLite float and full-integer int8.

Full int8 (weights and activations, int8 input and output) is what runs fast on the Pi's
Cortex-A cores; calibration uses a representative set drawn from the training windows
and whole-frame-sized crops, so activation ranges match what the Pi will see.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

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
        data = conv.convert()
    out_path.write_bytes(data)
    return len(data)


def representative_windows(windows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A fixed, seeded sample of training windows (N, H, W) uint8 for calibration."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(windows), size=min(n, len(windows)), replace=False)
    return windows[np.sort(idx)]


def representative_fn(samples: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def gen() -> Iterator[list[np.ndarray]]:
        for s in samples:
            yield [s[None, :, :, None].astype(np.float32) / 255.0]

    return gen


def calibration_stats(samples: np.ndarray) -> dict:
    """What the calibration set looked like, so a Pi can compare its camera against it."""
    flat = samples.reshape(-1)
    hist, edges = np.histogram(flat, bins=16, range=(0, 256))
    return {
        "n": int(samples.shape[0]),
        "mean": round(float(flat.mean()), 3),
        "std": round(float(flat.std()), 3),
        "histogram": {"bin_edges": edges.astype(int).tolist(), "counts": hist.astype(int).tolist()},
    }


def tensor_details(model_path: Path) -> dict:
    """dtype/shape/quantisation of the first input and output, for the manifest."""
    from edge.runtimes import load_interpreter

    interp = load_interpreter(model_path, runtime="auto").interpreter
    out = {}
    for key, det in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        scale, zp = det["quantization"]
        out[key] = {
            "dtype": np.dtype(det["dtype"]).name,
            "shape": [int(x) for x in det["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }
    return out


def count_macs(model, height: int, width: int) -> int:
    """Multiply-accumulates of one invoke at height x width (conv and dense layers).

    Computed from the Keras graph: the TFLite interpreter hides intermediate shapes once
    XNNPack has taken the ops over.
    """
    from keras import layers

    shape: tuple = (1, height, width, 1)
    macs = 0
    for layer in model.layers[1:]:
        out = tuple(layer.compute_output_shape(shape))
        if isinstance(layer, layers.DepthwiseConv2D):  # one kh x kw filter per channel
            kh, kw = layer.kernel_size
            macs += int(np.prod(out[1:])) * kh * kw
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            macs += int(np.prod(out[1:])) * kh * kw * int(shape[-1])
        elif isinstance(layer, layers.Dense):
            macs += int(np.prod(shape[1:])) * layer.units
        shape = out
    return macs
