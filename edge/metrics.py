"""Prometheus metrics for the daemon, in a registry of its own.

Owning a CollectorRegistry (instead of the process-global default) keeps tests and a
second daemon instance in one process from colliding on metric names, and keeps the
/metrics page to what the detector itself measures.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edge.events import ARRIVED, LEFT
from edge.latency import STAGES

# Per-stage latencies on a Pi are a fraction of a millisecond (decode) up to a few hundred
# milliseconds (a cold int8 inference); a camera stall shows up in the top buckets.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)


EVENT_KINDS = (ARRIVED, LEFT)
CAMERA_LABEL = "camera"  # on every sample: `sum by (camera)` in a fleet's PromQL and dashboards


class LabelledRegistry(CollectorRegistry):
    """A registry that adds constant labels to every sample it hands out.

    prometheus_client has no constant labels; declaring `camera` on each metric would make
    every call site pass it. The daemon's own label beats a scrape-config relabel because
    the daemon owns its camera.id: a host renamed in the inventory cannot mislabel it.
    """

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__(auto_describe=True)
        self.const_labels = labels

    def collect(self):  # type: ignore[no-untyped-def]
        for family in super().collect():  # fresh Metric objects on every collect
            family.samples = [s._replace(labels={**self.const_labels, **s.labels}) for s in family.samples]
            yield family


class Metrics:
    """Everything /metrics shows; the frame loop calls the small methods below.

    camera: the camera.id put on every sample as the `camera` label; None (bench, tests of
    one daemon) leaves it off.
    """

    def __init__(self, namespace: str = "car_detector", camera: str | None = None) -> None:
        self.registry = LabelledRegistry({CAMERA_LABEL: camera} if camera is not None else {})
        ns, reg = namespace, self.registry
        self.stage_seconds = Histogram(
            "stage_seconds", "Time spent per pipeline stage for one frame", ["stage"],
            namespace=ns, registry=reg, buckets=LATENCY_BUCKETS,
        )
        self.frame_age_seconds = Histogram(
            "frame_age_seconds", "Sensor timestamp to decision: end-to-end latency of a frame",
            namespace=ns, registry=reg, buckets=LATENCY_BUCKETS,
        )
        self.fps = Gauge("fps", "Frames processed per second (recent average)", namespace=ns, registry=reg)
        self.frames_processed = Counter(
            "frames_processed", "Frames that went through inference", namespace=ns, registry=reg
        )
        self.frames_skipped = Counter(
            "frames_skipped", "Frames skipped by motion gating", namespace=ns, registry=reg
        )
        self.frames_dropped = Counter(
            "frames_dropped", "Frames the camera delivered that the loop could not keep up with",
            namespace=ns, registry=reg,
        )
        self.camera_errors = Counter(
            "camera_errors", "Camera/source errors (each one triggers a reopen)", namespace=ns, registry=reg
        )
        self.events = Counter("events", "Presence events published", ["event"], namespace=ns, registry=reg)
        self.zone_present = Gauge(
            "zone_present", "1 while a car is present in the zone", ["zone"], namespace=ns, registry=reg
        )
        self.soc_temperature = Gauge(
            "soc_temperature_celsius", "SoC temperature (thermal throttling starts near 80-85 C)",
            namespace=ns, registry=reg,
        )
        self.throttled = Gauge(
            "throttled", "Raw `vcgencmd get_throttled` bit field (0 = never throttled)",
            namespace=ns, registry=reg,
        )
        self.mqtt_queue_depth = Gauge(
            "mqtt_queue_depth", "Events waiting for a broker acknowledgement", namespace=ns, registry=reg
        )
        self.camera_id_conflicts = Counter(
            "camera_id_conflicts", "Times another daemon was seen claiming this camera.id on the MQTT broker",
            namespace=ns, registry=reg,
        )
        for stage in STAGES:  # show every series from the start, not only after first use
            self.stage_seconds.labels(stage=stage)
        for kind in EVENT_KINDS:  # an event rate of 0, not "no data", on a quiet street
            self.events.labels(event=kind)

    def observe_stage(self, stage: str, seconds: float) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown pipeline stage {stage!r}; expected one of {', '.join(STAGES)}")
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def observe_frame_age(self, seconds: float) -> None:
        self.frame_age_seconds.observe(seconds)

    def set_fps(self, fps: float) -> None:
        self.fps.set(fps)

    def inc_processed(self, n: int = 1) -> None:
        self.frames_processed.inc(n)

    def inc_skipped(self, n: int = 1) -> None:
        self.frames_skipped.inc(n)

    def inc_dropped(self, n: int = 1) -> None:
        self.frames_dropped.inc(n)

    def inc_camera_error(self, n: int = 1) -> None:
        self.camera_errors.inc(n)

    def inc_event(self, kind: str) -> None:
        self.events.labels(event=kind).inc()

    def set_zone_present(self, zone: str, present: bool) -> None:
        self.zone_present.labels(zone=zone).set(1 if present else 0)

    def set_soc_temperature(self, celsius: float) -> None:
        self.soc_temperature.set(celsius)

    def set_throttled(self, bits: int) -> None:
        self.throttled.set(bits)

    def set_mqtt_queue_depth(self, n: int) -> None:
        self.mqtt_queue_depth.set(n)

    def inc_camera_id_conflict(self) -> None:
        self.camera_id_conflicts.inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
