"""One frame's life: preprocess -> infer -> decode + decide -> publish, each stage timed.

Kept separate from the daemon's loop so `edge bench` and `edge soak` measure exactly the
per-frame work the service does.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge.capture import FrameCapture
from edge.config import Config
from edge.decide import Decider
from edge.detector import Detector
from edge.events import ARRIVED, Box, Event
from edge.frame import Frame
from edge.latency import FRAME_AGE, RollingStats
from edge.metrics import Metrics
from edge.model import ScoreMapModel
from edge.motion import MotionGate
from edge.preprocess import crop, resize
from edge.publish.base import Publisher

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    frame_id: int
    inferred: bool
    boxes: list[Box]
    top_score: float
    events: list[Event]
    stages_s: dict[str, float] = field(default_factory=dict)
    frame_age_s: float = 0.0


def build_detector(cfg: Config) -> Detector:
    p = cfg.processing
    return Detector(
        cfg.model.path, p.height, p.width, p.scales, runtime=cfg.model.runtime, num_threads=cfg.model.num_threads,
        precision=cfg.model.precision, threshold=p.threshold, nms_iou=p.nms_iou,
    )


def build_decider(cfg: Config) -> Decider:
    zones = {n: z.shape() for n, z in cfg.zones.items()}
    return Decider(zones, cfg.decide.frames_in, cfg.decide.frames_out, cfg.processing.min_overlap)


class ZoneClassifier:
    """Per-zone crops: each `classify = true` zone's crop, at its own resolution, through an
    interpreter sized once for that crop; the zone is occupied when the best car-centre score
    in it reaches the threshold (right for a parking space seen at an angle, where a car's
    box may spill out of the zone)."""

    def __init__(self, zones: dict[str, tuple[int, int, int, int]], models: dict[str, ScoreMapModel],
                 threshold: float) -> None:
        self.zones = zones
        self.models = models
        self.threshold = threshold

    @classmethod
    def from_config(cls, cfg: Config, detector: Detector) -> "ZoneClassifier":
        zones = {n: (z.x, z.y, z.width, z.height) for n, z in cfg.zones.items() if z.classify}
        models = {}
        for name, (_, _, zw, zh) in zones.items():
            m = ScoreMapModel.load(cfg.model.path, runtime=cfg.model.runtime, num_threads=cfg.model.num_threads,
                                   precision=cfg.model.precision)
            m.set_input_size(zh, zw)
            models[name] = m
        return cls(zones, models, detector.threshold)

    def classify(self, image: np.ndarray) -> dict[str, Box | None]:
        out: dict[str, Box | None] = {}
        for name, (x, y, zw, zh) in self.zones.items():
            m = self.models[name]
            raw = m.invoke_raw(np.ascontiguousarray(image[y : y + zh, x : x + zw]))
            score = float(m.scores(np.asarray(raw.heat.max())))
            out[name] = Box(float(x), float(y), float(zw), float(zh), score) if score >= self.threshold else None
        return out


class Pipeline:
    """Stateful per-frame processing; swap parts atomically with `replace` on reload."""

    def __init__(self, cfg: Config, detector: Detector, decider: Decider, publisher: Publisher,
                 metrics: Metrics | None = None, stats: RollingStats | None = None) -> None:
        self.cfg = cfg
        self.detector = detector
        self.decider = decider
        self.publisher = publisher
        self.metrics = metrics
        self.stats = stats or RollingStats(cfg.latency.window)
        self.motion = MotionGate(cfg.motion.threshold, cfg.motion.max_skip_s) if cfg.motion.enabled else None
        self.capture = FrameCapture(cfg.capture, detector.threshold)
        self.zone_classifier = ZoneClassifier.from_config(cfg, detector) if any(
            z.classify for z in cfg.zones.values()) else None
        self._last_zone_hits: dict[str, Box | None] | None = None
        self._last_boxes: list[Box] = []
        self._last_top = 0.0
        self._lock = threading.Lock()
        self.latest: tuple[np.ndarray, list[Box]] | None = None  # for /snapshot.jpg

    def to_processing(self, image: np.ndarray) -> np.ndarray:
        p = self.cfg.processing
        return resize(crop(image, p.crop), p.width, p.height)

    def _stage(self, name: str, seconds: float, res: FrameResult) -> None:
        res.stages_s[name] = seconds
        self.stats.add(name, seconds)
        if self.metrics is not None:
            self.metrics.observe_stage(name, seconds)

    def process(self, frame: Frame) -> FrameResult:
        t_start = time.perf_counter()
        res = FrameResult(frame.frame_id, True, [], 0.0, [])
        self._stage("capture_wait", frame.capture_wait_s, res)

        t0 = time.perf_counter()
        image = self.to_processing(frame.image)
        run = self.motion is None or self.motion.should_infer(image, time.monotonic())
        inputs = self.detector.preprocess(image) if run else None
        t1 = time.perf_counter()
        self._stage("preprocess", t1 - t0, res)

        if inputs is not None:
            maps = self.detector.infer(inputs)
            if self.zone_classifier is not None:  # classify zones from their crops, on the same frames
                self._last_zone_hits = self.zone_classifier.classify(image)
            t2 = time.perf_counter()
            self._stage("infer", t2 - t1, res)
            boxes = self.detector.decode(maps)
            self._last_boxes, self._last_top = boxes, maps.top_score
        else:  # motion gate: nothing changed, the previous decision (boxes and zone hits) stands
            res.inferred = False
            t2 = t1
            boxes = self._last_boxes
            self.stats.skipped += 1
            if self.metrics is not None:
                self.metrics.inc_skipped()
        res.boxes, res.top_score = boxes, self._last_top
        res.events = self.decider.update(boxes, frame.wall_time, frame.frame_id, self._last_zone_hits)
        t3 = time.perf_counter()
        self._stage("decode_decide", t3 - t2, res)

        self.publish_events(res.events)
        if inputs is not None:  # boxes fresh from the model: what the proposals are made of
            self.capture.offer(image, frame.frame_id, frame.wall_time, res.top_score, boxes)
        t4 = time.perf_counter()
        self._stage("publish", t4 - t3, res)
        self._stage("total", t4 - t_start, res)
        res.frame_age_s = max(0.0, (time.monotonic_ns() - frame.timestamp_ns) / 1e9)
        self.stats.add(FRAME_AGE, res.frame_age_s)
        self.stats.frames += 1
        if self.metrics is not None:
            self.metrics.observe_frame_age(res.frame_age_s)
            self.metrics.inc_processed()
        with self._lock:
            self.latest = (image, boxes)
        return res

    def publish_events(self, events: list[Event]) -> None:
        """Events, then the zone state they imply (a removed zone's `car_left` has no decider state)."""
        for ev in events:
            log.info("event", extra={"event": ev.to_dict()})
            self.publisher.publish_event(ev)
            present = ev.kind == ARRIVED
            self.publisher.publish_state(ev.zone, present, ev.score)
            if self.metrics is not None:
                self.metrics.inc_event(ev.kind)
                self.metrics.set_zone_present(ev.zone, present)

    def publish_presence(self) -> None:
        """Every zone's current state, events or not: at start (Home Assistant would show
        "unknown", or the last run's stale state, until the first car) and after a reload
        (a rebuilt publisher knows no state). Publishers drop repeats of a known state."""
        for zone, present in self.decider.presence().items():
            self.publisher.publish_state(zone, present, 0.0)

    def snapshot_frame(self) -> tuple[np.ndarray, list[Box]] | None:
        with self._lock:
            return self.latest
