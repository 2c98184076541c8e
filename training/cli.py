"""`python -m training {data,train,evaluate}`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edge.argparsing import RUNTIME_CHOICES, Parser, add_version, positive_int, probability, scales

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
    p = Parser(prog="python -m training", description=__doc__)
    add_version(p)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    d = sub.add_parser("data", help="get UIUC CarData into data/CarData (mirror first, then download)")
    d.add_argument("--dest", default="data/CarData", help="folder to put CarData in")
    d.add_argument("--mirror", default=os.environ.get("DATA_MIRROR", "../shared/datasets"),
                   help="local folder searched before downloading ($DATA_MIRROR)")
    d.set_defaults(fn=cmd_data)

    t = sub.add_parser("train", help="train, convert, evaluate, write artifacts")
    t.add_argument("--data", default="data/CarData", help="CarData folder, or a labelled picture folder")
    t.add_argument("--dataset", choices=["uiuc", "folder"], default="uiuc",
                   help="uiuc: UIUC CarData layout; folder: one sub-folder per class")
    t.add_argument("--classes", type=_classes,
                   help="for --dataset folder: folder=class pairs, e.g. busy=car,free=no_car; "
                        "without it: car=car,no_car=no_car")
    t.add_argument("--artifacts", default="artifacts", help="where runs are written (and `latest` points)")
    t.add_argument("--run-name", default="", help="name of the run folder; empty: run-YYYYmmdd-HHMMSS")
    t.add_argument("--epochs", type=positive_int, default=40, help="maximum epochs for the CNN (early stopping may end sooner)")
    t.add_argument("--dense-epochs", type=int, default=30, help="maximum epochs for the dense baseline model")
    t.add_argument("--patience", type=positive_int, default=8, help="early-stopping patience in epochs")
    t.add_argument("--copies", type=positive_int, default=2, help="augmented copies of each training window per epoch")
    t.add_argument("--seed", type=int, default=1234, help="random seed")
    t.add_argument("--calibration-samples", type=positive_int, default=300,
                   help="pictures used to calibrate int8 quantisation")
    t.add_argument("--gate-points", type=float, default=1.0,
                   help="refuse an int8 model that loses more than this many accuracy points to quantisation")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="score a trained model on UIUC scenes or a picture folder")
    e.add_argument("--model", required=True, help="model directory (with manifest.json)")
    e.add_argument("--scenes", help="UIUC test scene folder (with --truth)")
    e.add_argument("--truth", help="UIUC truth file for --scenes")
    e.add_argument("--pictures", help="labelled picture folder, one sub-folder per class (instead of --scenes)")
    e.add_argument("--classes", type=_classes,
                   help="for --pictures: folder=class pairs, e.g. busy=car,free=no_car; "
                        "without it: car=car,no_car=no_car")
    e.add_argument("--precision", choices=["int8", "float"], default="int8", help="which model of the manifest")
    e.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help="TFLite runtime")
    e.add_argument("--scales", type=scales, default=None,
                   help="comma-separated pyramid scales, each 0.1..4; without it: the manifest's")
    e.add_argument("--threshold", type=probability, default=None,
                   help="score threshold 0..1; without it: 0.5 for --pictures, the manifest's for --scenes")
    e.add_argument("--json", help="also write the figures to this JSON file")
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
