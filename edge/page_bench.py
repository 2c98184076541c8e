"""What an open page costs the frame loop: `python -m edge.page_bench --model DIR`.

Runs the real daemon in this process (synthetic camera paced at --fps, the real model, HTTP on
127.0.0.1) through three equal windows: no page, one page open, no page again. The page is a
separate process polling exactly what page.js polls (the live JPEG every 0.5 s, status and
events every 2 s), so its own CPU is not counted here. Printed per window: the loop's frame
rate and per-frame time (the `total` stage, p50/p95/mean), and the CPU time of the loop's
thread and of the HTTP thread (from /proc/self/task/<tid>/stat). The page's cost is the HTTP
thread's CPU per second, as a share of the frame budget (1/fps), and the change of the loop's
per-frame time against the mean of the two windows without a page.

Also printed: what an MJPEG stream would cost instead (one JPEG encode per frame, measured
here on the daemon's own frames), the reason the page polls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# What page.js asks for, and how often (edge/web/page.js: LIVE_EVERY_MS, STATUS_EVERY_MS).
CLIENT = """
import sys, time, urllib.request
base, seconds = sys.argv[1], float(sys.argv[2])
end, next_status = time.monotonic() + seconds, 0.0
while time.monotonic() < end:
    urllib.request.urlopen(base + "/api/live.jpg", timeout=5).read()
    if time.monotonic() >= next_status:
        urllib.request.urlopen(base + "/api/status", timeout=5).read()
        urllib.request.urlopen(base + "/api/events", timeout=5).read()
        next_status = time.monotonic() + 2.0
    time.sleep(0.5)
"""
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(tid: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _config(tmp: Path, model: Path, fps: float) -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""zones_file = "zones.toml"
[model]
path = "{model}"
[source]
kind = "synthetic"
fps = {fps}
pace = true
[latency]
log_every_s = 3600
window = 100000
[events]
path = "{tmp / 'events.jsonl'}"
[capture]
dir = "{tmp / 'capture'}"
[http]
port = 0
""")
    (tmp / "zones.toml").write_text("[zones.drive]\npoints = [[10, 230], [120, 90], [200, 90], [150, 230]]\n")
    return path


def _window(d: Any, loop_tid: int, http_tid: int, seconds: float, client_url: str | None) -> dict[str, float]:
    totals = d.stats.samples["total"]
    n0, f0 = len(totals), d.stats.frames
    c_loop, c_http, t0 = thread_cpu_s(loop_tid), thread_cpu_s(http_tid), time.monotonic()
    client = (subprocess.Popen([sys.executable, "-c", CLIENT, client_url, str(seconds)])
              if client_url else None)
    time.sleep(seconds)
    if client is not None:
        client.wait(timeout=30)
    dt = time.monotonic() - t0
    got = np.array(list(totals)[n0:]) * 1000.0
    return {"fps": (d.stats.frames - f0) / dt, "total_p50_ms": float(np.percentile(got, 50)),
            "total_p95_ms": float(np.percentile(got, 95)), "total_mean_ms": float(got.mean()),
            "loop_cpu_ms_per_s": (thread_cpu_s(loop_tid) - c_loop) * 1000.0 / dt,
            "http_cpu_ms_per_s": (thread_cpu_s(http_tid) - c_http) * 1000.0 / dt}


def _mjpeg_cost(d: Any, fps: float, n: int = 200) -> dict[str, float]:
    from edge.snapshot import encode_snapshot_jpeg

    image, boxes = d.pipeline.snapshot_frame()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        encode_snapshot_jpeg(image, boxes, quality=80)
        times.append(time.perf_counter() - t)
    per = float(np.median(times)) * 1000.0
    return {"encode_p50_ms": per, "mjpeg_cpu_ms_per_s": per * fps, "polling_encodes_per_s": 2.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge.page_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model directory (manifest.json), e.g. artifacts/latest")
    ap.add_argument("--fps", type=float, default=10.0, help="camera frame rate (default: 10)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each of the 3 windows (default: 20)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)

    from edge.config import load_config
    from edge.daemon import Daemon

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cfg_path = _config(tmp, Path(args.model).resolve(), args.fps)
        d = Daemon(load_config(cfg_path), cfg_path)
        loop = threading.Thread(target=d.run, name="frame-loop", daemon=True)
        loop.start()
        deadline = time.monotonic() + 30
        while (d.http is None or d.frames < 20) and time.monotonic() < deadline:
            time.sleep(0.1)
        if d.http is None or d.frames < 20:
            print("error: the daemon did not start processing frames within 30 s", file=sys.stderr)
            return 1
        url = f"http://127.0.0.1:{d.http.port}"
        loop_tid, http_tid = loop.native_id, d.http._thread.native_id  # noqa: SLF001 - measuring it
        windows = {"no page (1)": _window(d, loop_tid, http_tid, args.seconds, None),
                   "page open": _window(d, loop_tid, http_tid, args.seconds, url),
                   "no page (2)": _window(d, loop_tid, http_tid, args.seconds, None)}
        mjpeg = _mjpeg_cost(d, args.fps)
        d.stop_event.set()
        loop.join(timeout=10)

    base = [windows["no page (1)"], windows["no page (2)"]]
    page = windows["page open"]
    budget_ms = 1000.0 / args.fps
    page_cpu = page["http_cpu_ms_per_s"] - np.mean([w["http_cpu_ms_per_s"] for w in base])
    loop_delta = page["total_mean_ms"] - np.mean([w["total_mean_ms"] for w in base])
    summary = {"fps_target": args.fps, "windows": windows, "mjpeg_instead": mjpeg,
               "page_cpu_ms_per_s": round(float(page_cpu), 3),
               "page_cpu_share_of_frame_budget": round(float(page_cpu) / 1000.0, 5),
               "loop_ms_per_frame_change": round(float(loop_delta), 4),
               "loop_change_share_of_frame_budget": round(float(loop_delta) / budget_ms, 5)}
    print(f"{'window':<14} {'fps':>6} {'total p50':>10} {'p95':>8} {'mean':>8} {'loop CPU':>10} {'HTTP CPU':>10}")
    for name, w in windows.items():
        print(f"{name:<14} {w['fps']:6.2f} {w['total_p50_ms']:8.3f}ms {w['total_p95_ms']:6.3f}ms "
              f"{w['total_mean_ms']:6.3f}ms {w['loop_cpu_ms_per_s']:7.1f}ms/s {w['http_cpu_ms_per_s']:7.1f}ms/s")
    print(f"page open: HTTP thread +{page_cpu:.1f} ms CPU per s = {page_cpu / 10.0:.2f} % of one core "
          f"(limit 2 % = 20 ms/s); loop per-frame time {loop_delta:+.3f} ms = "
          f"{100.0 * loop_delta / budget_ms:+.2f} % of the {budget_ms:.0f} ms frame budget")
    print(f"MJPEG instead: one encode per frame, {mjpeg['encode_p50_ms']:.2f} ms each = "
          f"{mjpeg['mjpeg_cpu_ms_per_s']:.1f} ms CPU per s at {args.fps:g} fps for as long as a stream is "
          f"open; polling: 2 encodes per s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
