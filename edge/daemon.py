"""The service: frames in, decisions out, for months under systemd.

Signals only set flags; the loop acts on them between frames, so a frame is never cut in
half. SIGTERM/SIGINT: finish the frame, flush, exit 0. SIGHUP: build the new config and
model next to the running ones (with preflight) and swap only if all of it worked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge.config import Config, ConfigError, load_config
from edge.decide import Decider
from edge.detector import Detector
from edge.latency import RollingStats
from edge.metrics import Metrics
from edge.pipeline import Pipeline, build_decider, build_detector
from edge.platform import PlatformProbe
from edge.preflight import run_preflight
from edge.publish import build_publishers
from edge.publish.base import STATS_FPS_KEY, STATS_LATENCY_P95_KEY, Publisher
from edge.sdnotify import Notifier
from edge.sources import make_retrying_source
from edge.sources.base import FrameSource, SourceExhausted

log = logging.getLogger("edge.daemon")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: journald keeps it, `jq` reads it."""

    SKIP = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self.SKIP and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def load_model_checked(cfg: Config) -> Detector:
    """Build the detector and run preflight on every interpreter before it sees a frame.

    The file's sha256 is checked before any runtime parses it: a corrupt flatbuffer can
    fail in confusing ways (or crash) inside the interpreter.
    """
    from edge.manifest import load_manifest
    from edge.preflight import check_file

    if cfg.model.preflight:
        check_file(load_manifest(cfg.model.path), cfg.model.precision)
    det = build_detector(cfg)
    if cfg.model.preflight:
        for m in det.models:
            run_preflight(m)
    if (why := det.scales_mismatch()) is not None:
        log.warning("model and processing scales differ", extra={"why": why})
    return det


