"""`python -m training {data,train,evaluate}`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edge.argparsing import RUNTIME_CHOICES, Parser, add_version, non_negative_int, positive_int, probability
from training.train import TrainConfig  # the training defaults' one owner; imports no TensorFlow

# TensorFlow's C++ logging (CUDA probing, oneDNN notices) is noise for a user on a laptop;
# `--verbose` brings it back. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_MIRROR = os.environ.get("DATA_MIRROR", "../shared/datasets")


def _classes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"--classes wants folder=car,folder=no_car; got {part!r}")
        k, v = part.split("=", 1)
        if v.strip() not in ("car", "no_car"):
            raise argparse.ArgumentTypeError(f"--classes: {k.strip()}={v.strip()}: the class must be car or no_car")
        out[k.strip()] = v.strip()
    return out


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _user_sources(args: argparse.Namespace) -> list:
    """`--yolo DIR` / `--folder DIR`: the user's own labelled pictures as mix sources."""
    from training.sources import SourceSpec

    out = []
    if args.yolo:
        out.append(SourceSpec(name=Path(args.yolo).name or "yolo", kind="yolo", path=str(Path(args.yolo).resolve()),
                              weight=args.user_weight, split="order", car_classes=tuple(args.car_classes),
                              ignore_classes=tuple(args.ignore_classes)))
    if args.folder:
        out.append(SourceSpec(name=Path(args.folder).name or "folder", kind="folder",
                              path=str(Path(args.folder).resolve()), weight=args.user_weight,
                              split=args.folder_split, classes=tuple((args.classes or {"car": "car", "no_car": "no_car"}).items())))
    for s in out:
        s.check("command line")
    return out


