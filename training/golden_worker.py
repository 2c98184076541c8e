"""Run one runtime over the golden frames in a fresh process.

Runtimes must not share a process with TensorFlow: tflite-runtime 2.14 and TensorFlow
bundle different TFLite builds, and tflite-runtime fails to read signatures
("vector::reserve") once TensorFlow is loaded. The workstation therefore records each
runtime's golden outputs in its own process, exactly as the Pi will run it.

Usage: python -m training.golden_worker MODEL_DIR FRAMES.npz RUNTIME OUT.npz PRECISION...
"""

from __future__ import annotations

import sys

import numpy as np

from edge.manifest import OUTPUT_NAMES
from edge.model import ScoreMapModel
from edge.preflight import golden_key


def main(argv: list[str]) -> int:
    model_dir, frames_path, runtime, out_path, *precisions = argv
    with np.load(frames_path, allow_pickle=False) as data:
        frames = [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]
    out = {}
    for prec in precisions:
        model = ScoreMapModel.load(model_dir, runtime=runtime, precision=prec)
        for i, frame in enumerate(frames):
            raw = model.invoke_raw(frame)
            for name in OUTPUT_NAMES:
                out[golden_key(prec, runtime, i, name)] = getattr(raw, name)
    np.savez(out_path, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
