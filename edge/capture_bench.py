"""What capture costs the frame loop: `python -m edge.capture_bench --video CLIP`.

Prints one JSON object: the background model's cost per frame, one disagreement check
(background subtraction + proposals), FrameCapture.offer per frame with the default
config (what the loop pays; PNG writing happens on the writer thread, timed separately as
`write_ms`). Frames are decoded first, so decoding is not what is timed.
"""

from __future__ import annotations

import json
import random
import tempfile
import time

import numpy as np

from edge import autolabel
from edge.argparsing import Parser, add_version, positive_int
from edge.bench import load_frames, timing
from edge.capture import BackgroundModel, FrameCapture
from edge.config import CaptureConfig


def run(video: str | None, n: int, fps: float = 15.0, threshold: float = 0.5) -> dict[str, object]:
    frames, kind = load_frames(video, n, 320, 240)
    cfg = CaptureConfig(enabled=True)
    bg = BackgroundModel(cfg.background_every, cfg.background_frames)
    t0 = time.perf_counter()
    for f in frames:
        bg.offer(f)
    background_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    check = timing(lambda i: autolabel.disagreement(autolabel.propose(frames[i % n], bg.bg, [])), min(200, n), 5)
    with tempfile.TemporaryDirectory() as d:
        cap = FrameCapture(CaptureConfig(enabled=True, dir=d), threshold, rng=random.Random(0))
        t = np.empty(len(frames))
        for i, f in enumerate(frames):  # the loop's clock at `fps`; scores never uncertain
            t0 = time.perf_counter()
            cap.offer(f, i, 1.7e9 + i / fps, 0.0, [], now=i / fps)
            t[i] = (time.perf_counter() - t0) * 1000
        cap.close()
        saved = dict(cap.saved)
        write = timing(lambda i: cap.store.add(frames[i % n], 1.8e9 + i, i, "random", 0.0, []), 50, 2)
    return {"source": kind, "frames": len(frames), "background_ms_per_frame": round(background_ms, 4),
            "disagreement_check_ms": check, "offer_ms_per_frame": round(float(t.mean()), 4),
            "offer_ms_p99": round(float(np.percentile(t, 99)), 4), "saved": saved, "write_ms": write}


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m edge.capture_bench", description=__doc__.splitlines()[0])
    add_version(p)
    p.add_argument("--video", default=None, help="clip to decode frames from; without it: synthetic frames")
    p.add_argument("--frames", type=positive_int, default=600, help="frames to decode and offer")
    args = p.parse_args(argv)
    print(json.dumps(run(args.video, args.frames)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
