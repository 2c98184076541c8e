"""manifest.json: the contract between `make train` and the daemon.

The trainer writes it; the Pi reads it to know how to feed the model (quantisation),
how to read its output (window, stride, score-map geometry) and how to check that it
runs the model identically (sha256, golden frames).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class ManifestError(ValueError):
    """The model directory or its manifest is not usable; message names the field."""


@dataclass(frozen=True)
class TensorSpec:
    dtype: str  # "int8", "uint8" or "float32"
    shape: list[int]  # reference shape, batch first, e.g. [1, 40, 100, 1]
    scale: float  # 0.0 for float tensors
    zero_point: int


@dataclass(frozen=True)
class ModelFile:
    file: str
    sha256: str
    size_bytes: int
    input: TensorSpec
    output: TensorSpec


@dataclass(frozen=True)
class Manifest:
    directory: Path
    raw: dict[str, Any]
    models: dict[str, ModelFile]  # "int8", "float"
    window_height: int
    window_width: int
    stride: int
    pad_rows: int
    pad_cols: int
    threshold: float  # default detection/presence threshold on the sigmoid score
    nms_iou: float
    classes: list[str]

    def model_path(self, precision: str) -> Path:
        if precision not in self.models:
            raise ManifestError(
                f"{self.directory / MANIFEST_NAME}: models.{precision} missing; "
                f"available: {', '.join(self.models)}"
            )
        return self.directory / self.models[precision].file

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Score-map size for an input of height x width (valid convolutions)."""
        return (
            (height - self.window_height) // self.stride + 1,
            (width - self.window_width) // self.stride + 1,
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _get(d: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise ManifestError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _tensor(d: dict[str, Any], where: str) -> TensorSpec:
    dtype = _get(d, "dtype", where, str)
    if dtype not in ("int8", "uint8", "float32"):
        raise ManifestError(f"{where}.dtype = {dtype!r}; expected int8, uint8 or float32")
    return TensorSpec(
        dtype=dtype,
        shape=[int(x) for x in _get(d, "shape", where, list)],
        scale=float(_get(d, "scale", where, (int, float))),
        zero_point=int(_get(d, "zero_point", where, int)),
    )


def load_manifest(model_dir: str | Path) -> Manifest:
    """Parse and type-check manifest.json in `model_dir` (files are checked by preflight)."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise ManifestError(f"model directory {model_dir} does not exist; run `make train` or fix model.path")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing; a model directory needs the manifest.json written by `make train`") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    where = str(path)
    fmt = _get(raw, "format", where, int)
    if fmt != FORMAT_VERSION:
        raise ManifestError(f"{where}: format {fmt} not supported by this daemon (expects {FORMAT_VERSION})")
    models = {}
    for name, m in _get(raw, "models", where, dict).items():
        w = f"{where}: models.{name}"
        models[name] = ModelFile(
            file=_get(m, "file", w, str),
            sha256=_get(m, "sha256", w, str),
            size_bytes=int(_get(m, "size_bytes", w, int)),
            input=_tensor(_get(m, "input", w, dict), f"{w}.input"),
            output=_tensor(_get(m, "output", w, dict), f"{w}.output"),
        )
    window = _get(raw, "window", where, dict)
    pad = raw.get("pad", {"rows": 0, "cols": 0})
    thr = _get(raw, "thresholds", where, dict)
    return Manifest(
        directory=model_dir,
        raw=raw,
        models=models,
        window_height=int(_get(window, "height", f"{where}: window", int)),
        window_width=int(_get(window, "width", f"{where}: window", int)),
        stride=int(_get(raw, "stride", where, int)),
        pad_rows=int(pad.get("rows", 0)),
        pad_cols=int(pad.get("cols", 0)),
        threshold=float(_get(thr, "detection", f"{where}: thresholds", (int, float))),
        nms_iou=float(thr.get("nms_iou", 0.3)),
        classes=list(_get(raw, "classes", where, list)),
    )
