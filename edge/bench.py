"""`edge bench` and `edge soak`: the latency and memory figures, printed, never asserted.

Like TFLite's benchmark tool: warm-up, N timed runs, mean/std/p50/p95/p99, for bare invoke
and for the daemon's whole per-frame pipeline, per runtime, precision and thread count.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.config import Config, parse_config
from edge.metrics import Metrics
from edge.runtimes import available_runtimes

log = logging.getLogger(__name__)


def timing(fn: Callable[[int], Any], runs: int, warmup: int) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        t[i] = (time.perf_counter() - t0) * 1000.0
    p50, p95, p99 = np.percentile(t, [50, 95, 99])
    return {"mean": round(float(t.mean()), 4), "std": round(float(t.std()), 4), "p50": round(float(p50), 4),
            "p95": round(float(p95), 4), "p99": round(float(p99), 4), "runs": runs}


def load_frames(video: str | None, n: int, width: int, height: int) -> tuple[list[np.ndarray], str]:
    """Real frames from the video (decoded once, so decoding is not what we time), else synthetic."""
    cfg: dict[str, Any] = {"kind": "synthetic", "width": width, "height": height, "pace": False}
    if video:
        cfg = {"kind": "video", "path": str(video), "width": width, "height": height, "pace": False, "loop": True}
    src_cfg = parse_config({"source": cfg}).source
    from edge.sources import make_source

    src = make_source(src_cfg)
    src.open()
    try:
        frames = [src.read().image for _ in range(n)]
    finally:
        src.close()
    return frames, cfg["kind"]


def bench_config(model_dir: str, runtime: str, precision: str, threads: int, width: int, height: int,
                 events_path: Path) -> Config:
    return parse_config({
        "model": {"path": str(model_dir), "runtime": runtime, "precision": precision, "num_threads": threads,
                  "preflight": False},
        "source": {"kind": "synthetic", "width": width, "height": height},
        "processing": {"width": width, "height": height},
        "events": {"path": str(events_path)},
        "http": {"enabled": False},
    })


def run_bench(model_dir: str, video: str | None, width: int = 320, height: int = 240, runs: int = 300,
              warmup: int = 30, threads: list[int] | None = None, runtimes: list[str] | None = None,
              precisions: list[str] | None = None) -> list[dict[str, Any]]:
    from edge.frame import Frame
    from edge.pipeline import Pipeline, build_decider, build_detector
    from edge.publish import build_publishers

    frames, source = load_frames(video, min(runs, 200), width, height)
    rows = []
    runtimes = runtimes or available_runtimes()  # tensorflow last: it must load after tflite-runtime
    for rt in runtimes:
        for prec in precisions or ["int8", "float"]:
            for th in threads or [1, 2]:
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = bench_config(model_dir, rt, prec, th, width, height, Path(tmp) / "events.jsonl")
                    det = build_detector(cfg)
                    model = det.models[0]
                    # Bare invoke on what the detector hands its first model: the frame as is
                    # (the model pads it while writing its input tensor, part of the invoke).
                    inputs = [det.preprocess(f)[0].image for f in frames]
                    invoke = timing(lambda i: model.invoke_raw(inputs[i % len(inputs)]), runs, warmup)
                    pub = build_publishers(cfg, ["frame"])
                    pipe = Pipeline(cfg, det, build_decider(cfg), pub, Metrics())  # as the daemon runs it

                    def one(i: int) -> None:
                        pipe.process(Frame(frames[i % len(frames)], time.monotonic_ns(), i))

                    pipeline = timing(one, runs, warmup)
                    pub.close()
                mh, mw = model.input_size or (0, 0)
                rows.append({"runtime": rt, "runtime_version": model.runtime_version, "precision": prec,
                             "threads": th, "width": width, "height": height, "model_input": [mh, mw],
                             "source": source, "invoke_ms": invoke, "pipeline_ms": pipeline,
                             "pipeline_over_invoke": round(pipeline["p50"] / invoke["p50"], 3)})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'runtime':<15}{'prec':<6}{'thr':>4}{'size':>10} | {'invoke p50':>10}{'p95':>8}{'p99':>8}{'mean':>8}{'std':>7} | {'pipeline p50':>12}{'p95':>8}{'p99':>8} | {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        i, p = r["invoke_ms"], r["pipeline_ms"]
        lines.append(f"{r['runtime']:<15}{r['precision']:<6}{r['threads']:>4}{str(r['width']) + 'x' + str(r['height']):>10} | "
                     f"{i['p50']:>10.3f}{i['p95']:>8.3f}{i['p99']:>8.3f}{i['mean']:>8.3f}{i['std']:>7.3f} | "
                     f"{p['p50']:>12.3f}{p['p95']:>8.3f}{p['p99']:>8.3f} | {r['pipeline_over_invoke']:>6.2f}")
    return "\n".join(lines)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_soak(model_dir: str, video: str | None, frames: int, width: int = 320, height: int = 240,
             report_every: int = 10000) -> dict[str, Any]:
    """Replay real frames through the full pipeline; RSS after warm-up vs at the end."""
    from edge.frame import Frame
    from edge.pipeline import Pipeline, build_decider, build_detector
    from edge.publish import build_publishers

    imgs, source = load_frames(video, 500 if video else 100, width, height)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(model_dir, "auto", "int8", 1, width, height, Path(tmp) / "events.jsonl")
        det = build_detector(cfg)
        pub = build_publishers(cfg, ["frame"])
        pipe = Pipeline(cfg, det, build_decider(cfg), pub, Metrics())
        warm = min(1000, max(1, frames // 10))
        samples = []
        t0 = time.perf_counter()
        rss_start = None
        for i in range(frames):
            pipe.process(Frame(imgs[i % len(imgs)], time.monotonic_ns(), i))
            if i + 1 == warm:
                rss_start = rss_kb()
            if (i + 1) % report_every == 0:
                samples.append({"frame": i + 1, "rss_kb": rss_kb()})
                print(f"soak: {i + 1} frames, RSS {samples[-1]['rss_kb'] / 1024:.1f} MB", flush=True)
        elapsed = time.perf_counter() - t0
        pub.close()
    rss_end = rss_kb()
    return {"frames": frames, "source": source, "runtime": det.runtime, "seconds": round(elapsed, 1),
            "fps": round(frames / elapsed, 1), "rss_start_kb": rss_start, "rss_end_kb": rss_end,
            "rss_growth_kb": (rss_end - rss_start) if rss_start else None, "samples": samples,
            "stats": pipe.stats.summary()}


def write_json(path: str, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