class Daemon:
    def __init__(self, cfg: Config, config_path: str | Path | None = None, notifier: Notifier | None = None,
                 probe: PlatformProbe | None = None) -> None:
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path else None
        self.notifier = notifier or Notifier()
        self.probe = probe or PlatformProbe()
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics = Metrics(camera=cfg.camera.id)
        for zone in ["frame", *cfg.zones]:  # nothing is present before the first frame
            self.metrics.set_zone_present(zone, False)
        self.stats = RollingStats(cfg.latency.window)
        self.frames = 0
        self.ready_sent = False
        self.last_frame_monotonic = time.monotonic()
        self.reloads = {"ok": 0, "failed": 0}
        self.source: FrameSource | None = None
        self._prev_ts: int | None = None
        self._errors_seen = 0
        self.http = None
        self.page = None  # edge.page.Page while HTTP is on
        self.started_monotonic = time.monotonic()
        self.last_latency: dict[str, Any] = {}  # the page shows temperature/throttling from here
        detector = load_model_checked(cfg)
        log.info("model loaded", extra={"runtime": detector.runtime, "model": cfg.model.path,
                                        "threads": cfg.model.num_threads, "precision": cfg.model.precision,
                                        "threshold": detector.threshold})
        self.publisher: Publisher = build_publishers(
            cfg, ["frame", *cfg.zones], on_queue_depth=self.metrics.set_mqtt_queue_depth,
            on_identity_conflict=self.metrics.inc_camera_id_conflict)
        self.pipeline = Pipeline(cfg, detector, build_decider(cfg), self.publisher, self.metrics, self.stats)
        self.pipeline.publish_presence()
        self._next_snapshot = 0.0  # monotonic time the MQTT snapshot is due

    # --- signals ---------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stop_event.set()

    def _on_hup(self, signum: int, _frame: Any) -> None:
        self.reload_requested.set()

    # --- health ------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        age = time.monotonic() - self.last_frame_monotonic
        ok = age < self.cfg.watchdog.frame_timeout_s
        details = {"ok": ok, "frames": self.frames, "seconds_since_last_frame": round(age, 3),
                   "frame_timeout_s": self.cfg.watchdog.frame_timeout_s}
        failing = int(getattr(self.source, "consecutive_errors", 0))
        if failing:  # say why frames stay away, not only that they do
            details.update(source_error=getattr(self.source, "last_error", None), source_errors_in_a_row=failing)
        return ok, details

    def snapshot_jpeg(self) -> bytes | None:
        from edge.snapshot import encode_snapshot_jpeg

        latest = self.pipeline.snapshot_frame()
        if latest is None:
            return None
        image, boxes = latest
        return encode_snapshot_jpeg(image, boxes)

    # --- reload ------------------------------------------------------------------
    def reload(self) -> bool:
        """Config + model, all or nothing; the running ones stay on any failure."""
        self.notifier.reloading()
        try:
            if self.config_path is None:
                raise ConfigError("no config file to reload from")
            new_cfg = load_config(self.config_path)
            if new_cfg.camera != self.cfg.camera:  # it names the Prometheus series of this process
                log.warning("camera.id changed; it takes effect at the next restart")
                new_cfg.camera = self.cfg.camera
            detector = load_model_checked(new_cfg)
            decider: Decider = build_decider(new_cfg)
            publisher = self.publisher
            if (new_cfg.events, new_cfg.mqtt, new_cfg.zones) != (self.cfg.events, self.cfg.mqtt, self.cfg.zones):
                publisher = build_publishers(new_cfg, ["frame", *new_cfg.zones],
                                             on_queue_depth=self.metrics.set_mqtt_queue_depth, start=False,
                                             on_identity_conflict=self.metrics.inc_camera_id_conflict)
            source = None
            if new_cfg.source != self.cfg.source:
                source = make_retrying_source(new_cfg.source, self.stop_event)
                source.open()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the running service
            self.reloads["failed"] += 1
            log.error("reload failed; keeping the running config and model", extra={"error": str(exc)})
            self.notifier.ready(status=f"reload failed: {exc}"[:200])
            return False
        old_pub = self.publisher if publisher is not self.publisher else None
        if old_pub is not None:  # one owner of the MQTT queue file and client id at a time
            old_pub.close()
            publisher.start(drop_failed=True)
        # Presence survives the reload; zones it removed while occupied get their car_left.
        removed_left = decider.carry_over(self.pipeline.decider, time.time())
        self.pipeline.capture.close()  # frames it chose are written; the new pipeline has its own
        self.pipeline = Pipeline(new_cfg, detector, decider, publisher, self.metrics, self.stats)
        self.pipeline.publish_events(removed_left)
        removed = [z for z in self.cfg.zones if z not in new_cfg.zones]
        if removed:
            publisher.forget_zones(removed)
        self.pipeline.publish_presence()
        self.publisher = publisher
        if source is not None:
            assert self.source is not None
            self.source.close()
            self.source = source
        if new_cfg.http != self.cfg.http:
            log.warning("http settings changed; they take effect at the next restart")
        self.cfg = new_cfg
        self.reloads["ok"] += 1
        log.info("reloaded config and model", extra={"config": str(self.config_path), "model": new_cfg.model.path})
        self.notifier.ready()
        return True

    # --- latency line ------------------------------------------------------------
    def log_latency(self, now: float) -> dict:
        fps = self.stats.fps(now)
        summary = self.stats.summary()
        src_errors = getattr(self.source, "errors", 0)
        line: dict[str, Any] = {
            STATS_FPS_KEY: round(fps, 2),
            "frames": self.stats.frames,
            "skipped": self.stats.skipped,
            "dropped": self.stats.dropped,
            "camera_errors": src_errors,
            "stages_ms": summary,
            STATS_LATENCY_P95_KEY: summary.get("total", {}).get("p95"),
            "frame_age_p95_ms": summary.get("frame_age", {}).get("p95"),
            "presence": self.pipeline.decider.presence(),
        }
        line.update(self.probe.readings())
        self.last_latency = line
        self.metrics.set_fps(fps)
        if "soc_temp_c" in line:
            self.metrics.set_soc_temperature(line["soc_temp_c"])
        if "throttled" in line:
            self.metrics.set_throttled(line["throttled"])
        log.info("latency", extra={"latency": line})
        self.publisher.publish_stats(line)
        p95 = line[STATS_LATENCY_P95_KEY]
        self.notifier.status(f"{fps:.1f} fps, p95 {p95 if p95 is not None else '-'} ms, frames {self.stats.frames}")
        return line

    # --- main loop ---------------------------------------------------------------
    def run(self, max_frames: int | None = None) -> int:
        from edge.http_server import HttpServer

        try:
            if self.cfg.http.enabled:
                from edge.config import is_loopback
                from edge.page import Page

                self.page = Page(self, loopback_only=is_loopback(self.cfg.http.host))
                self.http = HttpServer(self.cfg.http, self.metrics, self.health, self.snapshot_jpeg, page=self.page)
                self.http.start()
                log.info("http listening", extra={"host": self.cfg.http.host, "port": self.http.port})
            self.source = make_retrying_source(self.cfg.source, self.stop_event)
            self.source.open()
            self.last_frame_monotonic = time.monotonic()
            next_log = time.monotonic() + self.cfg.latency.log_every_s
            self.stats.fps(time.monotonic())
            while not self.stop_event.is_set():
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                t0 = time.perf_counter()
                try:
                    frame = self.source.read()
                except SourceExhausted as exc:
                    return self._source_finished(exc)  # the finally below still shuts down
                frame.capture_wait_s = time.perf_counter() - t0  # its one owner: sees back-offs too
                self._count_dropped(frame.timestamp_ns)
                self._count_camera_errors()
                res = self.pipeline.process(frame)
                if res.events and self.page is not None:
                    self.page.note_events(res.events, self.pipeline.snapshot_frame())
                self._publish_snapshot(bool(res.events))
                self.frames += 1
                self.last_frame_monotonic = time.monotonic()
                if not self.ready_sent:
                    self.notifier.ready(status="processing frames")
                    self.ready_sent = True
                    log.info("ready", extra={"first_frame_id": frame.frame_id})
                self.notifier.watchdog()  # progress, not a timer: only after a completed frame
                now = time.monotonic()
                if now >= next_log:
                    self.log_latency(now)
                    next_log = now + self.cfg.latency.log_every_s
                if max_frames is not None and self.frames >= max_frames:
                    break
        finally:
            self.shutdown()
        return 0

    def _publish_snapshot(self, changed: bool) -> None:
        """The Home Assistant camera's picture, boxes and zones drawn in: on every event and
        every mqtt.snapshot_every_s.

        Encoded here, at that modest rate, rather than per frame (a 320x240 JPEG: 1.0 ms on
        the workstation, a few on a Pi); the publisher only keeps the newest."""
        mq = self.cfg.mqtt
        now = time.monotonic()
        if not (mq.enabled and mq.snapshot) or not (changed or now >= self._next_snapshot):
            return
        self._next_snapshot = now + mq.snapshot_every_s
        from edge.snapshot import encode_snapshot_jpeg

        latest = self.pipeline.snapshot_frame()
        if latest is None:
            return
        # Zones drawn in (a polygon as its bounding box): Home Assistant shows no overlay.
        zones = {n: (z.x, z.y, z.width, z.height) for n, z in self.cfg.zones.items()}
        self.publisher.publish_snapshot(encode_snapshot_jpeg(*latest, zones=zones))

    def _source_finished(self, exc: SourceExhausted) -> int:
        """Say how a finite source ended; 1 when it gave no frame at all.

        An empty or unreadable video must not look like a successful replay to a script or
        to systemd. A stop (SIGTERM while the camera was failing) is not an ending to report.
        """
        if self.stop_event.is_set():
            return 0
        if self.frames == 0:
            log.error("source finished without a single frame", extra={"reason": str(exc), "frames": 0})
            return 1
        log.info("source finished", extra={"reason": str(exc), "frames": self.frames})
        return 0

    def _count_camera_errors(self) -> None:
        errs = int(getattr(self.source, "errors", 0))
        if errs > self._errors_seen:
            self.metrics.inc_camera_error(errs - self._errors_seen)
            self._errors_seen = errs

    def _count_dropped(self, timestamp_ns: int) -> None:
        """A camera drops frames it cannot hand over in time: visible as timestamp gaps."""
        prev, self._prev_ts = self._prev_ts, timestamp_ns
        if prev is None or self.cfg.source.kind != "picamera2":
            return
        missed = int(round((timestamp_ns - prev) / 1e9 * self.cfg.source.fps)) - 1
        if missed > 0:
            self.stats.dropped += missed
            self.metrics.inc_dropped(missed)

    def shutdown(self) -> None:
        self.notifier.stopping()
        t0 = time.monotonic()
        try:
            self.log_latency(time.monotonic())
        except Exception:  # noqa: BLE001 - never block shutdown on a summary
            log.exception("final latency summary failed")
        if self.source is not None:
            self.source.close()
        self.pipeline.capture.close()
        self.publisher.close()  # flushes within CLOSE_TIMEOUT_S: a hung broker cannot stall SIGTERM
        if self.http is not None:
            self.http.stop()
        log.info("stopped", extra={"frames": self.frames, "shutdown_s": round(time.monotonic() - t0, 3)})


def run_service(config_path: str | Path, max_frames: int | None = None) -> int:
    """Entry point for `edge run`: config errors and preflight failures exit non-zero, named."""
    from edge.manifest import ManifestError
    from edge.preflight import PreflightError
    from edge.publish import PublishSetupError
    from edge.runtimes import RuntimeUnavailable

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("invalid config", extra={"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level)
    try:
        daemon = Daemon(cfg, config_path)
    except (ManifestError, PreflightError, RuntimeUnavailable, PublishSetupError, ConfigError, ValueError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    daemon.install_signal_handlers()
    log.info("starting", extra={"pid": os.getpid(), "config": str(config_path), "source": cfg.source.kind})
    from edge.http_server import HttpServerError

    try:
        return daemon.run(max_frames=max_frames)
    except (ConfigError, HttpServerError) as exc:  # camera/video/http setup: named, non-zero
        log.error("setup failed", extra={"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
