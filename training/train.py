"""`make train`: data -> CNN + dense baseline -> TFLite float/int8 -> evaluation -> artifacts.

Evaluation goes through `edge` (the Pi's interpreter wrapper and decoder). The int8 gate
refuses a model that lost more than `gate_points` of accuracy to quantisation; the
previous `artifacts/latest` is then left untouched.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import artifacts, convert
from training.augment import lighting, make_batch_set
from training.datasets import (
    DatasetError,
    LoadReport,
    WindowSet,
    load_picture_folder,
    load_scenes,
    load_uiuc_windows,
    parse_truth,
    split_by_order,
)
from training.model import (
    WINDOW_HEIGHT,
    WINDOW_WIDTH,
    CnnSpec,
    build_cnn,
    build_dense,
    dense_first_layer_weights,
    first_layer_params,
)

log = logging.getLogger(__name__)

PAD_ROWS = 8  # lets windows start above/left of the frame: cars cut by the border
PAD_COLS = 16


class GateError(RuntimeError):
    """int8 lost too much accuracy; nothing was published."""


@dataclass
class TrainConfig:
    data: str = "data/CarData"
    dataset: str = "uiuc"  # "uiuc" or "folder"
    classes: dict[str, str] = field(default_factory=lambda: {"car": "car", "no_car": "no_car"})
    artifacts: str = "artifacts"
    run_name: str = ""
    epochs: int = 40
    dense_epochs: int = 30
    patience: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    val_fraction: float = 0.15
    seed: int = 1234
    copies: int = 2
    calibration_samples: int = 300
    gate_points: float = 1.0
    max_corrupt_fraction: float = 0.02
    detection_threshold: float = 0.5
    nms_iou: float = 0.3
    frame_size: tuple[int, int] = (240, 320)  # height, width used for MACs/latency figures
    scenes: str = ""  # UIUC TestImages for the report; "" = <data>/TestImages if present
    truth: str = ""


def set_seeds(seed: int) -> None:
    """Same seed, same machine, same model: Keras, NumPy, Python and TF op determinism."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def load_dataset(cfg: TrainConfig) -> tuple[WindowSet, LoadReport]:
    if cfg.dataset == "uiuc":
        return load_uiuc_windows(cfg.data, cfg.max_corrupt_fraction)
    if cfg.dataset == "folder":
        return load_picture_folder(cfg.data, cfg.classes, cfg.max_corrupt_fraction)
    raise DatasetError(f"dataset kind {cfg.dataset!r}: use 'uiuc' or 'folder'")


def _as_input(windows: np.ndarray) -> np.ndarray:
    return windows.astype(np.float32)[..., None] / 255.0


def _targets(y: np.ndarray) -> np.ndarray:
    return y.astype(np.float32)[:, None, None, None]


