"""manifest.json, the trainer-to-Pi contract: written and read in one module; every load error
names the field and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    OUTPUT_NAMES,
    Calibration,
    Manifest,
    ManifestError,
    ModelFile,
    TensorSpec,
    load_manifest,
)


def manifest(directory: Path, **changes) -> Manifest:
    """A complete manifest as the trainer fills it (int8 and float models)."""
    def model(dtype: str, scale: float) -> ModelFile:
        zp = -128 if dtype == "int8" else 0
        return ModelFile(
            file=f"model_{'int8' if dtype == 'int8' else 'float'}.tflite", sha256="ab" * 32, size_bytes=1234,
            input=TensorSpec(dtype, [1, 256, 320, 1], scale, zp),
            outputs={"heat": TensorSpec(dtype, [1, 32, 40, 1], scale * 2, 5 if scale else 0),
                     "box": TensorSpec(dtype, [1, 32, 40, 4], scale * 3, -2 if scale else 0)})

    base = {"directory": directory, "name": "run1",
            "models": {"int8": model("int8", 1 / 255), "float": model("float32", 0.0)},
            "stride": 8, "input_multiple": 32, "calibration": Calibration(1.5, -0.25), "threshold": 0.4,
            "nms_iou": 0.45, "classes": ["car"],
            "extra": {"golden": {"file": "golden.npz", "sha256": "cd" * 32, "frames": []}, "created": "2026-12-06"}}
    base.update(changes)
    return Manifest(**base)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    m = manifest(tmp_path)
    path = m.write()
    assert path == tmp_path / MANIFEST_NAME and not list(tmp_path.glob("*.tmp"))
    back = load_manifest(tmp_path)
    assert back == m
    assert back.to_dict() == m.to_dict() == json.loads(path.read_text())
    assert back.to_dict()["format"] == FORMAT_VERSION
    assert back.model_path("int8") == tmp_path / "model_int8.tflite"


def test_a_fine_tunes_processing_scales_round_trip(tmp_path: Path) -> None:
    m = manifest(tmp_path, processing_scales=(2.0,))
    m.write()
    back = load_manifest(tmp_path)
    assert back == m and back.processing_scales == (2.0,)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["processing"] == {"scales": [2.0]}
    assert "processing" not in manifest(tmp_path).to_dict()  # a general model: any scales


def edit(tmp_path: Path, change) -> Path:
    raw = manifest(tmp_path).to_dict()
    change(raw)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    return tmp_path


def _del(*keys: str):
    def change(raw):
        node = raw
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return change


def _set(value, *keys: str):
    def change(raw):
        node = raw
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


@pytest.mark.parametrize("change,words", [
    (_del("models", "int8", "outputs", "box"), ["models.int8.outputs", "'box'"]),
    (_del("models", "float", "outputs"), ["models.float", "missing field 'outputs'"]),
    (_set(0.0, "calibration", "a"), ["calibration.a = 0.0", "must be > 0"]),
    (_set(-2, "calibration", "a"), ["calibration.a = -2.0", "must be > 0"]),
    (_set(0.0, "thresholds", "detection"), ["thresholds.detection = 0.0", "(0, 1)"]),
    (_set(1.0, "thresholds", "detection"), ["thresholds.detection = 1.0", "(0, 1)"]),
    (_set(1.5, "thresholds", "detection"), ["thresholds.detection = 1.5", "(0, 1)"]),
    (_set(1, "format"), ["format 1 not supported", f"expects {FORMAT_VERSION}", "retrain"]),
    (_del("format"), ["missing field 'format'"]),
    (_set("8", "head", "stride"), ["head", "'stride' has the wrong type (str)"]),
    (_set(True, "head", "input_multiple"), ["'input_multiple' has the wrong type (bool)"]),
    (_set("int4", "models", "int8", "outputs", "heat", "dtype"), ["models.int8.outputs.heat.dtype = 'int4'"]),
    (_del("calibration", "b"), ["calibration", "missing field 'b'"]),
    (_del("thresholds", "nms_iou"), ["thresholds", "missing field 'nms_iou'"]),
    (_set({"scales": [0]}, "processing"), ["processing.scales must list", "in [0.1, 4]", "got [0]"]),
    (_set({"scales": []}, "processing"), ["processing.scales must list at least one number"]),
    (_set({"scales": ["2"]}, "processing"), ["processing.scales must list numbers, got ['2']"]),
    (_set({}, "processing"), ["processing", "missing field 'scales'"]),
])
def test_load_errors_name_the_field(tmp_path: Path, change, words: list[str]) -> None:
    with pytest.raises(ManifestError) as exc:
        load_manifest(edit(tmp_path, change))
    msg = str(exc.value)
    assert str(tmp_path / MANIFEST_NAME) in msg
    for w in words:
        assert w in msg, msg


def test_missing_directory_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist; run `make train`"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ManifestError, match="manifest.json is missing"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)


def test_unknown_precision_names_the_models_field(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"models.int16 missing; available: int8, float"):
        manifest(tmp_path).model_path("int16")


@pytest.mark.parametrize("h,w,padded", [(240, 320, (256, 320)), (12, 20, (32, 32)), (1, 1, (32, 32)),
                                        (32, 64, (32, 64)), (33, 65, (64, 96))])
def test_padded_and_output_sizes(tmp_path: Path, h: int, w: int, padded: tuple[int, int]) -> None:
    m = manifest(tmp_path)
    assert m.padded_size(h, w) == padded
    assert m.output_size(h, w) == (-(-h // 8), -(-w // 8))  # the cells covering the picture


def test_calibration_score_and_its_inverse() -> None:
    cal = Calibration(2.0, -1.0)
    for s in (0.01, 0.3, 0.5, 0.9, 0.999):
        assert cal.score(cal.logit_for(s)) == pytest.approx(s)
    logits = np.linspace(-10, 10, 41)
    assert np.all(np.diff(cal.score(logits)) >= 0), "a > 0: the score rises with the logit"
    assert cal.score(np.array([-1e9, 1e9])).tolist() == pytest.approx([0.0, 1.0])  # no overflow
    assert np.isfinite(cal.logit_for(0.0)) and np.isfinite(cal.logit_for(1.0))


def test_output_names_are_the_heads() -> None:
    from edge.head import BOX_CHANNELS, HEAT_CHANNELS

    assert OUTPUT_NAMES == ("heat", "box")
    m = manifest(Path("."))
    assert [m.models["int8"].outputs[n].shape[-1] for n in OUTPUT_NAMES] == [HEAT_CHANNELS, BOX_CHANNELS]
