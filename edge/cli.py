"""`python -m edge` / `car-detector`: run the service, detect on pictures, preflight, bench, soak."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge.config import DEFAULT_CONFIG_PATH


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
    """One JSON line per picture: boxes in picture pixels and the presence decision."""
    import numpy as np
    from PIL import Image

    from edge.detector import Detector

    scales = [float(s) for s in args.scales.split(",")]
    detectors: dict[tuple[int, int], Detector] = {}
    status = 0
    for path in args.images:
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("L"))
        except (OSError, ValueError) as exc:
            print(json.dumps({"image": path, "error": f"cannot read picture: {exc}"}))
            status = 1
            continue
        key = img.shape
        if key not in detectors:
            detectors[key] = Detector(args.model, img.shape[0], img.shape[1], scales, runtime=args.runtime,
                                      precision=args.precision, threshold=args.threshold)
        det = detectors[key]
        boxes, top = det.detect(img)
        print(json.dumps({
            "image": path, "width": int(img.shape[1]), "height": int(img.shape[0]),
            "car": bool(boxes), "top_score": round(top, 4), "threshold": det.threshold,
            "boxes": [b.to_dict() for b in boxes],
        }), flush=True)
    return status


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="car-detector", description="Is there a car in the picture, and where?")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the detector service")
    r.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    r.add_argument("--max-frames", type=int, default=None, help="stop after N frames (tests, replays)")
    r.set_defaults(fn=cmd_run)

    pf = sub.add_parser("preflight", help="check a model directory runs identically here")
    pf.add_argument("--model", required=True)
    pf.add_argument("--runtime", default="auto", choices=["auto", "litert", "tflite-runtime", "tensorflow"])
    pf.add_argument("--precision", default="int8", choices=["int8", "float"])
    pf.set_defaults(fn=cmd_preflight)

    d = sub.add_parser("detect", help="boxes for pictures, one JSON line each")
    d.add_argument("--model", required=True)
    d.add_argument("images", nargs="+")
    d.add_argument("--runtime", default="auto")
    d.add_argument("--precision", default="int8", choices=["int8", "float"])
    d.add_argument("--threshold", type=float, default=None)
    d.add_argument("--scales", default="1.0")
    d.set_defaults(fn=cmd_detect)

    b = sub.add_parser("bench", help="invoke and pipeline latency per runtime/precision/threads")
    b.add_argument("--model", required=True)
    b.add_argument("--video", default=None)
    b.add_argument("--width", type=int, default=320)
    b.add_argument("--height", type=int, default=240)
    b.add_argument("--runs", type=int, default=300)
    b.add_argument("--warmup", type=int, default=30)
    b.add_argument("--threads", default="1,2")
    b.add_argument("--runtimes", default="")
    b.add_argument("--precisions", default="int8,float")
    b.add_argument("--json")
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("soak", help="replay frames through the pipeline; RSS at start and end")
    s.add_argument("--model", required=True)
    s.add_argument("--video", default=None)
    s.add_argument("--frames", type=int, default=100000)
    s.add_argument("--json")
    s.set_defaults(fn=cmd_soak)
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