def augmented_windows(cfg: TrainConfig, pos: np.ndarray, neg: np.ndarray):
    """A Keras dataset that draws a fresh augmented epoch after each epoch (seeded).

    The epoch size is fixed by the first draw (hard negatives are drawn at random, so
    later draws are trimmed or topped up) because Keras counts batches once.
    """
    import keras

    class AugmentedWindows(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(cfg.seed)
            x, y = make_batch_set(pos, neg, self.rng, copies=cfg.copies)
            self.n = len(y)
            self.x, self.y = x, _targets(y)

        def _redraw(self) -> None:
            x, y = make_batch_set(pos, neg, self.rng, copies=cfg.copies)
            idx = np.arange(len(y))
            if len(idx) < self.n:
                idx = np.concatenate([idx, self.rng.choice(len(y), self.n - len(idx))])
            idx = idx[: self.n]
            self.x, self.y = x[idx], _targets(y[idx])

        def __len__(self) -> int:
            return int(np.ceil(self.n / cfg.batch_size))

        def __getitem__(self, i: int):
            s = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
            return self.x[s], self.y[s]

        def on_epoch_end(self) -> None:
            self._redraw()

    return AugmentedWindows()


def validation_set(cfg: TrainConfig, val: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Held-out windows plus a fixed augmented draw of them (shifted cars as negatives).

    The plain held-out windows are separated perfectly within a few epochs, after which
    their loss only measures noise and early stopping fires long before the model has
    learnt to localise; the shifted copies keep the validation loss about localisation.
    Built only from held-out training windows, never from test scenes.
    """
    pos, neg = val.images[val.labels == 1], val.images[val.labels == 0]
    x, y = make_batch_set(pos, neg, np.random.default_rng(cfg.seed + 101), copies=cfg.copies)
    return np.concatenate([_as_input(val.images), x]), np.concatenate([_targets(val.labels), _targets(y)])


def train_cnn(cfg: TrainConfig, train: WindowSet, val: WindowSet) -> tuple[Any, dict[str, list[float]], int]:
    """Fresh augmentation every epoch; early stopping on held-out loss, best weights kept."""
    import keras

    model = build_cnn(CnnSpec())
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    data = augmented_windows(cfg, train.images[train.labels == 1], train.images[train.labels == 0])
    vx, vy = validation_set(cfg, val)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, min_delta=1e-4,
                                         restore_best_weights=True, verbose=1)
    halve = keras.callbacks.LearningRateScheduler(lambda epoch: cfg.learning_rate * 0.5 ** (epoch // 10))
    h = model.fit(data, epochs=cfg.epochs, validation_data=(vx, vy),
                  callbacks=[stop, halve], verbose=2)
    history = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    return model, history, int(stop.best_epoch) + 1


def train_dense(cfg: TrainConfig, train: WindowSet, val: WindowSet) -> Any:
    """The seed's baseline on the same windows (flips and lighting; it cannot localise)."""
    import keras

    model = build_dense()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    rng = np.random.default_rng(cfg.seed + 1)
    x = np.concatenate([train.images, train.images[:, :, ::-1]])
    y = np.concatenate([train.labels, train.labels])
    x = np.stack([lighting(w, rng) for w in x])
    model.fit(
        _as_input(x), _targets(y), batch_size=cfg.batch_size, epochs=cfg.dense_epochs,
        validation_data=(_as_input(val.images), _targets(val.labels)), verbose=0, shuffle=True,
        callbacks=[keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True)],
    )
    return model


def time_invoke(model_path: Path, height: int, width: int, runs: int = 50) -> dict[str, float]:
    """Median invoke time at a given input size through edge's default runtime."""
    from edge.model import ScoreMapModel

    m = ScoreMapModel.load(model_path.parent, precision=_precision_of(model_path))
    m.set_input_size(height, width)
    frame = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    for _ in range(5):
        m.invoke_raw(frame)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        m.invoke_raw(frame)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.median(times)), 4), "runtime": m.runtime}


def _precision_of(path: Path) -> str:
    return {"model_int8.tflite": "int8", "model_float.tflite": "float", "dense_baseline_int8.tflite": "dense_int8"}[path.name]


def run(cfg: TrainConfig) -> Path:
    """The whole pipeline; returns the published run directory."""
    t_start = time.time()
    run_name = cfg.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    root = Path(cfg.artifacts)
    set_seeds(cfg.seed)
    ws, load_report = load_dataset(cfg)
    tr_idx, va_idx = split_by_order(ws, cfg.val_fraction)
    train, val = ws.subset(tr_idx), ws.subset(va_idx)
    print(f"data: {load_report.loaded} windows ({train.summary()} train, {val.summary()} held out), "
          f"{len(load_report.corrupt)} unreadable skipped", flush=True)

    t0 = time.time()
    cnn, history, best_epoch = train_cnn(cfg, train, val)
    dense = train_dense(cfg, train, val)
    train_seconds = time.time() - t0

    work = artifacts.new_work_dir(root, run_name)
    try:
        return _finish(cfg, run_name, root, work, ws, load_report, train, val, cnn, dense, history,
                       best_epoch, train_seconds, t_start)
    except BaseException:
        artifacts.discard(work)
        raise


