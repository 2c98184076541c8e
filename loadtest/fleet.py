"""`make fleet-test`: N real daemons on one real mosquitto, the broker killed twice.

For each phase (1, 10 and N daemons by default): start a broker and the recorder, start
the daemons (each its own camera name, client id, topics, files), wait until every one
processes frames and is connected, then run for --duration seconds while SIGKILLing and
restarting the broker --broker-kills times, drain, stop everything and compare what each
daemon wrote to its events file with what the recorder heard on its events topic.

The run stops by itself and ends every process it started (loadtest.procs); the report is
printed (a Markdown table) and written as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.argparsing import Parser, add_version, positive_int
from loadtest.broker import Broker, BrokerError
from loadtest.daemons import MSG_LATENCY, MSG_MQTT_LEFT_QUEUED, DaemonSettings, FleetDaemon
from loadtest.procs import Interrupted, ProcessRegistry, cpu_seconds, machine_cpu, processes_of_run
from loadtest.recorder import Recorder
from loadtest.report import compare_events, format_table, pct, reconnect_delays, spread
from loadtest.scene import FRAME_ZONE, SceneError, derive_clip, probe_zones

log = logging.getLogger("loadtest.fleet")

SAMPLE_EVERY_S = 2.0  # RSS and liveness sampling during a phase
DRAIN_TIMEOUT_S = 30.0  # after the window: every MQTT queue empty (PUBACKs in)
STOP_GRACE_S = 10.0  # SIGTERM to exit; a daemon's own budget is 2 s, 50 of them share 2 cores
DELIVERY_WAIT_S = 10.0  # after the daemons stopped: the recorder's last messages


class FleetError(RuntimeError):
    """A phase could not run (daemons not ready in time, bad options)."""


@dataclass
class FleetOptions:
    model: Path
    video: Path
    phases: list[int]
    duration_s: float = 90.0
    broker_kills: int = 2
    outage_s: float = 3.0
    fps: float = 2.0
    processing: tuple[int, int] | None = None  # None: the clip's own size
    motion: bool = False
    threshold: float = -1.0
    max_zones: int = 2
    workdir: Path | None = None
    python: str = sys.executable
    ready_timeout_s: float | None = None  # None: 60 s + 2 s per daemon


def events_topic(config_path: Path) -> str:
    """The daemon's events topic, from its own config through the publisher's topic names."""
    from edge.config import load_config
    from edge.publish.ha_discovery import Topics

    cfg = load_config(config_path)
    return Topics.from_config(cfg.mqtt, cfg.camera.id, [FRAME_ZONE, *cfg.zones]).events


def _wait_ready(daemons: Sequence[FleetDaemon], timeout_s: float) -> float:
    """Until every daemon processes frames and is connected; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        waiting = [d for d in daemons if not (d.ready and d.mqtt_connects)]
        if not waiting:
            return time.monotonic() - t0
        dead = [d for d in daemons if d.proc.poll() is not None]
        if dead:
            raise FleetError(f"{dead[0].camera} exited with {dead[0].proc.returncode} before it was ready:\n"
                             f"{dead[0].log_tail()}")
        if time.monotonic() - t0 > timeout_s:
            raise FleetError(f"{len(waiting)} of {len(daemons)} daemons not ready and connected after "
                             f"{timeout_s:.0f} s (first: {waiting[0].camera}, log {waiting[0].log_path})")
        time.sleep(0.5)


