"""MqttPublisher against a real mosquitto on 127.0.0.1, including broker outages."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.config import MqttConfig
from edge.events import ARRIVED, LEFT, Box, Event
from edge.publish import PublishSetupError
from edge.publish.base import CLOSE_TIMEOUT_S
from edge.publish.mqtt import MqttPublisher
from edge.publish.mqtt_queue import DiskQueue
from tests.edge.conftest import Broker, free_port, mode

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(60)]

PREFIX = "cdtest"
CAM = "cam1"  # camera.id of the publisher under test
BASE = f"{PREFIX}/{CAM}"  # its topics


def make_event(i: int, zone: str = "drive") -> Event:
    kind = ARRIVED if i % 2 == 0 else LEFT
    return Event(kind=kind, zone=zone, time=1_700_000_000.0 + i, frame_id=i, score=0.9,
                 box=Box(10.0, 20.0, 100.0, 40.0, 0.9) if kind == ARRIVED else None,
                 dwell_s=None if kind == ARRIVED else 12.5)


def make_cfg(port: int, tmp_path: Path, **kw: object) -> MqttConfig:
    base: dict[str, object] = dict(
        enabled=True, host="127.0.0.1", port=port,
        topic_prefix=PREFIX, queue_path=str(tmp_path / "state" / "mqtt-queue.jsonl"), keepalive_s=5,
    )
    base.update(kw)
    return MqttConfig(**base)  # type: ignore[arg-type]


class Subscriber:
    """A plain paho subscriber that records (topic, payload, qos, retain) in arrival order."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.msgs: list[mqtt.MQTTMessage] = []
        self.cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self._connect(port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert self._subscribed.wait(5), "SUBACK did not arrive"

    def _connect(self, port: int) -> None:
        self.client.connect("127.0.0.1", port, keepalive=5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.msgs.append(msg)
            self.cond.notify_all()

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.cond:
            return [m for m in self.msgs if m.topic == topic]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; got {[(m.topic, m.payload) for m in self.msgs]}")
                self.cond.wait(left)

    def events(self) -> list[dict]:
        return [json.loads(m.payload) for m in self.on(f"{BASE}/events")]

    def wait_events(self, n: int, timeout: float = 10.0) -> list[dict]:
        self.wait_for(lambda: len(self.on(f"{BASE}/events")) >= n, timeout)
        return self.events()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topics: list[str], n: int) -> dict[str, bytes]:
    """What a subscriber arriving now sees: the retained message of each topic."""
    sub = Subscriber(port, topics)
    try:
        sub.wait_for(lambda: len(sub.msgs) >= n, 5)
        time.sleep(0.1)  # let any extra retained messages arrive too
        assert all(m.retain for m in sub.msgs)
        return {m.topic: m.payload for m in sub.msgs}
    finally:
        sub.close()


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def queue_lines(cfg: MqttConfig) -> list[dict]:
    p = Path(cfg.queue_path)
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_events_arrive_in_order_with_qos1_and_leave_the_disk_queue(mosquitto: Broker, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
    cfg = make_cfg(mosquitto.port, tmp_path)
    pub = MqttPublisher(cfg, ["drive"], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
        events = [make_event(i) for i in range(20)]
        for e in events:
            pub.publish_event(e)
        got = sub.wait_events(20)
        assert got == [e.to_dict() for e in events]
        assert all(m.qos == 1 and not m.retain for m in sub.on(f"{BASE}/events"))
        pub.flush(5)
        assert pub.queue_depth == 0
        assert queue_lines(cfg) == []  # acknowledged events are gone from disk
    finally:
        pub.close()
        sub.close()


def test_retained_state_status_and_stats_for_a_late_subscriber(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = make_cfg(mosquitto.port, tmp_path, discovery=False)
    pub = MqttPublisher(cfg, ["drive", "street"], camera_id=CAM)
    pub.publish_state("drive", True, 0.9)
    pub.publish_state("street", False, 0.1)
    pub.publish_stats({"latency_p95_ms": 41.5, "fps": 14.8})
    wait_until(lambda: pub.connected)
    pub.flush(5)
    got = retained(mosquitto.port, [f"{BASE}/#"], 4)
    assert got[f"{BASE}/zone/drive/state"] == b"ON"
    assert got[f"{BASE}/zone/street/state"] == b"OFF"
    assert got[f"{BASE}/status"] == b"online"
    assert json.loads(got[f"{BASE}/stats"]) == {"latency_p95_ms": 41.5, "fps": 14.8}

    pub.publish_state("drive", False, 0.2)
    pub.flush(5)
    assert retained(mosquitto.port, [f"{BASE}/zone/drive/state"], 1) == {f"{BASE}/zone/drive/state": b"OFF"}

    pub.close()
    pub.close()  # twice is fine
    assert retained(mosquitto.port, [f"{BASE}/status"], 1) == {f"{BASE}/status": b"offline"}


def test_last_will_says_offline_when_the_daemon_dies(mosquitto: Broker, tmp_path: Path) -> None:
    """SIGKILL: no DISCONNECT packet, so only the broker-held will can say "offline"."""
    script = (
        "import sys, time\n"
        "from edge.config import MqttConfig\n"
        "from edge.publish.mqtt import MqttPublisher\n"
        f"cfg = MqttConfig(enabled=True, host='127.0.0.1', port={mosquitto.port}, "
        f"topic_prefix='{PREFIX}', discovery=False, queue_path={str(tmp_path / 'q.jsonl')!r})\n"
        f"pub = MqttPublisher(cfg, [], camera_id={CAM!r})\n"
        "while not pub.connected: time.sleep(0.02)\n"
        "pub.flush(5)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        assert retained(mosquitto.port, [f"{BASE}/status"], 1) == {f"{BASE}/status": b"online"}
        sub = Subscriber(mosquitto.port, [f"{BASE}/status"])
        try:
            proc.kill()
            sub.wait_for(lambda: any(m.payload == b"offline" for m in sub.msgs), 10)
        finally:
            sub.close()
    finally:
        proc.kill()
        proc.wait()


def test_home_assistant_discovery_configs(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = make_cfg(mosquitto.port, tmp_path)
    pub = MqttPublisher(cfg, ["drive", "street side"], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
        pub.flush(5)
        got = retained(mosquitto.port, ["homeassistant/#"], 5)
    finally:
        pub.close()
    assert set(got) == {
        "homeassistant/binary_sensor/car-detector-cam1/drive/config",
        "homeassistant/binary_sensor/car-detector-cam1/street_side/config",
        "homeassistant/sensor/car-detector-cam1/latency_p95/config",
        "homeassistant/sensor/car-detector-cam1/fps/config",
        "homeassistant/camera/car-detector-cam1/snapshot/config",
    }
    camera = json.loads(got["homeassistant/camera/car-detector-cam1/snapshot/config"])
    assert camera["topic"] == f"{BASE}/snapshot" and "image_encoding" not in camera  # raw JPEG bytes
    assert camera["unique_id"] == "car-detector-cam1_snapshot"
    assert camera["availability_topic"] == f"{BASE}/status"
    drive = json.loads(got["homeassistant/binary_sensor/car-detector-cam1/drive/config"])
    assert drive["device_class"] == "occupancy"
    assert drive["state_topic"] == f"{BASE}/zone/drive/state"
    assert drive["payload_on"] == "ON" and drive["payload_off"] == "OFF"
    assert drive["availability_topic"] == f"{BASE}/status"
    assert drive["payload_available"] == "online" and drive["payload_not_available"] == "offline"
    assert drive["unique_id"] == "car-detector-cam1_drive_occupancy"
    assert drive["device"]["identifiers"] == ["car-detector-cam1"]
    assert drive["device"]["name"] == "Car detector cam1"
    street = json.loads(got["homeassistant/binary_sensor/car-detector-cam1/street_side/config"])
    assert street["state_topic"] == f"{BASE}/zone/street_side/state"
    assert street["unique_id"] != drive["unique_id"]
    p95 = json.loads(got["homeassistant/sensor/car-detector-cam1/latency_p95/config"])
    assert p95["unit_of_measurement"] == "ms"
    assert p95["state_topic"] == f"{BASE}/stats"
    assert p95["value_template"] == "{{ value_json.latency_p95_ms }}"
    fps = json.loads(got["homeassistant/sensor/car-detector-cam1/fps/config"])
    assert fps["value_template"] == "{{ value_json.fps }}"
    assert fps["device"] == drive["device"]


def test_broker_outage_loses_nothing_and_keeps_order(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = make_cfg(mosquitto.port, tmp_path)
    # First retry 2 s after the drop: the test's subscriber is back well before that.
    pub = MqttPublisher(cfg, ["drive"], reconnect_min_s=2, reconnect_max_s=2, camera_id=CAM)
    sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
    try:
        wait_until(lambda: pub.connected)
        pub.publish_state("drive", True, 0.9)
        for i in range(5):
            pub.publish_event(make_event(i))
        assert [e["frame_id"] for e in sub.wait_events(5)] == list(range(5))
        pub.flush(5)
        sub.close()

        mosquitto.stop()
        wait_until(lambda: not pub.connected)
        for i in range(5, 15):  # published while the broker is down
            pub.publish_event(make_event(i))
        pub.publish_state("drive", False, 0.1)
        assert pub.queue_depth == 10
        assert [r["seq"] for r in queue_lines(cfg) if "seq" in r][-10:] == list(range(5, 15))
        time.sleep(0.3)

        mosquitto.start()  # same port; retained messages are gone (no persistence)
        sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
        for i in range(15, 20):  # published around the reconnect
            pub.publish_event(make_event(i))
        got = sub.wait_events(15, timeout=15)
        assert [e["frame_id"] for e in got] == list(range(5, 20))
        assert got == [make_event(i).to_dict() for i in range(5, 20)]
        pub.flush(5)
        assert pub.queue_depth == 0
        # Presence state and availability were re-published after the restart.
        state = retained(mosquitto.port, [f"{BASE}/zone/drive/state", f"{BASE}/status"], 2)
        assert state == {f"{BASE}/zone/drive/state": b"OFF", f"{BASE}/status": b"online"}
    finally:
        sub.close()
        pub.close()


def test_messages_in_flight_when_the_broker_dies_are_resent_before_newer_ones(
    mosquitto: Broker, tmp_path: Path
) -> None:
    cfg = make_cfg(mosquitto.port, tmp_path)
    pub = MqttPublisher(cfg, [], reconnect_min_s=2, reconnect_max_s=2, camera_id=CAM)
    sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
    try:
        wait_until(lambda: pub.connected)
        for i in range(3):
            pub.publish_event(make_event(i))
        sub.wait_events(3)
        pub.flush(5)
        sub.close()

        mosquitto.pause()
        for i in range(3, 8):  # sent into the socket, never acknowledged
            pub.publish_event(make_event(i))
        wait_until(lambda: not pub._queue.unhanded)
        assert pub.queue_depth == 5
        mosquitto.kill()
        wait_until(lambda: not pub.connected)
        for i in range(8, 12):  # queued while down, never handed to paho yet
            pub.publish_event(make_event(i))

        mosquitto.start()
        sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
        got = sub.wait_events(9, timeout=15)
        assert [e["frame_id"] for e in got] == list(range(3, 12))
        pub.flush(5)
        assert pub.queue_depth == 0
    finally:
        sub.close()
        pub.close()


def test_queue_survives_a_daemon_restart(mosquitto_stopped: Broker, tmp_path: Path) -> None:
    cfg = make_cfg(mosquitto_stopped.port, tmp_path)
    pub = MqttPublisher(cfg, ["drive"], camera_id=CAM)
    for i in range(4):
        pub.publish_event(make_event(i))
    t0 = time.monotonic()
    pub.close()
    assert time.monotonic() - t0 < 3.0  # a down broker must not hang shutdown
    assert [r["msg"]["frame_id"] for r in queue_lines(cfg)] == [0, 1, 2, 3]

    mosquitto_stopped.start()
    sub = Subscriber(mosquitto_stopped.port, [f"{BASE}/events"])
    pub2 = MqttPublisher(cfg, ["drive"], camera_id=CAM)
    try:
        pub2.publish_event(make_event(4))
        got = sub.wait_events(5)
        assert [e["frame_id"] for e in got] == [0, 1, 2, 3, 4]
        pub2.flush(5)
        assert queue_lines(cfg) == []
    finally:
        pub2.close()
        sub.close()


def test_bounded_queue_drops_oldest_with_a_counted_warning(
    mosquitto_stopped: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg(mosquitto_stopped.port, tmp_path, queue_max=5)
    pub = MqttPublisher(cfg, [], camera_id=CAM)
    with caplog.at_level(logging.WARNING, logger="edge.publish.mqtt"):
        for i in range(8):
            pub.publish_event(make_event(i))
    assert pub.dropped_total == 3
    assert pub.queue_depth == 5
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert warnings and "mqtt.queue_max = 5" in warnings[0] and "1 dropped so far" in warnings[0]
    pub.close()

    mosquitto_stopped.start()
    sub = Subscriber(mosquitto_stopped.port, [f"{BASE}/events"])
    pub2 = MqttPublisher(cfg, [], camera_id=CAM)
    try:
        got = sub.wait_events(5)
        assert [e["frame_id"] for e in got] == [3, 4, 5, 6, 7]
    finally:
        pub2.close()
        sub.close()


def test_torn_queue_file_is_loaded_and_compacted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg(free_port(), tmp_path)  # nothing listens there
    path = Path(cfg.queue_path)
    path.parent.mkdir(parents=True)
    lines = [{"seq": 0, "msg": make_event(0).to_dict()}, {"seq": 1, "msg": make_event(1).to_dict()},
             {"done": 0}, {"seq": 2, "msg": make_event(2).to_dict()}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"seq": 3, "msg": {"ev')  # power cut
    with caplog.at_level(logging.WARNING, logger="edge.publish.mqtt"):
        pub = MqttPublisher(cfg, [], camera_id=CAM)
    try:
        assert pub.queue_depth == 2
        assert any("unreadable" in r.getMessage() for r in caplog.records)
        assert [r["seq"] for r in queue_lines(cfg)] == [1, 2]
        pub.publish_event(make_event(3))
        assert [r["seq"] for r in queue_lines(cfg)] == [1, 2, 3]  # sequence continues after the max
    finally:
        pub.close()


def test_flush_gives_up_after_its_timeout_while_broker_is_down(tmp_path: Path) -> None:
    pub = MqttPublisher(make_cfg(free_port(), tmp_path), [], camera_id=CAM)
    try:
        pub.publish_event(make_event(0))
        t0 = time.monotonic()
        pub.flush(0.3)
        assert 0.25 <= time.monotonic() - t0 < 1.5
        assert pub.queue_depth == 1
    finally:
        pub.close()


def test_unwritable_queue_path_names_the_config_key(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = make_cfg(free_port(), tmp_path, queue_path=str(blocker / "q.jsonl"))
    with pytest.raises(PublishSetupError, match=r"mqtt\.queue_path") as exc:
        MqttPublisher(cfg, [], camera_id=CAM)
    assert str(blocker) in str(exc.value)


def test_bad_topic_prefix_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PublishSetupError, match=r"mqtt\.topic_prefix"):
        MqttPublisher(make_cfg(free_port(), tmp_path, topic_prefix="cars/#"), [], camera_id=CAM)


def test_zone_names_that_collide_on_a_topic_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(PublishSetupError, match="'street side' and 'street/side'"):
        MqttPublisher(make_cfg(free_port(), tmp_path), ["street side", "street/side"], camera_id=CAM)


def test_queue_file_and_folder_are_private_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    """The queue holds the same events as the events file: 0640 in a 0750 folder, also
    after a compaction rewrote it."""
    cfg = make_cfg(free_port(), tmp_path)  # nothing listens: events stay queued
    pub = MqttPublisher(cfg, [], camera_id=CAM)
    try:
        pub.publish_event(make_event(0))
    finally:
        pub.close()
    path = Path(cfg.queue_path)
    assert mode(path.parent) == 0o750
    assert mode(path) == 0o640
    path.chmod(0o666)  # left by an older version
    pub = MqttPublisher(cfg, [], camera_id=CAM)  # opening compacts: tmp + rename, a new file
    pub.close()
    assert mode(path) == 0o640


def test_queue_depth_is_reported_on_every_change(mosquitto_stopped: Broker, tmp_path: Path) -> None:
    """What feeds car_detector_mqtt_queue_depth: a backlog from the last run, each event
    queued, and the acknowledgements once the broker is back."""
    cfg = make_cfg(mosquitto_stopped.port, tmp_path)
    pub = MqttPublisher(cfg, [], camera_id=CAM)
    pub.publish_event(make_event(0))
    pub.close()
    depths: list[int] = []
    pub = MqttPublisher(cfg, [], on_queue_depth=depths.append, camera_id=CAM)
    try:
        for i in range(1, 4):
            pub.publish_event(make_event(i))
        assert depths == [1, 2, 3, 4]
        mosquitto_stopped.start()
        wait_until(lambda: depths[-1] == 0)
        assert pub.queue_depth == 0
    finally:
        pub.close()


def test_close_with_a_hung_broker_keeps_its_budget_and_the_events(mosquitto: Broker, tmp_path: Path) -> None:
    """SIGSTOPped broker: the connection stays up, nothing is acknowledged. close() must
    give up on the flush, the "offline" PUBACK and the network thread within its budget."""
    cfg = make_cfg(mosquitto.port, tmp_path)
    pub = MqttPublisher(cfg, ["drive"], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
        pub.flush(5)
        mosquitto.pause()
        for i in range(5):
            pub.publish_event(make_event(i))
        wait_until(lambda: not pub._queue.unhanded)  # all five are in paho's hands, unacknowledged
        t0 = time.monotonic()
        pub.close()
        took = time.monotonic() - t0
    finally:
        pub.close()
        mosquitto.kill()
    assert took < CLOSE_TIMEOUT_S + 0.2, f"close took {took:.2f} s"
    assert [r["msg"]["frame_id"] for r in queue_lines(cfg)] == [0, 1, 2, 3, 4]


def test_a_publisher_built_unstarted_owns_nothing_until_start(mosquitto: Broker, tmp_path: Path) -> None:
    """What a reload relies on: the new publisher is checked and built while the old one
    still owns the queue file and the client id, and takes them only in start()."""
    cfg = make_cfg(mosquitto.port, tmp_path)
    old = MqttPublisher(cfg, [], camera_id=CAM)
    old.close()  # leaves an empty queue file behind
    Path(cfg.queue_path).write_text(json.dumps({"seq": 0, "msg": make_event(0).to_dict()}) + "\n")
    before = Path(cfg.queue_path).read_bytes()
    sub = Subscriber(mosquitto.port, [f"{BASE}/events"])
    pub = MqttPublisher(cfg, [], start=False, camera_id=CAM)
    try:
        time.sleep(0.3)
        assert not pub.connected and sub.events() == []
        assert Path(cfg.queue_path).read_bytes() == before
        with pytest.raises(RuntimeError, match="before start"):
            pub.publish_event(make_event(1))
        pub.start()
        pub.publish_event(make_event(1))
        assert [e["frame_id"] for e in sub.wait_events(2)] == [0, 1]
    finally:
        pub.close()
        sub.close()


def test_an_unusable_queue_path_is_refused_before_start(tmp_path: Path) -> None:
    """A reload learns about a bad new queue path while the old publisher still runs."""
    (tmp_path / "q.jsonl").mkdir()
    with pytest.raises(PublishSetupError, match=r"mqtt\.queue_path"):
        MqttPublisher(make_cfg(free_port(), tmp_path, queue_path=str(tmp_path / "q.jsonl")), [], start=False,
                      camera_id=CAM)


def test_the_queue_never_writes_after_close(tmp_path: Path) -> None:
    """A late acknowledgement (sender thread past the close budget) must not touch a file
    that a reloaded publisher may own by now."""
    q = DiskQueue(tmp_path / "q.jsonl", 10)
    q.open()
    q.append(make_event(0).to_dict())
    (item,) = q.take(1)
    q.close()
    before = q.path.read_bytes()
    q.done(item)
    q.append(make_event(1).to_dict())
    assert q.path.read_bytes() == before


def test_two_publishers_with_one_camera_id_are_reported_loudly(
        mosquitto: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Same camera.id = same client id: the broker silently swaps them back and forth. Both
    must say so (ERROR naming the id and the other host) and count it; events still arrive."""
    caplog.set_level(logging.ERROR, logger="edge.publish.mqtt")
    seen: dict[str, int] = {"a": 0, "b": 0}

    def counter(name: str) -> Callable[[], None]:
        return lambda: seen.__setitem__(name, seen[name] + 1)

    a = MqttPublisher(make_cfg(mosquitto.port, tmp_path / "a"), [], camera_id=CAM, reconnect_min_s=1,
                      reconnect_max_s=1, on_identity_conflict=counter("a"))
    try:
        wait_until(lambda: a.connected)
        b = MqttPublisher(make_cfg(mosquitto.port, tmp_path / "b"), [], camera_id=CAM, reconnect_min_s=1,
                          reconnect_max_s=1, on_identity_conflict=counter("b"))
        try:
            wait_until(lambda: seen["a"] >= 1 and seen["b"] >= 1, timeout=15)
        finally:
            b.close()
    finally:
        a.close()
    assert a.identity_conflicts == seen["a"] and b.identity_conflicts == seen["b"]
    errors = [r.getMessage() for r in caplog.records if "another daemon uses camera.id" in r.getMessage()]
    assert len(errors) == 2, errors  # one per publisher: repeats within a minute are only counted
    assert all(repr(CAM) in e and socket.gethostname() in e and "car-detector-cam1" in e for e in errors)


def test_a_restart_or_another_camera_is_no_conflict(mosquitto: Broker, tmp_path: Path) -> None:
    """The retained claim a restarted daemon finds is its predecessor's: not a duplicate.
    Two cameras on one broker never see each other's claims."""
    cfg = make_cfg(mosquitto.port, tmp_path)
    first = MqttPublisher(cfg, [], camera_id=CAM)
    wait_until(lambda: first.connected)
    first.flush(5)
    first.close()
    conflicts: list[str] = []
    again = MqttPublisher(cfg, [], camera_id=CAM, on_identity_conflict=lambda: conflicts.append(CAM))
    other = MqttPublisher(make_cfg(mosquitto.port, tmp_path / "o"), [], camera_id="cam2",
                          on_identity_conflict=lambda: conflicts.append("cam2"))
    try:
        wait_until(lambda: again.connected and other.connected)
        claims = retained(mosquitto.port, [f"{PREFIX}/+/instance"], 2)
        assert set(claims) == {f"{BASE}/instance", f"{PREFIX}/cam2/instance"}
        assert json.loads(claims[f"{BASE}/instance"])["pid"] == os.getpid()
        time.sleep(1.5)  # a stolen client id would have bounced them by now
    finally:
        again.close()
        other.close()
    assert conflicts == []
    assert "already connected" not in mosquitto.log.read_text()


JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"  # what HA's MQTT camera gets, as is


def test_no_camera_entity_when_snapshot_is_off(mosquitto: Broker, tmp_path: Path) -> None:
    pub = MqttPublisher(make_cfg(mosquitto.port, tmp_path, snapshot=False), ["drive"], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
        pub.publish_snapshot(JPEG)
        pub.flush(5)
        got = retained(mosquitto.port, ["homeassistant/#", f"{BASE}/snapshot"], 3)
    finally:
        pub.close()
    assert not any("/camera/" in t for t in got) and f"{BASE}/snapshot" not in got


def test_snapshot_states_and_discovery_come_back_after_the_broker_lost_them(
        mosquitto: Broker, tmp_path: Path) -> None:
    """The broker restarts without persistence: every retained message is gone. After the
    reconnect the publisher says all of them again (states, snapshot, discovery)."""
    pub = MqttPublisher(make_cfg(mosquitto.port, tmp_path), ["drive", "street"], camera_id=CAM)
    try:
        pub.publish_state("drive", True, 0.9)
        pub.publish_state("street", False, 0.0)
        pub.publish_snapshot(b"old")
        pub.publish_snapshot(JPEG)  # only the newest picture is sent
        wait_until(lambda: pub.connected)
        pub.flush(5)
        before = retained(mosquitto.port, [f"{BASE}/zone/+/state", f"{BASE}/snapshot"], 3)
        assert before == {f"{BASE}/zone/drive/state": b"ON", f"{BASE}/zone/street/state": b"OFF",
                          f"{BASE}/snapshot": JPEG}
        mosquitto.stop()
        wait_until(lambda: not pub.connected)
        mosquitto.start()
        wait_until(lambda: pub.connected, timeout=20)
        pub.flush(5)
        after = retained(mosquitto.port, [f"{BASE}/zone/+/state", f"{BASE}/snapshot",
                                          "homeassistant/camera/#"], 4)
    finally:
        pub.close()
    assert after[f"{BASE}/zone/drive/state"] == b"ON" and after[f"{BASE}/zone/street/state"] == b"OFF"
    assert after[f"{BASE}/snapshot"] == JPEG
    assert "homeassistant/camera/car-detector-cam1/snapshot/config" in after


def retained_or_none(port: int, topics: list[str]) -> dict[str, bytes] | None:
    """Retained messages a subscriber sees within 0.3 s, or None when there are none."""
    sub = Subscriber(port, topics)
    try:
        time.sleep(0.3)
        return {m.topic: m.payload for m in sub.msgs} or None
    finally:
        sub.close()


def test_forgotten_zones_lose_their_retained_state_and_home_assistant_entity(
        mosquitto: Broker, tmp_path: Path) -> None:
    pub = MqttPublisher(make_cfg(mosquitto.port, tmp_path), ["drive", "gone"], camera_id=CAM)
    try:
        pub.publish_state("drive", True, 0.9)
        pub.publish_state("gone", True, 0.9)
        wait_until(lambda: pub.connected)
        pub.flush(5)
        assert retained(mosquitto.port, [f"{BASE}/zone/gone/state"], 1) == {f"{BASE}/zone/gone/state": b"ON"}
        pub.forget_zones(["gone"])
        pub.flush(5)
        left = retained_or_none(mosquitto.port, [f"{BASE}/zone/+/state", "homeassistant/binary_sensor/#"])
    finally:
        pub.close()
    assert left is not None
    assert left[f"{BASE}/zone/drive/state"] == b"ON"
    assert f"{BASE}/zone/gone/state" not in left
    assert "homeassistant/binary_sensor/car-detector-cam1/gone/config" not in left
    assert "homeassistant/binary_sensor/car-detector-cam1/drive/config" in left