def _finish(cfg, run_name, root, work, ws, load_report, train, val, cnn, dense, history, best_epoch,
            train_seconds, t_start) -> Path:
    from edge.model import ScoreMapModel
    from training import report as report_mod
    from training.evaluate import evaluate_detection, evaluate_windows

    reps = convert.representative_windows(train.images, cfg.calibration_samples, cfg.seed)
    rep_fn = convert.representative_fn(reps)
    sizes = {
        "int8": convert.convert(cnn, work / "model_int8.tflite", rep_fn),
        "float": convert.convert(cnn, work / "model_float.tflite"),
        "dense_int8": convert.convert(dense, work / "dense_baseline_int8.tflite", rep_fn),
    }
    models = {}
    for prec, name in (("int8", "model_int8.tflite"), ("float", "model_float.tflite"),
                       ("dense_int8", "dense_baseline_int8.tflite")):
        details = convert.tensor_details(work / name)
        for k in ("input", "output"):
            details[k]["shape"] = [1, WINDOW_HEIGHT, WINDOW_WIDTH, 1] if k == "input" else [1, 1, 1, 1]
        models[prec] = artifacts.model_entry(work / name, details)
    fh, fw = cfg.frame_size
    manifest: dict[str, Any] = {
        "name": run_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": models,
        "window": {"height": WINDOW_HEIGHT, "width": WINDOW_WIDTH},
        "stride": CnnSpec().stride,
        "pad": {"rows": PAD_ROWS, "cols": PAD_COLS, "mode": "edge"},
        "score_map": {
            "cell_to_window": "cell (r, c) = window with top-left (r*stride - pad.rows, c*stride - pad.cols) in the frame",
            "output_size": "((H + 2*pad.rows - window.height) // stride + 1, (W + 2*pad.cols - window.width) // stride + 1)",
            "output": "logit; score = sigmoid((q - zero_point) * scale)",
        },
        "input_encoding": "pixel/255 quantised with models.<p>.input scale/zero_point (int8 = pixel - 128)",
        "thresholds": {"detection": cfg.detection_threshold, "presence": cfg.detection_threshold, "nms_iou": cfg.nms_iou},
        "classes": ["no_car", "car"],
        "calibration": convert.calibration_stats(reps),
        "training_data": {**load_report.to_dict(), "train": train.summary(), "held_out": val.summary(),
                          "split": f"last {cfg.val_fraction:.0%} of each class in file-name order"},
        "macs": {"input": [fh, fw], "padded_input": [fh + 2 * PAD_ROWS, fw + 2 * PAD_COLS], "macs": convert.count_macs(cnn, fh + 2 * PAD_ROWS, fw + 2 * PAD_COLS)},
        "train_config": {k: v for k, v in asdict(cfg).items()},
    }
    artifacts.write_manifest(work, manifest)

    # Held-out windows through edge's wrapper.
    results: dict[str, Any] = {}
    for prec in ("float", "int8", "dense_int8"):
        m = ScoreMapModel.load(work, precision=prec)
        results[prec] = evaluate_windows(m, val.images, val.labels)
    drop = (results["float"]["accuracy"] - results["int8"]["accuracy"]) * 100
    if drop > cfg.gate_points:
        raise GateError(
            f"int8 accuracy {results['int8']['accuracy']:.4f} is {drop:.2f} points below float "
            f"{results['float']['accuracy']:.4f} (gate: {cfg.gate_points} points). Nothing was published; "
            f"{root / 'latest'} still points at the previous model. Try more calibration samples "
            "(--calibration-samples) or more epochs."
        )

    golden_frames = [val.images[0], val.images[-1]]
    scenes_dir, truth_file = _scene_paths(cfg)
    detection: dict[str, Any] = {}
    scenes, truth = None, None
    if scenes_dir and truth_file:
        truth = parse_truth(truth_file)
        scenes = load_scenes(scenes_dir)
        for prec in ("float", "int8"):
            detection[prec] = evaluate_detection(work, scenes, truth, precision=prec)
        from edge.preprocess import pad

        golden_frames += [pad(scenes[n], PAD_ROWS, PAD_COLS) for n in sorted(scenes)[:2]]
    manifest["golden"] = artifacts.write_golden(work, golden_frames, ["int8", "float"])
    artifacts.write_manifest(work, manifest)

    latency = {
        "window": {p: time_invoke(work / n, WINDOW_HEIGHT, WINDOW_WIDTH) for p, n in
                   (("int8", "model_int8.tflite"), ("float", "model_float.tflite"), ("dense_int8", "dense_baseline_int8.tflite"))},
        "frame": {p: time_invoke(work / n, fh + 2 * PAD_ROWS, fw + 2 * PAD_COLS) for p, n in
                  (("int8", "model_int8.tflite"), ("float", "model_float.tflite"))},
    }
    report = report_mod.build_report(
        cfg=cfg, run_name=run_name, results=results, detection=detection, sizes=sizes, history=history,
        best_epoch=best_epoch, cnn=cnn, dense=dense, latency=latency, manifest=manifest,
        train_seconds=train_seconds, total_seconds=time.time() - t_start, load_report=load_report,
        first_layer={"cnn": first_layer_params(cnn), "dense": first_layer_params(dense),
                     "dense_200x100": dense_first_layer_weights(100, 200)},
    )
    report_mod.write_report(work, report, history, results, detection, scenes, truth)
    final = artifacts.publish(work, root, run_name)
    return final


def _scene_paths(cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    if cfg.scenes and cfg.truth:
        return Path(cfg.scenes), Path(cfg.truth)
    if cfg.dataset == "uiuc":
        d = Path(cfg.data)
        if (d / "TestImages").is_dir() and (d / "trueLocations.txt").is_file():
            return d / "TestImages", d / "trueLocations.txt"
    return None, None
