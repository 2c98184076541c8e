"""`python -m edge` / `car-detector`: run the service, check a config, detect on pictures, preflight,
bench, soak, export labelled captures."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge.argparsing import (
    RUNTIME_CHOICES,
    RUNTIME_NAMES,
    Parser,
    add_version,
    choice_list,
    int_list,
    positive_int,
    probability,
    scales,
)
from edge.config import DEFAULT_CONFIG_PATH, Config


def cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon import run_service

    return run_service(args.config, max_frames=args.max_frames)


def cmd_preflight(args: argparse.Namespace) -> int:
    from edge.manifest import ManifestError
    from edge.preflight import PreflightError, preflight_dir
    from edge.runtimes import RuntimeUnavailable

    try:
        rep = preflight_dir(args.model, runtime=args.runtime, precision=args.precision)
    except (ManifestError, PreflightError, RuntimeUnavailable) as exc:
        print(f"preflight FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rep))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    """One JSON line per picture (or video frame): boxes in the picture's own pixels and the
    presence decision; a bad input is a line with "error" and the batch goes on (exit 1)."""
    from pathlib import Path

    from edge.detector import detect_picture
    from edge.events import Box
    from edge.model import ScoreMapModel
    from edge.pictures import Picture, pictures

    model = ScoreMapModel.load(args.model, runtime=args.runtime, precision=args.precision)
    pyramid = [float(s) for s in args.scales.split(",")]
    thr = args.threshold if args.threshold is not None else model.manifest.threshold
    zones = _zones(args.config) if args.config else None
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    status = 0
    for n, item in enumerate(pictures(args.images, args.every)):
        if not isinstance(item, Picture):
            print(json.dumps({"image": item[0], "error": item[1]}), flush=True)
            status = 1
            continue
        try:
            found, top = detect_picture(model, item.image, thr, model.manifest.nms_iou, pyramid)
        except (RuntimeError, ValueError, MemoryError) as exc:  # this picture only; the batch goes on
            print(json.dumps({"image": item.label, "error": f"detection failed: {exc}"}), flush=True)
            status = 1
            continue
        sx, sy = item.width / item.image.shape[1], item.height / item.image.shape[0]  # read -> original pixels
        boxes = [Box(b.x * sx, b.y * sy, b.width * sx, b.height * sy, b.score) for b in found]
        print(json.dumps({
            "image": item.label, "width": item.width, "height": item.height, "car": bool(boxes),
            "top_score": round(top, 4), "threshold": thr, "boxes": [b.to_dict() for b in boxes],
        }), flush=True)
        if save:
            _save_annotated(save, n, item, found, zones)
    return status


def _zones(config_path: str) -> tuple[tuple[int, int], dict[str, tuple[float, float, float, float]]]:
    """Zones of a daemon config in the camera frame's pixels, with that frame's size: zones are
    written in processing pixels, i.e. after `processing.crop` and the resize, so map them back
    through both before scaling them onto a picture."""
    from edge.config import load_config

    cfg = load_config(config_path)
    p, src = cfg.processing, cfg.source
    cx, cy, cw, ch = p.crop or (0, 0, src.width, src.height)
    kx, ky = cw / p.width, ch / p.height
    return (src.width, src.height), {n: (cx + z.x * kx, cy + z.y * ky, z.width * kx, z.height * ky)
                                     for n, z in cfg.zones.items()}


def _save_annotated(folder, n: int, pic, boxes, zones) -> None:
    """`--save`: the picture as read (at most MAX_SIDE on its longer side, so a 10000x10000
    photo never needs its full size in memory again) with the boxes as found on it, scores
    and the zones scaled to it."""
    from edge.snapshot import annotate

    drawn = None
    if zones:
        (pw, ph), zs = zones
        h, w = pic.image.shape
        sx, sy = w / pw, h / ph
        drawn = {name: (x * sx, y * sy, zw * sx, zh * sy) for name, (x, y, zw, zh) in zs.items()}
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in pic.label.rsplit("/", 1)[-1])
    annotate(pic.image, boxes, drawn).save(folder / f"{n:05d}_{stem}.jpg", quality=90)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import format_table, run_bench, write_json

    rows = run_bench(args.model, args.video, args.width, args.height, args.runs, args.warmup,
                     [int(t) for t in args.threads.split(",")],
                     args.runtimes.split(",") if args.runtimes else None,
                     args.precisions.split(","))
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows)
        print(f"wrote {args.json}")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from edge.bench import run_soak, write_json

    rep = run_soak(args.model, args.video, args.frames)
    growth = rep["rss_growth_kb"]
    print(f"soak: {rep['frames']} frames ({rep['source']}, {rep['runtime']}) in {rep['seconds']} s = {rep['fps']} fps; "
          f"RSS {rep['rss_start_kb'] / 1024:.1f} MB after warm-up -> {rep['rss_end_kb'] / 1024:.1f} MB at end "
          f"(growth {growth / 1024 if growth is not None else float('nan'):.2f} MB)")
    if args.json:
        write_json(args.json, rep)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Load and validate a config the way the service will; one line either way."""
    from edge.config import ConfigError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"OK {args.file}: {config_summary(cfg)}")
    return 0


