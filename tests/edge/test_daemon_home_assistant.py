"""What Home Assistant sees of a running daemon, through a real mosquitto on 127.0.0.1:
every zone's state from the start (retained), again after a broker restart, correct across
SIGHUP reloads (kept, added and removed zones), and the camera entity's snapshot."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.config import load_config
from edge.daemon import Daemon
from edge.events import Box
from tests.edge.conftest import Broker
from tests.edge.test_daemon import CAM, write_config
from tests.edge.test_publish_mqtt import Subscriber, retained, wait_until

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

BASE = f"cd-test/{CAM}"
DISCOVERY = f"homeassistant/binary_sensor/car-detector-{CAM}"
ZONES = {"kept": {"x": 0, "y": 60, "width": 160, "height": 180},
         "removed": {"x": 160, "y": 60, "width": 160, "height": 180}}


def config(tmp_path: Path, model_dir: Path, port: int, zones: dict, **extra: dict) -> Path:
    return write_config(tmp_path / "c.toml", model_dir, tmp_path, None, http={"enabled": False}, zones=zones,
                        mqtt={"enabled": True, "port": port, "topic_prefix": "cd-test", "keepalive_s": 5,
                              "queue_path": str(tmp_path / "mqtt-queue.jsonl"), **extra.pop("mqtt", {})},
                        **extra)


def mqtt_of(d: Daemon):
    return next(p for p in d.publisher.publishers if type(p).__name__ == "MqttPublisher")


def states(port: int, n: int) -> dict[str, bytes]:
    got = retained(port, [f"{BASE}/zone/+/state"], n)
    return {t.split("/")[-2]: v for t, v in got.items()}


def test_every_zone_state_is_retained_from_the_start_and_after_a_broker_restart(
        trained_model_dir: Path, tmp_path: Path, mosquitto: Broker) -> None:
    """No car has come yet: Home Assistant must still read OFF, not "unknown"."""
    d = Daemon(load_config(config(tmp_path, trained_model_dir, mosquitto.port, ZONES)), tmp_path / "c.toml")
    try:
        wait_until(lambda: mqtt_of(d).connected)
        d.publisher.flush(5)
        assert states(mosquitto.port, 4) == {"frame": b"OFF", "left_lane": b"OFF", "kept": b"OFF",
                                             "removed": b"OFF"}
        for i in range(2):  # frames_in = 2
            d.pipeline.publish_events(d.pipeline.decider.update([Box(20.0, 100.0, 100.0, 40.0, 0.9)], 1e9 + i, i))
        mosquitto.stop()  # no persistence: the broker forgets every retained message
        wait_until(lambda: not mqtt_of(d).connected)
        mosquitto.start()
        wait_until(lambda: mqtt_of(d).connected, timeout=20)
        d.publisher.flush(5)
        assert states(mosquitto.port, 4) == {"frame": b"ON", "left_lane": b"ON", "kept": b"ON",
                                             "removed": b"OFF"}
    finally:
        d.publisher.close()


def test_sighup_reload_leaves_correct_retained_states_and_removes_dropped_zones(
        trained_model_dir: Path, tmp_path: Path, mosquitto: Broker) -> None:
    d = Daemon(load_config(config(tmp_path, trained_model_dir, mosquitto.port, ZONES)), tmp_path / "c.toml")
    sub = Subscriber(mosquitto.port, [f"{BASE}/#"])
    try:
        cars = [Box(20.0, 100.0, 100.0, 40.0, 0.9), Box(200.0, 100.0, 100.0, 40.0, 0.8)]
        for i in range(2):  # both zones turn ON
            d.pipeline.publish_events(d.pipeline.decider.update(cars, 1e9 + i, i))
        wait_until(lambda: mqtt_of(d).connected)
        d.publisher.flush(5)
        assert states(mosquitto.port, 4)["removed"] == b"ON"
        # Reload: "removed" goes (occupied), "added" is new (empty), "kept" keeps its car.
        config(tmp_path, trained_model_dir, mosquitto.port,
               {"kept": ZONES["kept"], "added": {"x": 0, "y": 0, "width": 40, "height": 40}})
        assert d.reload()
        wait_until(lambda: mqtt_of(d).connected)
        d.publisher.flush(5)
        got = states(mosquitto.port, 4)
        assert got == {"frame": b"ON", "left_lane": b"ON", "kept": b"ON", "added": b"OFF"}, \
            "the removed zone's retained state is cleared, the others are right"
        disc = retained(mosquitto.port, [f"{DISCOVERY}/+/config"], 4)
        assert {t.split("/")[-2] for t in disc} == {"frame", "left_lane", "kept", "added"}
        left = [json.loads(m.payload) for m in sub.on(f"{BASE}/events")]
        assert [(e["event"], e["zone"]) for e in left if e["zone"] == "removed"] == [
            ("car_arrived", "removed"), ("car_left", "removed")]
    finally:
        d.publisher.close()
        sub.close()


def test_the_camera_entity_gets_the_annotated_snapshot(trained_model_dir: Path, tmp_path: Path,
                                                       mosquitto: Broker) -> None:
    """Run the real loop on synthetic frames: the first frame sends a snapshot, and then at
    most one every mqtt.snapshot_every_s (plus one per event)."""
    cfg = config(tmp_path, trained_model_dir, mosquitto.port, {}, mqtt={"snapshot_every_s": 1.0},
                 source={"fps": 20.0, "pace": True}, processing={"threshold": 0.99})
    sub = Subscriber(mosquitto.port, [f"{BASE}/snapshot", "homeassistant/camera/#"])
    d = Daemon(load_config(cfg), cfg)
    wait_until(lambda: mqtt_of(d).connected)
    runner = threading.Thread(target=d.run, kwargs={"max_frames": 60}, daemon=True)
    t0 = time.monotonic()
    runner.start()
    runner.join(60)
    elapsed = time.monotonic() - t0
    try:
        sub.wait_for(lambda: len(sub.on(f"{BASE}/snapshot")) >= 1, 10)
        time.sleep(0.3)
        pics = sub.on(f"{BASE}/snapshot")
        conf = json.loads(sub.on(f"homeassistant/camera/car-detector-{CAM}/snapshot/config")[0].payload)
    finally:
        sub.close()
    assert conf["topic"] == f"{BASE}/snapshot"
    assert all(m.payload[:2] == b"\xff\xd8" and m.payload[-2:] == b"\xff\xd9" for m in pics), "JPEG bytes"
    with Image.open(io.BytesIO(pics[-1].payload)) as im:  # the left_lane zone (top edge y = 60) drawn in blue
        r, g, b = np.asarray(im.convert("RGB"))[60, 40:120].astype(int).mean(axis=0)
    assert b > r + 80, (r, g, b)
    events = len((tmp_path / "events.jsonl").read_text().splitlines()) if (tmp_path / "events.jsonl").exists() else 0
    assert 1 <= len(pics) <= int(elapsed / 1.0) + 2 + events, f"{len(pics)} snapshots in {elapsed:.1f} s"
