"""manifest.json: the contract between `make train` and the daemon; its writer and its reader.

The trainer fills a `Manifest` and calls `write`; the Pi calls `load_manifest`. Both sit
here so the schema has one owner. The Pi reads it to know how to feed the model (input
quantisation, input multiple), how to read its two outputs (heat and box, see
`edge.head`), how to turn a heat logit into a calibrated score, and how to check that it
runs the model identically (sha256, golden frames).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2
OUTPUT_NAMES = ("heat", "box")  # edge.head: 1 and 4 channels
DTYPES = ("int8", "uint8", "float32")


class ManifestError(ValueError):
    """The model directory or its manifest is not usable; message names the field."""


@dataclass(frozen=True)
class TensorSpec:
    dtype: str  # one of DTYPES
    shape: list[int]  # reference shape, batch first, e.g. [1, 256, 256, 1]
    scale: float  # 0.0 for float tensors
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": self.shape, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class ModelFile:
    file: str
    sha256: str
    size_bytes: int
    input: TensorSpec
    outputs: dict[str, TensorSpec]  # by OUTPUT_NAMES

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "input": self.input.to_dict(), "outputs": {k: v.to_dict() for k, v in self.outputs.items()}}


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the heat logit: score = sigmoid(a * logit + b), fitted on validation data."""

    a: float = 1.0
    b: float = 0.0

    def score(self, logit):
        import numpy as np

        return 1.0 / (1.0 + np.exp(-np.clip(self.a * np.asarray(logit, dtype=np.float64) + self.b, -60, 60)))

    def logit_for(self, score: float) -> float:
        """The raw heat logit whose calibrated score is `score` (a > 0)."""
        s = min(max(score, 1e-9), 1 - 1e-9)
        return (math.log(s / (1 - s)) - self.b) / self.a


@dataclass(frozen=True)
class Manifest:
    directory: Path
    name: str
    models: dict[str, ModelFile]  # "int8", "float", ...
    stride: int  # output cell size in input pixels
    input_multiple: int  # the input's height and width are padded up to a multiple of this
    calibration: Calibration
    threshold: float  # default detection/presence threshold on the calibrated score
    nms_iou: float
    classes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # golden, training data, figures: read by preflight/people
    # A fine-tune's `processing.scales`: the scales its site figures were measured at (the
    # daemon warns when its config runs others); empty for a general model (any scales)
    processing_scales: tuple[float, ...] = ()

    @property
    def raw(self) -> dict[str, Any]:
        return self.to_dict()

    def model_path(self, precision: str) -> Path:
        if precision not in self.models:
            raise ManifestError(
                f"{self.directory / MANIFEST_NAME}: models.{precision} missing; available: {', '.join(self.models)}"
            )
        return self.directory / self.models[precision].file

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input size for a picture: each side rounded up to the input multiple."""
        m = self.input_multiple
        return max(m, -(-height // m) * m), max(m, -(-width // m) * m)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Cells `edge.model` returns for a height x width picture: those covering part of it
        (the padding's cells beyond are cut off)."""
        return -(-height // self.stride), -(-width // self.stride)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "head": {"stride": self.stride, "input_multiple": self.input_multiple,
                     "outputs": "heat: centre logit per cell; box: dx, dy (cells), log(w/stride), log(h/stride)"},
            "calibration": {"method": "platt", "a": self.calibration.a, "b": self.calibration.b,
                            "score": "sigmoid(a * heat_logit + b)"},
            "thresholds": {"detection": self.threshold, "nms_iou": self.nms_iou},
            "classes": self.classes,
            **({"processing": {"scales": list(self.processing_scales)}} if self.processing_scales else {}),
            **self.extra,
        }

    def write(self) -> Path:
        path = self.directory / MANIFEST_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _get(d: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ManifestError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _tensor(d: dict[str, Any], where: str) -> TensorSpec:
    dtype = _get(d, "dtype", where, str)
    if dtype not in DTYPES:
        raise ManifestError(f"{where}.dtype = {dtype!r}; expected one of {', '.join(DTYPES)}")
    return TensorSpec(
        dtype=dtype,
        shape=[int(x) for x in _get(d, "shape", where, list)],
        scale=float(_get(d, "scale", where, (int, float))),
        zero_point=int(_get(d, "zero_point", where, int)),
    )


def _model_file(m: dict[str, Any], where: str) -> ModelFile:
    outs = _get(m, "outputs", where, dict)
    missing = [n for n in OUTPUT_NAMES if n not in outs]
    if missing:
        raise ManifestError(f"{where}.outputs: missing {missing[0]!r} (a detector has {', '.join(OUTPUT_NAMES)})")
    return ModelFile(
        file=_get(m, "file", where, str),
        sha256=_get(m, "sha256", where, str),
        size_bytes=int(_get(m, "size_bytes", where, int)),
        input=_tensor(_get(m, "input", where, dict), f"{where}.input"),
        outputs={n: _tensor(outs[n], f"{where}.outputs.{n}") for n in OUTPUT_NAMES},
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
        raise ManifestError(f"{where}: format {fmt} not supported by this daemon (expects {FORMAT_VERSION}); "
                            "retrain with the current `make train`")
    models = {n: _model_file(m, f"{where}: models.{n}") for n, m in _get(raw, "models", where, dict).items()}
    head = _get(raw, "head", where, dict)
    cal = _get(raw, "calibration", where, dict)
    thr = _get(raw, "thresholds", where, dict)
    a = float(_get(cal, "a", f"{where}: calibration", (int, float)))
    if not a > 0:
        raise ManifestError(f"{where}: calibration.a = {a}; must be > 0 (a score must rise with the logit)")
    threshold = float(_get(thr, "detection", f"{where}: thresholds", (int, float)))
    if not 0 < threshold < 1:
        raise ManifestError(f"{where}: thresholds.detection = {threshold}; must be in (0, 1)")
    known = {"format", "name", "models", "head", "calibration", "thresholds", "classes", "processing"}
    return Manifest(
        directory=model_dir,
        name=str(raw.get("name", model_dir.name)),
        models=models,
        stride=int(_get(head, "stride", f"{where}: head", int)),
        input_multiple=int(_get(head, "input_multiple", f"{where}: head", int)),
        calibration=Calibration(a, float(_get(cal, "b", f"{where}: calibration", (int, float)))),
        threshold=threshold,
        nms_iou=float(_get(thr, "nms_iou", f"{where}: thresholds", (int, float))),
        classes=list(_get(raw, "classes", where, list)),
        extra={k: v for k, v in raw.items() if k not in known},
        processing_scales=_processing_scales(raw, where),
    )


def _processing_scales(raw: dict[str, Any], where: str) -> tuple[float, ...]:
    """Checked by the config's own rule (edge.config.SCALES_CHECK): what the daemon may be told to run."""
    from edge.config import SCALES_CHECK

    if "processing" not in raw:
        return ()

    scales = _get(_get(raw, "processing", where, dict), "scales", f"{where}: processing", list)
    numbers = all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in scales)
    problem = SCALES_CHECK(scales) if numbers else f"must list numbers, got {scales!r}"
    if problem is not None:
        raise ManifestError(f"{where}: processing.scales {problem}")
    return tuple(float(k) for k in scales)
