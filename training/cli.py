"""`python -m training {data,train,evaluate}`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

# TensorFlow's C++ logging (CUDA probing, tf.data attribute notices) is noise for a user on
# a laptop; Python-level errors still surface as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _classes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"--classes wants folder=car,folder=no_car; got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_data(args: argparse.Namespace) -> int:
    from training.data import fetch_cardata

    mirror = Path(args.mirror) if args.mirror else None
    info = fetch_cardata(Path(args.dest), mirror)
    print(f"CarData ready in {args.dest}: {info}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, run

    cfg = TrainConfig(
        data=args.data, dataset=args.dataset, classes=args.classes or {"car": "car", "no_car": "no_car"},
        artifacts=args.artifacts, run_name=args.run_name, epochs=args.epochs, dense_epochs=args.dense_epochs,
        seed=args.seed, calibration_samples=args.calibration_samples, gate_points=args.gate_points,
        copies=args.copies, patience=args.patience,
    )
    final = run(cfg)
    rep = json.loads((final / "report.json").read_text())
    print()
    print(f"model:  {final / 'model_int8.tflite'}  ({rep['int8']['size_bytes']} bytes)")
    print(f"report: {final / 'report.md'}  (figures: {final / 'report.json'})")
    print(f"latest: {Path(args.artifacts) / 'latest'} -> {final.name}")
    for t in rep["targets"]:
        print(f"  target {t['target']}: {t['value']} (goal {t['goal']}) {'met' if t['met'] else 'NOT met' if t['met'] is False else 'n/a'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.model import ScoreMapModel
    from training.datasets import load_picture_folder, load_scenes, parse_truth, truth_is_multiscale
    from training.evaluate import evaluate_detection, evaluate_windows

    out: dict = {}
    if args.pictures:
        ws, rep = load_picture_folder(args.pictures, args.classes)
        model = ScoreMapModel.load(args.model, runtime=args.runtime, precision=args.precision)
        res = evaluate_windows(model, ws.images, ws.labels, threshold=args.threshold or 0.5)
        res.pop("scores")
        out[args.precision] = {**res, "data": rep.to_dict()}
        print(f"{args.precision}: accuracy {res['accuracy']:.4f}  AUC {res['auc']:.4f}  confusion {res['confusion']}")
    else:
        if not (args.scenes and args.truth):
            print("error: give --scenes DIR --truth FILE (UIUC format) or --pictures DIR", file=sys.stderr)
            return 2
        truth = parse_truth(args.truth)
        scenes = load_scenes(args.scenes, sorted(truth))
        scales = [float(s) for s in args.scales.split(",")] if args.scales else None
        det = evaluate_detection(args.model, scenes, truth, precision=args.precision, runtime=args.runtime,
                                 scales=scales, threshold=args.threshold,
                                 multiscale=truth_is_multiscale(args.truth))
        det.pop("_boxes")
        out[args.precision] = {"detection": det}
        print(f"{args.precision}: {det['cars']} cars in {det['scenes']} scenes ({'multi' if det['multiscale'] else 'single'}-scale)"
              f"  EER {det['eer']:.4f}  recall {det['recall']:.4f}  precision {det['precision']:.4f}"
              f"  F {det['f_measure']:.4f} @ threshold {det['threshold']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="get UIUC CarData into data/CarData (mirror first, then download)")
    d.add_argument("--dest", default="data/CarData")
    d.add_argument("--mirror", default=os.environ.get("DATA_MIRROR", "../shared/datasets"))
    d.set_defaults(fn=cmd_data)

    t = sub.add_parser("train", help="train, convert, evaluate, write artifacts")
    t.add_argument("--data", default="data/CarData")
    t.add_argument("--dataset", choices=["uiuc", "folder"], default="uiuc")
    t.add_argument("--classes", type=_classes, help="folder=class pairs, e.g. busy=car,free=no_car")
    t.add_argument("--artifacts", default="artifacts")
    t.add_argument("--run-name", default="")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--dense-epochs", type=int, default=30)
    t.add_argument("--patience", type=int, default=8)
    t.add_argument("--copies", type=int, default=2)
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--calibration-samples", type=int, default=300)
    t.add_argument("--gate-points", type=float, default=1.0)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="score a trained model on UIUC scenes or a picture folder")
    e.add_argument("--model", required=True, help="model directory (with manifest.json)")
    e.add_argument("--scenes")
    e.add_argument("--truth")
    e.add_argument("--pictures")
    e.add_argument("--classes", type=_classes)
    e.add_argument("--precision", choices=["int8", "float"], default="int8")
    e.add_argument("--runtime", default="auto")
    e.add_argument("--scales", default="", help="comma-separated pyramid scales")
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--json")
    e.set_defaults(fn=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    from edge.manifest import ManifestError
    from edge.runtimes import RuntimeUnavailable
    from training.datasets import DatasetError
    from training.train import GateError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge.runtimes").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (DatasetError, GateError, ManifestError, RuntimeUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