def cmd_data(args: argparse.Namespace) -> int:
    from training.data import fetch_all

    results = fetch_all(Path(args.dest), Path(args.mirror) if args.mirror else None, args.spec)
    bad = [r for r in results if not r["ok"]]
    for r in results:
        print(f"{'ok ' if r['ok'] else 'BAD'} {r['name']}: {r['detail']}")
    return 1 if bad else 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, run

    cfg = TrainConfig(
        spec=args.spec, data_root=args.data_root, cache=args.cache, artifacts=args.artifacts,
        run_name=args.run_name, arch=args.arch, epochs=args.epochs, per_epoch=args.per_epoch, size=args.size,
        batch_size=args.batch_size, patience=args.patience, dense_epochs=args.dense_epochs, seed=args.seed,
        calibration_samples=args.calibration_samples, gate_points=args.gate_points,
        regress_points=args.regress_points, promote=args.promote, limit=args.limit, video=args.video,
        user_sources=_user_sources(args), only_user=args.only_user, weights=args.weights,
    )
    final, decision = run(cfg)
    rep = json.loads((final / "report.json").read_text())
    print()
    print(f"model:  {final / 'model_int8.tflite'}  ({rep['model']['int8_bytes']:,} bytes)")
    print(f"report: {final / 'report.md'}  (figures: {final / 'report.json'})")
    print(f"latest: {decision}")
    for name, d in rep["datasets"].items():
        ap = f"AP50 {d['ap50_int8']:.3f}  " if d.get("ap50_int8") is not None else ""
        print(f"  {name}: {ap}presence AUC {d['presence_auc_int8']:.3f}")
    for t in rep["targets"]:
        state = "met" if t["met"] else ("n/a" if t["met"] is None else "NOT met")
        print(f"  target {t['target']}: {t['value']} (goal {t['goal']}) {state}")
    print(f"\nnext: .venv/bin/python -m edge detect --model {final} PICTURE.jpg   "
          f"(or `make bench MODEL={final}`, `make deploy PI=user@host`)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Adapt a trained model to one camera: its YOLO folder + a replay of the default mix."""
    from training.sources import SourceSpec
    from training.train import TrainConfig, run

    base = Path(args.base).resolve()
    raw = json.loads((base / "manifest.json").read_text())
    site = SourceSpec(name=args.name or Path(args.data).resolve().name, kind="yolo", path=str(Path(args.data).resolve()),
                      weight=args.site_weight, split="order", val_fraction=args.holdout, val_gap=args.holdout_gap,
                      car_classes=tuple(args.car_classes), ignore_classes=tuple(args.ignore_classes),
                      max_side=args.max_side, scale=args.scale)
    site.check("command line")
    tc = raw.get("train_config", {})
    cfg = TrainConfig(
        spec=args.spec, data_root=args.data_root, cache=args.cache, artifacts=args.artifacts, run_name=args.run_name,
        arch=tc.get("arch", "fpn"), size=tc.get("size", 256), epochs=args.epochs, per_epoch=args.per_epoch,
        learning_rate=args.learning_rate, patience=args.epochs, dense_epochs=args.dense_epochs, seed=args.seed,
        gate_points=args.gate_points, regress_points=args.regress_points, promote=args.promote, limit=args.limit,
        video=args.video, user_sources=[site], base=str(base), fps=args.fps, weights=args.weights,
        calibration_samples=args.calibration_samples,
    )
    final, decision = run(cfg)
    rep = json.loads((final / "report.json").read_text())
    st = rep["site"]
    print()
    print(f"model:  {final / 'model_int8.tflite'}")
    print(f"report: {final / 'report.md'}")
    print(f"latest: {decision}")
    print(f"{st['site']}: {st['held_out_frames']} held-out frames  AP50 base {st['base']['ap50']} -> fine-tuned "
          f"{st['finetuned']['ap50']} ({st['ap50_gain_points']:+} points); false alarms/hour "
          f"{st['base']['false_alarms_per_hour']} -> {st['finetuned']['false_alarms_per_hour']}")
    print("default validation sets (points lost): " + ", ".join(
        f"{n} {d['drop_points']:+.2f}" for n, d in st["default_sets"].items()))
    for t in rep["targets"]:
        state = "met" if t["met"] else ("n/a" if t["met"] is None else "NOT met")
        print(f"  target {t['target']}: {t['value']} (goal {t['goal']}) {state}")
    if site.scale != 1.0:
        print(f"\nfigures at processing scale {site.scale:g}: run this camera with processing.scales = [{site.scale:g}]")
    print(f"\nnext: make deploy PI=user@host MODEL={final}")
    return 0


def cmd_site_frames(args: argparse.Namespace) -> int:
    from training.site_frames import materialise

    info = materialise(Path(args.video), Path(args.labels), Path(args.out))
    print(f"{args.out}: {info['frames']} labelled frames of {args.video} as a YOLO folder")
    return 0


def _print_bad(path: str, why: str) -> None:
    print(json.dumps({"image": path, "error": why}), flush=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.model import ScoreMapModel

    model = ScoreMapModel.load(args.model, runtime=args.runtime, precision=args.precision)
    thr = args.threshold or model.manifest.threshold
    out: dict = {"model": str(args.model), "precision": args.precision, "threshold": thr}
    if args.scenes or args.truth:
        if not (args.scenes and args.truth):
            print("error: --scenes and --truth go together (UIUC layout)", file=sys.stderr)
            return 2
        out["uiuc"] = _eval_uiuc(args, model, thr)
    if args.pictures:
        out["pictures"] = _eval_pictures(args, model, thr)
    if args.yolo:
        out["yolo"] = _eval_yolo(args, model, thr)
    if len(out) == 3:
        print("error: give --scenes DIR --truth FILE (UIUC), --pictures DIR --classes ..., or --yolo DIR",
              file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _eval_uiuc(args, model, thr: float) -> dict:
    from training.datasets import load_scenes, parse_truth, truth_is_multiscale
    from training.evaluate import evaluate_uiuc

    truth = parse_truth(args.truth)
    scenes = load_scenes(args.scenes, sorted(truth))
    det = evaluate_uiuc(model, scenes, truth, thr, multiscale=truth_is_multiscale(args.truth))
    det.pop("_boxes")
    print(f"{args.precision}: {det['cars']} cars in {det['scenes']} scenes ({'multi' if det['multiscale'] else 'single'}-scale)"
          f"  EER {det['eer']:.4f}  recall {det['recall']:.4f}  precision {det['precision']:.4f}"
          f"  F {det['f_measure']:.4f} @ threshold {thr}")
    return det


def _eval_pictures(args, model, thr: float) -> dict:
    """Presence on a class-folder: each whole picture through the detector, as `edge detect`
    does (the picture's top score against the threshold): one documented truth."""
    from edge.detector import detect_picture
    from training.evaluate import classification_metrics
    from training.sources import SourceSpec, _folder_files, _read

    spec = SourceSpec(name="pictures", kind="folder", path=args.pictures,
                      classes=tuple((args.classes or {"car": "car", "no_car": "no_car"}).items()))
    spec.check("--pictures")
    labels, scores = [], []
    for p, is_car in _folder_files(spec, Path(args.pictures)):
        try:
            img, _ = _read(p, args.max_side)
        except (OSError, ValueError, SyntaxError) as exc:
            _print_bad(str(p), f"cannot read picture: {exc}")
            continue
        _, top = detect_picture(model, img, thr, model.manifest.nms_iou)
        labels.append(int(is_car))
        scores.append(top)
    import numpy as np

    res = classification_metrics(np.array(labels), np.array(scores), thr)
    print(f"{args.precision}: {res['n']} pictures  accuracy {res['accuracy']:.4f}  AUC {res['auc']:.4f}  "
          f"confusion {res['confusion']} @ threshold {thr}")
    return res


def _eval_yolo(args, model, thr: float) -> dict:
    from training.evaluate import coco_ap, detection_at, presence, run_pictures
    from training.sources import SourceSpec, load_source

    spec = SourceSpec(name="yolo", kind="yolo", path=args.yolo, car_classes=tuple(args.car_classes),
                      ignore_classes=tuple(args.ignore_classes), max_side=args.max_side)
    spec.check("--yolo")
    src = load_source(spec, Path(args.yolo), None, require_split=False)
    res, _ = run_pictures(model, src.pictures)
    # run_pictures uses the sweep floor; scores are already calibrated by the manifest
    ap = coco_ap(res)
    at = detection_at(res, thr)
    pres = presence(res, thr)
    print(f"{args.precision}: {len(res)} pictures, {ap['cars']} cars  AP {ap['ap']}  AP50 {ap['ap50']}  "
          f"precision {at['precision']:.3f} recall {at['recall']:.3f} @ {thr}  presence AUC {pres['auc']:.4f}")
    labels = src.report.get("labels", {})
    if labels.get("bad_lines") or labels.get("labels_without_picture"):
        print(f"label problems: {json.dumps(labels)}")
    return {"coco": {k: v for k, v in ap.items() if k != "curve"}, "at_threshold": at, "presence": pres,
            "labels": labels}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m training", description=__doc__)
    add_version(p)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="link/copy every dataset of the mix into data/ (mirror first) and check it")
    d.add_argument("--dest", default="data", help="data root that the mix spec's paths are relative to")
    d.add_argument("--mirror", default=DEFAULT_MIRROR, help="folder holding CarData/, drone-madison/, ...")
    d.add_argument("--spec", default=None, help="dataset mix TOML (default: training/mix.toml)")
    d.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ log and debug logging")
    d.set_defaults(fn=cmd_data)

    t = sub.add_parser("train", help="train, convert, evaluate, write artifacts")
    t.add_argument("--spec", default=str(Path(__file__).with_name("mix.toml")), help="dataset mix TOML")
    t.add_argument("--data-root", default="data", help="the mix's relative paths start here")
    t.add_argument("--cache", default="data/cache", help="cache of decoded pictures ('' = none)")
    t.add_argument("--yolo", help="add your own YOLO-format folder (images/ + labels/) to the mix")
    t.add_argument("--car-classes", type=_names, default=["car"], help="--yolo: class names or numbers that are cars")
    t.add_argument("--ignore-classes", type=_names, default=[], help="--yolo: classes neither car nor background")
    t.add_argument("--folder", help="add your own class folders (DIR/car/*, DIR/no_car/*) to the mix")
    t.add_argument("--classes", type=_classes,
                   help="--folder: folder=class pairs, e.g. busy=car,free=no_car; without it: car=car,no_car=no_car")
    t.add_argument("--folder-split", choices=["order", "time"], default="order",
                   help="--folder: hold out the last files by name, or by YYYYMMDD_HHMM time")
    t.add_argument("--user-weight", type=float, default=2.0, help="share of your own source in each epoch (vs mix weights)")
    t.add_argument("--only-user", action="store_true", help="train on --yolo/--folder alone, without the default mix")
    t.add_argument("--artifacts", default="artifacts", help="where runs and the latest link live")
    t.add_argument("--run-name", default="", help="run directory name (default run-YYYYMMDD-HHMMSS)")
    t.add_argument("--epochs", type=positive_int, default=TrainConfig.epochs, help="training epochs (early stopping may end sooner)")
    t.add_argument("--per-epoch", type=positive_int, default=TrainConfig.per_epoch, help="training pictures drawn per epoch")
    t.add_argument("--arch", choices=["fpn", "plain"], default="fpn",
                   help="fpn: stride-32 context brought back to the stride-8 heads; plain: the stride-8 trunk alone")
    t.add_argument("--size", type=int, default=TrainConfig.size, choices=[128, 192, 256, 320],
                   help="training canvas side (px; a multiple of 64, the network's coarsest stride)")
    t.add_argument("--batch-size", type=positive_int, default=TrainConfig.batch_size, help="batch size")
    t.add_argument("--patience", type=positive_int, default=TrainConfig.patience, help="early stopping patience (epochs)")
    t.add_argument("--dense-epochs", type=positive_int, default=TrainConfig.dense_epochs, help="epochs of the dense baseline")
    t.add_argument("--seed", type=int, default=TrainConfig.seed, help="random seed (same seed, same model)")
    t.add_argument("--calibration-samples", type=positive_int, default=TrainConfig.calibration_samples, help="pictures for int8 calibration")
    t.add_argument("--gate-points", type=float, default=TrainConfig.gate_points, help="max int8-vs-float loss (points) on any dataset")
    t.add_argument("--regress-points", type=float, default=TrainConfig.regress_points,
                   help="max AP50 loss (points) vs the current latest before latest stays put")
    t.add_argument("--promote", action="store_true", help="move latest to this run even if it regressed")
    t.add_argument("--limit", type=int, default=0, help="at most N pictures per source and split (0 = all)")
    t.add_argument("--weights", default="", help="skip training: use these fitted weights ('' = train)")
    t.add_argument("--video", default=str(Path(DEFAULT_MIRROR) / "video" / "highway-320x240.avi"),
                   help="clip annotated in the report ('' = none)")
    t.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ log and debug logging")
    t.set_defaults(fn=cmd_train)

    f = sub.add_parser("finetune", help="adapt a trained model to one camera's labelled frames (YOLO folder)")
    f.add_argument("--base", required=True, help="run directory to start from (e.g. artifacts/latest)")
    f.add_argument("--data", required=True, help="the camera's YOLO folder (file names in time order)")
    f.add_argument("--name", default="", help="name of the site in the report (default: the folder's name)")
    f.add_argument("--car-classes", type=_names, default=["car"], help="car class names or numbers")
    f.add_argument("--ignore-classes", type=_names, default=[], help="classes neither car nor background")
    f.add_argument("--holdout", type=float, default=0.25, help="newest fraction of the site's frames held out")
    f.add_argument("--holdout-gap", type=non_negative_int, default=0,
                   help="frames just before the held-out ones left out of training (a clip's neighbouring "
                        "frames show the same cars)")
    # Fine-tuning defaults, measured on the highway proof at --scale 2 (make site-proof, README;
    # held-out AP50 int8 / worst points lost on the default sets): weight 3, 1e-3, 40 epochs
    # 0.868 / 0.19 (run site17); weight 2, 1e-3, 30 epochs 0.845 / 0.39 (site16); weight 5,
    # 1e-3, 20 epochs 0.876 / 0.71 (site18), but 2.58 lost with the same recipe on an earlier
    # label set (site12); weight 2, 3e-4, 20 epochs 0.782 (site9, earlier labels).
    f.add_argument("--site-weight", type=float, default=3.0,
                   help="weight of the site's frames against the mix's (replay) weights, which sum to 5")
    f.add_argument("--fps", type=float, default=15.0, help="the camera's frame rate (false alarms per hour)")
    f.add_argument("--max-side", type=positive_int, default=320, help="frames are stored with this longer side")
    f.add_argument("--scale", type=float, default=1.0,
                   help="then resized by this factor, as the daemon's processing.scales = [SCALE] runs the camera "
                        "(cars too small at the processing size)")
    f.add_argument("--epochs", type=positive_int, default=40, help="fine-tuning epochs")
    f.add_argument("--per-epoch", type=positive_int, default=640, help="training pictures per epoch")
    f.add_argument("--learning-rate", type=float, default=1e-3, help="starting learning rate (cosine decay)")
    f.add_argument("--spec", default=str(Path(__file__).with_name("mix.toml")), help="replay mix (TOML)")
    f.add_argument("--data-root", default="data", help="the mix's relative paths start here")
    f.add_argument("--cache", default="data/cache", help="cache of decoded pictures ('' = none)")
    f.add_argument("--limit", type=int, default=0, help="at most N replay pictures per source and split")
    f.add_argument("--dense-epochs", type=int, default=TrainConfig.dense_epochs, help="epochs of the dense baseline (report)")
    f.add_argument("--seed", type=int, default=TrainConfig.seed, help="random seed")
    f.add_argument("--calibration-samples", type=positive_int, default=TrainConfig.calibration_samples,
                   help="pictures for int8 calibration")
    f.add_argument("--gate-points", type=float, default=TrainConfig.gate_points, help="max int8-vs-float loss (points)")
    f.add_argument("--weights", default="", help="skip fine-tuning: use these fitted weights ('' = fine-tune)")
    f.add_argument("--regress-points", type=float, default=TrainConfig.regress_points, help="see train --regress-points")
    f.add_argument("--promote", action="store_true", help="move latest to this run even if it regressed")
    f.add_argument("--artifacts", default="artifacts", help="where runs and the latest link live")
    f.add_argument("--run-name", default="", help="run directory name (default run-YYYYMMDD-HHMMSS)")
    f.add_argument("--video", default="", help="clip annotated in the report ('' = none)")
    f.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ log and debug logging")
    f.set_defaults(fn=cmd_finetune)

    sf = sub.add_parser("site-frames", help="a YOLO folder from a video + label files naming its frames by index")
    sf.add_argument("--video", required=True, help="the camera's clip")
    sf.add_argument("--labels", required=True, help="folder with labels/frame_NNNNNN.txt and classes.yaml")
    sf.add_argument("--out", required=True, help="YOLO folder to write (images/ + labels/)")
    sf.add_argument("--verbose", action="store_true", help="debug logging")
    sf.set_defaults(fn=cmd_site_frames)

    e = sub.add_parser("evaluate", help="score a trained model on UIUC scenes, a class folder or a YOLO folder")
    e.add_argument("--model", required=True, help="model directory (with manifest.json)")
    e.add_argument("--scenes", help="UIUC TestImages folder")
    e.add_argument("--truth", help="UIUC truth: trueLocations.txt (n: (i,j)) or the multi-scale (i,j,w) format")
    e.add_argument("--pictures", help="class folders DIR/car, DIR/no_car: presence per picture")
    e.add_argument("--classes", type=_classes,
                   help="--pictures: folder=class pairs, e.g. busy=car,free=no_car; without it: car=car,no_car=no_car")
    e.add_argument("--yolo", help="YOLO-format folder: COCO AP, AP50, precision/recall")
    e.add_argument("--car-classes", type=_names, default=["car"], help="--yolo: car class names or numbers")
    e.add_argument("--ignore-classes", type=_names, default=[], help="--yolo: ignore-region classes")
    e.add_argument("--max-side", type=positive_int, default=320, help="pictures are scaled down to this longer side")
    e.add_argument("--precision", choices=["int8", "float"], default="int8", help="which model file")
    e.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help="TFLite runtime")
    e.add_argument("--threshold", type=probability, default=None, help="calibrated score threshold 0..1; without it: the manifest's")
    e.add_argument("--json", help="also write the figures to this file")
    e.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ log and debug logging")
    e.set_defaults(fn=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    from edge.manifest import ManifestError
    from edge.runtimes import RuntimeUnavailable
    from training import quiet
    from training.datasets import DatasetError
    from training.train import GateError
    from training.yolo import YoloError

    args = build_parser().parse_args(argv)
    quiet.VERBOSE = args.verbose
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    elif args.cmd in ("train", "finetune"):
        quiet.import_tensorflow()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge.runtimes").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        return args.fn(args)
    except (DatasetError, YoloError, GateError, ManifestError, RuntimeUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