def _drain(daemons: Sequence[FleetDaemon], timeout_s: float) -> bool:
    """Wait until no daemon has an event waiting for its PUBACK (read from /metrics)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        depths = [d.queue_depth() for d in daemons]
        if all(x == 0 for x in depths):
            return True
        time.sleep(0.5)
    return False


def _window_fps(d: FleetDaemon, since: float, until: float) -> float | None:
    """Mean of the fps its latency lines reported inside the measurement window."""
    vals = [float(r["latency"]["fps"]) for r in d.messages(MSG_LATENCY)
            if since <= float(r["ts"]) <= until and r.get("latency", {}).get("fps")]
    return round(sum(vals) / len(vals), 2) if vals else None


class Phase:
    """One broker, one recorder, n daemons, one measurement window."""

    def __init__(self, n: int, opts: FleetOptions, settings: DaemonSettings, registry: ProcessRegistry,
                 workdir: Path) -> None:
        self.n, self.opts, self.settings, self.registry, self.workdir = n, opts, settings, registry, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(registry, workdir)
        self.recorder: Recorder | None = None
        self.daemons = [FleetDaemon(f"cam-{i:02d}", workdir / f"cam-{i:02d}") for i in range(1, n + 1)]
        self.kills: list[float] = []
        self.restarts: list[float] = []
        self.rss_peak_kb: dict[str, int] = {d.camera: 0 for d in self.daemons}

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            if self.recorder is not None:
                self.recorder.stop()
            self.registry.terminate([d.proc for d in self.daemons if d.proc is not None], grace_s=STOP_GRACE_S)
            self.broker.stop()

    def _run(self) -> dict[str, Any]:
        self.broker.start()
        self.recorder = Recorder(self.broker.port, self.workdir / "recorded.jsonl")
        self.recorder.start()
        for d in self.daemons:
            d.write_config(self.settings, self.broker.port)
            d.start(self.registry, self.opts.python)
        timeout = self.opts.ready_timeout_s or 60.0 + 2.0 * self.n
        startup_s = _wait_ready(self.daemons, timeout)
        log.info("N=%d: all daemons ready and connected after %.1f s", self.n, startup_s)

        t_start, busy0, cpu0 = time.time(), machine_cpu(), self._daemon_cpu()
        self._window()
        t_end, busy1, cpu1 = time.time(), machine_cpu(), self._daemon_cpu()
        cpu_pct = {cam: round(100.0 * (cpu1[cam] - cpu0[cam]) / (t_end - t_start), 1)
                   if cam in cpu0 and cam in cpu1 else None for cam in self.rss_peak_kb}
        drained = _drain(self.daemons, DRAIN_TIMEOUT_S)
        memory = {d.camera: d.memory_kb() for d in self.daemons}
        killed = self.registry.terminate([d.proc for d in self.daemons], grace_s=STOP_GRACE_S)
        topics = {d.camera: events_topic(d.config_path) for d in self.daemons}
        self._await_delivery(topics)

        cameras = [{**self._camera(d, topics[d.camera], memory[d.camera], t_start, t_end, killed),
                    "cpu_percent_of_one_core": cpu_pct[d.camera]} for d in self.daemons]
        machine = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]) * 100.0
        return self._summary(cameras, startup_s, t_end - t_start, drained, machine)

    def _window(self) -> None:
        """The measured run: sample, and kill/restart the broker at evenly spaced moments."""
        t0 = time.monotonic()
        end = t0 + self.opts.duration_s
        kills = self.opts.broker_kills
        due = [t0 + self.opts.duration_s * (k + 1) / (kills + 1) for k in range(kills)]
        while (now := time.monotonic()) < end:
            if due and now >= due[0]:
                due.pop(0)
                self.kills.append(self.broker.kill())
                log.info("N=%d: broker killed; restarting in %.1f s", self.n, self.opts.outage_s)
                time.sleep(self.opts.outage_s)
                self.restarts.append(self.broker.start())
                continue
            self._sample()
            time.sleep(max(0.05, min(SAMPLE_EVERY_S, (due[0] if due else end) - time.monotonic(),
                                     end - time.monotonic())))

    def _daemon_cpu(self) -> dict[str, float]:
        return {d.camera: cpu for d in self.daemons if (cpu := cpu_seconds(d.proc.pid)) is not None}

    def _sample(self) -> None:
        self.broker.sample()
        for d in self.daemons:
            rss = d.memory_kb().get("VmRSS", 0)
            self.rss_peak_kb[d.camera] = max(self.rss_peak_kb[d.camera], rss)
            if d.proc.poll() is not None:
                raise FleetError(f"{d.camera} exited with {d.proc.returncode} during the run:\n{d.log_tail()}")

    def _await_delivery(self, topics: dict[str, str]) -> None:
        assert self.recorder is not None
        deadline = time.monotonic() + DELIVERY_WAIT_S
        while time.monotonic() < deadline:
            heard = {cam: [m.payload for m in self.recorder.events_on(topic)] for cam, topic in topics.items()}
            if all(compare_events(d.events(), heard[d.camera])["lost"] == 0 for d in self.daemons):
                return
            time.sleep(0.25)

    def _camera(self, d: FleetDaemon, topic: str, mem: dict[str, int], t_start: float, t_end: float,
                killed: list[int]) -> dict[str, Any]:
        assert self.recorder is not None
        produced = d.events()
        cmp = compare_events(produced, (m.payload for m in self.recorder.events_on(topic)))
        lat = d.last_latency()
        left = [r for r in d.lines() if MSG_MQTT_LEFT_QUEUED in str(r.get("msg", ""))]
        return {
            "camera": d.camera,
            "events_topic": topic,
            **cmp,
            "reconnect_s": [round(x, 3) for x in reconnect_delays(d.mqtt_connects, self.kills, self.restarts)],
            "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mb": round(max(mem.get("VmHWM", 0), self.rss_peak_kb[d.camera]) / 1024, 1),
            "frame_age_p95_ms": lat.get("frame_age_p95_ms"),
            "fps": _window_fps(d, t_start, t_end),
            "frames": lat.get("frames"),
            "exit_code": d.proc.returncode,
            "needed_sigkill": d.proc.pid in killed,
            "left_in_queue_at_exit": len(left) > 0,
        }

    def _summary(self, cameras: list[dict[str, Any]], startup_s: float, window_s: float, drained: bool,
                 machine_cpu_percent: float) -> dict[str, Any]:
        reconnects = [x for c in cameras for x in c["reconnect_s"]]
        totals = {k: sum(c[k] for c in cameras) for k in ("produced", "delivered", "lost", "duplicates", "unexpected")}
        totals["cameras_without_events"] = sum(1 for c in cameras if c["produced"] == 0)
        totals["out_of_order_cameras"] = sum(1 for c in cameras if not c["in_order"])
        return {
            "daemons": self.n,
            "target_fps": self.opts.fps,
            "startup_s": round(startup_s, 1),
            "window_s": round(window_s, 1),
            "broker_kills": [{"killed_at": k, "listening_again_at": r}
                             for k, r in zip(self.kills, self.restarts, strict=True)],
            "drained_before_stop": drained,
            "events": totals,
            "reconnect_s": {"p50": pct(reconnects, 50, 2), "p95": pct(reconnects, 95, 2),
                            "max": round(max(reconnects), 2) if reconnects else None, "n": len(reconnects),
                            "expected": self.n * len(self.kills)},
            "broker": self.broker.usage.as_dict(),
            "daemon_rss_mb": spread([c["rss_mb"] for c in cameras]),
            "daemon_cpu_percent_of_one_core": spread([c["cpu_percent_of_one_core"] for c in cameras
                                                      if c["cpu_percent_of_one_core"] is not None]),
            "frame_age_p95_ms": spread([c["frame_age_p95_ms"] for c in cameras if c["frame_age_p95_ms"] is not None]),
            "fps": spread([c["fps"] for c in cameras if c["fps"] is not None], 2),
            "machine_cpu_percent": round(machine_cpu_percent, 1),
            "ok": (totals["lost"] == 0 and totals["unexpected"] == 0 and totals["out_of_order_cameras"] == 0
                   and all(c["exit_code"] == 0 for c in cameras)
                   and len(reconnects) == self.n * len(self.kills)),
            "cameras": cameras,
        }


def run_fleet(opts: FleetOptions, registry: ProcessRegistry, workdir: Path) -> dict[str, Any]:
    """Clip, zone probe, then each phase; the report as a dict."""
    clip = derive_clip(opts.video, workdir / f"clip-{opts.fps:g}fps.avi", opts.fps)
    processing = opts.processing or clip.size
    settings = DaemonSettings(model=opts.model, clip=clip.path, clip_size=clip.size, processing=processing,
                              zones={}, motion=opts.motion, threshold=opts.threshold,
                              latency_window=int(opts.duration_s * opts.fps),
                              latency_log_every_s=max(5.0, min(30.0, opts.duration_s / 3)))
    probe = probe_zones(registry, settings, workdir / "probe", opts.max_zones)
    settings = replace(settings, zones=probe.chosen)
    print(f"clip: {clip.frames} frames at {clip.fps:g} fps ({clip.frames / clip.fps:.0f} s a loop); "
          f"probe events per loop {probe.events_per_zone}; zones {probe.chosen or 'none (frame only)'}",
          flush=True)
    phases = []
    for n in opts.phases:
        print(f"phase N={n}: starting {n} daemon(s)", flush=True)
        phase = Phase(n, opts, settings, registry, workdir / f"n{n}").run()
        print(f"phase N={n}: produced {phase['events']['produced']}, delivered {phase['events']['delivered']}, "
              f"lost {phase['events']['lost']}, duplicates {phase['events']['duplicates']}", flush=True)
        phases.append(phase)
    return {
        "run_id": registry.run_id,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "model": str(opts.model),
        "video": str(opts.video),
        "clip": {"fps": clip.fps, "frames": clip.frames, "size": list(clip.size), "source_fps": clip.source_fps},
        "processing": list(processing),
        "motion_gate": opts.motion,
        "decide": {"frames_in": settings.frames_in, "frames_out": settings.frames_out},
        "zones": {k: list(v) for k, v in probe.chosen.items()},
        "probe": {"events_per_loop": probe.events_per_zone, "events_per_loop_chosen": probe.events_per_loop,
                  "seconds": probe.seconds},
        "duration_s": opts.duration_s,
        "broker_kills": opts.broker_kills,
        "outage_s": opts.outage_s,
        "phases": phases,
        "ok": all(p["ok"] for p in phases),
    }


def _explain(report: dict[str, Any]) -> list[str]:
    """Plain words for what the table cannot say on its own."""
    notes = []
    if report["probe"]["events_per_loop_chosen"] == 0:
        notes.append("the model found no presence change on the clip: no events could be produced "
                     "(a better detector, or zones where the road is, would fix that)")
    for p in report["phases"]:
        if p["events"]["cameras_without_events"]:
            notes.append(f"N={p['daemons']}: {p['events']['cameras_without_events']} camera(s) produced no "
                         f"event in {p['window_s']} s (probe: {report['probe']['events_per_loop_chosen']} per loop)")
        if p["reconnect_s"]["n"] < p["reconnect_s"]["expected"]:
            notes.append(f"N={p['daemons']}: {p['reconnect_s']['expected'] - p['reconnect_s']['n']} reconnect(s) "
                         "missing from the daemon logs")
        if not p["drained_before_stop"]:
            notes.append(f"N={p['daemons']}: MQTT queues were not empty {DRAIN_TIMEOUT_S:.0f} s after the window")
    return notes


def default_phases(n: int) -> list[int]:
    """N daemons, with 1 and 10 beside them for comparison (those below N)."""
    return [v for v in (1, 10) if v < n] + [n]


def phase_list(text: str) -> list[int]:
    """Comma-separated numbers of daemons, each >= 1, e.g. 1,10,50."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants numbers of daemons such as 1,10,50, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every number of daemons must be >= 1, got {text!r}")
    return values


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"width and height must be >= 16, got {text!r}")
    return w, h


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def build_parser() -> Parser:
    p = Parser(prog="python -m loadtest", description="Many daemons on one real mosquitto, the broker killed "
               "and restarted during the run; events produced vs delivered, reconnects, broker and daemon cost.")
    add_version(p)
    p.add_argument("--model", type=Path, required=True, help="model directory (with manifest.json)")
    p.add_argument("--video", type=Path, required=True, help="clip every daemon replays (looped)")
    p.add_argument("--daemons", type=positive_int, default=50,
                   help="daemons in the last phase; 1 and 10 run before it, side by side in the report")
    p.add_argument("--phases", type=phase_list, default=None,
                   help="daemons per phase instead, e.g. 3 or 1,10,50; without it: 1, 10 and --daemons")
    p.add_argument("--duration", type=positive_float, default=90.0, help="seconds measured per phase")
    p.add_argument("--broker-kills", type=int, default=2, help="broker SIGKILL + restart per phase")
    p.add_argument("--outage", type=positive_float, default=3.0, help="seconds the broker stays down each time")
    p.add_argument("--fps", type=positive_float, default=2.0, help="frames per second each daemon processes")
    p.add_argument("--processing", type=size, default=None,
                   help="processing WIDTHxHEIGHT of every daemon; without it: the clip's size")
    p.add_argument("--motion", action="store_true", help="turn the daemons' motion gate on")
    p.add_argument("--threshold", type=float, default=-1.0,
                   help="the daemons' detection threshold; negative: the model's own (its manifest)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where configs, logs, events and recordings go; without it: a temporary "
                        "folder, removed after a successful run")
    p.add_argument("--json", type=Path, default=None, help="write the report here; without it: print only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.broker_kills < 0:
        print("error: --broker-kills must be >= 0", file=sys.stderr)
        return 2
    if not (args.model / "manifest.json").is_file():
        print(f"error: --model {args.model}: no manifest.json there; train one (`make train`) "
              "or pass MODEL=artifacts/<run>", file=sys.stderr)
        return 2
    opts = FleetOptions(model=args.model.resolve(), video=args.video.resolve(),
                        phases=args.phases or default_phases(args.daemons),
                        duration_s=args.duration, broker_kills=args.broker_kills, outage_s=args.outage,
                        fps=args.fps, processing=args.processing, motion=args.motion,
                        threshold=args.threshold)
    run_id = uuid.uuid4().hex[:12]
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="fleet-test-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"fleet test {run_id}: phases {opts.phases}, {opts.duration_s:g} s each, files in {workdir}", flush=True)
    registry = ProcessRegistry(run_id)
    registry.install()
    report: dict[str, Any] | None = None
    rc = 1
    try:
        report = run_fleet(opts, registry, workdir)
        rc = 0 if report["ok"] else 1
    except Interrupted as exc:
        print(f"fleet test {exc}; stopping everything it started", file=sys.stderr)
        rc = 130
    except (SceneError, BrokerError, FleetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        registry.cleanup()
    left = processes_of_run(run_id)
    if left:
        print(f"error: processes still running after cleanup: {left}", file=sys.stderr)
        rc = rc or 1
    if report is None:
        return rc
    report["left_behind"] = left
    report["ok"] = report["ok"] and not left
    print(format_table(report["phases"]))
    for note in _explain(report):
        print(f"note: {note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.json}")
    if rc == 0 and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif rc != 0:
        print(f"logs kept in {workdir}")
    return rc
