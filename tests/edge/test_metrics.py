"""Metrics: what Prometheus scrapes, checked through the exposition text it would parse."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import LATENCY_BUCKETS, STAGES, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_stage_names_have_one_owner() -> None:
    """The latency line and /metrics name the same stages because they import one tuple."""
    import edge.latency
    import edge.metrics

    assert edge.metrics.STAGES is edge.latency.STAGES
    assert set(edge.latency.TRACKED) - set(STAGES) == {edge.latency.FRAME_AGE}


def test_stage_histograms_exist_for_every_stage_before_use() -> None:
    got = samples(Metrics())
    for stage in STAGES:
        assert got[("car_detector_stage_seconds_count", (("stage", stage),))] == 0


def test_observations_land_in_ms_scale_buckets() -> None:
    m = Metrics()
    m.observe_stage("infer", 0.0031)
    m.observe_stage("infer", 0.04)
    m.observe_stage("total", 1.5)
    m.observe_frame_age(0.0007)
    got = samples(m)
    infer = lambda le: got[("car_detector_stage_seconds_bucket", (("le", le), ("stage", "infer")))]  # noqa: E731
    assert infer("0.002") == 0 and infer("0.005") == 1 and infer("0.05") == 2
    assert got[("car_detector_stage_seconds_count", (("stage", "infer"),))] == 2
    assert got[("car_detector_stage_seconds_sum", (("stage", "infer"),))] == pytest.approx(0.0431)
    assert got[("car_detector_stage_seconds_bucket", (("le", "1.0"), ("stage", "total")))] == 0
    assert got[("car_detector_stage_seconds_bucket", (("le", "2.0"), ("stage", "total")))] == 1
    assert got[("car_detector_frame_age_seconds_bucket", (("le", "0.001"),))] == 1
    assert LATENCY_BUCKETS[0] == 0.0005 and LATENCY_BUCKETS[-1] == 2.0


def test_counters_and_gauges() -> None:
    m = Metrics()
    m.set_fps(14.5)
    m.inc_processed()
    m.inc_processed(2)
    m.inc_skipped()
    m.inc_dropped(4)
    m.inc_camera_error()
    m.inc_event("car_arrived")
    m.inc_event("car_arrived")
    m.inc_event("car_left")
    m.set_zone_present("drive", True)
    m.set_zone_present("street", False)
    m.set_soc_temperature(61.3)
    m.set_throttled(0x50005)
    m.set_mqtt_queue_depth(7)
    got = samples(m)
    assert got[("car_detector_fps", ())] == 14.5
    assert got[("car_detector_frames_processed_total", ())] == 3
    assert got[("car_detector_frames_skipped_total", ())] == 1
    assert got[("car_detector_frames_dropped_total", ())] == 4
    assert got[("car_detector_camera_errors_total", ())] == 1
    assert got[("car_detector_events_total", (("event", "car_arrived"),))] == 2
    assert got[("car_detector_events_total", (("event", "car_left"),))] == 1
    assert got[("car_detector_zone_present", (("zone", "drive"),))] == 1
    assert got[("car_detector_zone_present", (("zone", "street"),))] == 0
    assert got[("car_detector_soc_temperature_celsius", ())] == 61.3
    assert got[("car_detector_throttled", ())] == 0x50005
    assert got[("car_detector_mqtt_queue_depth", ())] == 7


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()  # a second instance must not raise "Duplicated timeseries"
    a.inc_processed()
    assert samples(a)[("car_detector_frames_processed_total", ())] == 1
    assert samples(b)[("car_detector_frames_processed_total", ())] == 0


def test_unknown_stage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown pipeline stage 'inference'.*infer"):
        Metrics().observe_stage("inference", 0.01)


def test_a_camera_label_sits_on_every_sample() -> None:
    """`sum by (camera)` in the fleet dashboard needs it on every series the daemon exports."""
    m = Metrics(camera="driveway")
    m.observe_stage("infer", 0.01)
    m.inc_event("car_arrived")
    m.set_zone_present("drive", True)
    m.inc_camera_id_conflict()
    got = samples(m)
    assert got and all(dict(labels).get("camera") == "driveway" for _, labels in got)
    assert got[("car_detector_camera_id_conflicts_total", (("camera", "driveway"),))] == 1
    assert got[("car_detector_zone_present", (("camera", "driveway"), ("zone", "drive")))] == 1
    assert all("camera" not in dict(labels) for _, labels in samples(Metrics()))


def test_event_series_exist_before_the_first_event() -> None:
    """A quiet camera shows an event rate of 0 in the fleet dashboard, not "no data"."""
    got = samples(Metrics())
    for kind in ("car_arrived", "car_left"):
        assert got[("car_detector_events_total", (("event", kind),))] == 0