def cmd_export_captures(args: argparse.Namespace) -> int:
    """Labelled captured frames -> a YOLO folder for `python -m training finetune --data`.

    A frame that cannot be exported is named and skipped (exit 1 after the rest are out);
    no labelled frame at all is an error too: the folder would train nothing.
    """
    from pathlib import Path

    from edge.capture_store import CaptureStore, CaptureStoreError

    src = Path(args.captures)
    if not src.is_dir():
        print(f"error: --captures {src} is not a folder; point it at capture.dir (or what make pull copied)",
              file=sys.stderr)
        return 1
    try:
        summary = CaptureStore(src, max_bytes=2**62).export_yolo(Path(args.out))
    except CaptureStoreError as exc:
        print(f"error: --out {args.out}: {exc}", file=sys.stderr)
        return 1
    for skip in summary["skipped"]:
        print(f"error: capture {skip['id']} skipped: {skip['why']}", file=sys.stderr)
    print(json.dumps(summary))
    if summary["frames"] == 0:
        print(f"error: no labelled frames in {src}; label some on the page (Labelling) first", file=sys.stderr)
        return 1
    return 1 if summary["skipped"] else 0


def config_summary(cfg: Config) -> str:
    src = cfg.source
    where = f" {src.path}" if src.kind in ("video", "images") else ""
    zones = ", ".join(f"{n}{' (classify)' if z.classify else ''}" for n, z in cfg.zones.items()) or "none"
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "off"
    http = f"{cfg.http.host}:{cfg.http.port}" if cfg.http.enabled else "off"
    return (f"source {src.kind}{where} {src.width}x{src.height} @ {src.fps:g} fps; model {cfg.model.path} "
            f"({cfg.model.runtime}, {cfg.model.precision}); zones: {zones}; events {cfg.events.path}; "
            f"mqtt {mqtt}; http {http}")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="car-detector", description="Is there a car in the picture, and where?")
    add_version(p)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="run the detector service", description="Run the detector service.")
    r.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="TOML config file")
    r.add_argument("--max-frames", type=positive_int, default=None,
                   help="stop after N frames (tests, replays); without it: run until stopped")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("check-config", help="validate a config file: OK and a summary, or the error",
                       description="Validate a config file as `run` would load it (exit 1 on an error).")
    c.add_argument("file", help="TOML config file, e.g. " + str(DEFAULT_CONFIG_PATH))
    c.set_defaults(fn=cmd_check_config)

    pf = sub.add_parser("preflight", help="check a model directory runs identically here")
    pf.add_argument("--model", required=True, help="model directory (with manifest.json)")
    pf.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES, help="TFLite runtime")
    pf.add_argument("--precision", default="int8", choices=["int8", "float"], help="which model of the manifest")
    pf.set_defaults(fn=cmd_preflight)

    d = sub.add_parser("detect", help="boxes for pictures, folders, globs or video clips, one JSON line each")
    d.add_argument("--model", required=True, help="model directory (with manifest.json)")
    d.add_argument("images", nargs="+",
                   help="pictures, folders (searched recursively), globs ('cam/*.jpg') or video clips (every frame)")
    d.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES, help="TFLite runtime")
    d.add_argument("--precision", default="int8", choices=["int8", "float"], help="which model of the manifest")
    d.add_argument("--threshold", type=probability, default=None,
                   help="score threshold 0..1; without it: the manifest's threshold")
    d.add_argument("--scales", type=scales, default="1.0",
                   help="comma-separated pyramid scales, each 0.1..4 (one invoke each)")
    d.add_argument("--save", default=None, help="write annotated pictures (boxes, scores, zones) into this folder")
    d.add_argument("--config", default=None, help="daemon config whose zones --save draws (scaled to each picture)")
    d.add_argument("--every", type=positive_int, default=1, help="video clips: every Nth frame")
    d.set_defaults(fn=cmd_detect)

    b = sub.add_parser("bench", help="invoke and pipeline latency per runtime/precision/threads")
    b.add_argument("--model", required=True, help="model directory (with manifest.json)")
    b.add_argument("--video", default=None, help="video whose frames are fed; without it: synthetic frames")
    b.add_argument("--width", type=positive_int, default=320, help="processing width")
    b.add_argument("--height", type=positive_int, default=240, help="processing height")
    b.add_argument("--runs", type=positive_int, default=300, help="timed frames per row")
    b.add_argument("--warmup", type=int, default=30, help="untimed frames before each row")
    b.add_argument("--threads", type=int_list, default="1,2", help="comma-separated interpreter thread counts")
    b.add_argument("--runtimes", type=choice_list(RUNTIME_NAMES), default="",
                   help="comma-separated runtimes; empty: every runtime installed here")
    b.add_argument("--precisions", type=choice_list(("int8", "float")), default="int8,float",
                   help="comma-separated precisions")
    b.add_argument("--json", help="also write the rows to this JSON file")
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("soak", help="replay frames through the pipeline; RSS at start and end")
    s.add_argument("--model", required=True, help="model directory (with manifest.json)")
    s.add_argument("--video", default=None, help="video whose frames are replayed; without it: synthetic frames")
    s.add_argument("--frames", type=positive_int, default=100000, help="frames to process")
    s.add_argument("--json", help="also write the report to this JSON file")
    s.set_defaults(fn=cmd_soak)

    e = sub.add_parser("export-captures", help="labelled captured frames as a YOLO folder for training",
                       description="Write the labelled frames of a capture folder as a YOLO folder (images/, "
                                   "labels/, classes.yaml), file names in time order.")
    e.add_argument("--captures", required=True, help="capture folder (capture.dir, or a copy from make pull)")
    e.add_argument("--out", required=True, help="new folder, or an earlier export to replace")
    e.set_defaults(fn=cmd_export_captures)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd != "run":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except (OSError, ValueError) as exc:
        from edge.manifest import ManifestError

        if isinstance(exc, (ManifestError, FileNotFoundError, ValueError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
