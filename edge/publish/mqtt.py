"""MQTT publisher: events at least once and in order, retained presence, HA discovery.

Delivery model
--------------
Every event is first appended (and fsync'd) to an on-disk queue (mqtt.queue_path), so a
broker outage *or* a daemon restart loses nothing. A single sender thread hands queued
events to paho in order, at most `WINDOW` un-acknowledged at a time, and removes each one
from the queue only when its PUBACK arrives.

Ordering across a reconnect: paho re-sends the messages it still holds right after the
CONNACK. Fresh messages must go out only after those, or a backlog event could overtake an
older one (and a stale retained state could overwrite a newer one). So after each connect
we publish the "online" availability message first and treat its PUBACK as "the resend is
done": paho's resend happens in the same network-thread call as the CONNACK, before any
PUBACK can be read, so nothing we send after that PUBACK can overtake it.

Locking: paho calls on_publish while holding its own message lock, so we never call
client.publish() while holding ours, and on_publish only enqueues the mid. Acks are
matched to messages by the sender thread, which is also the only thread that records
mids, so an ack can never be processed before its mid is known.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__
from edge.config import MqttConfig
from edge.events import Event
from edge.publish import PublishSetupError, prepare_file_path
from edge.publish.base import Publisher

log = logging.getLogger(__name__)

WINDOW = 100  # events handed to paho but not yet acknowledged
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
# Keys of the stats dict that the Home Assistant sensors read (see publish_stats).
STATS_LATENCY_P95_KEY = "latency_p95_ms"
STATS_FPS_KEY = "fps"

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def slug(name: str) -> str:
    """A topic level / HA object id: no '/', '+', '#', spaces."""
    s = _SLUG.sub("_", name).strip("_")
    if not s:
        raise ValueError(f"name {name!r} has no letters or digits to build an MQTT topic from")
    return s


# --------------------------------------------------------------------------- disk queue


@dataclass(eq=False)
class _Item:
    seq: int
    msg: Any  # the JSON-able event dict
    handed: bool = False  # given to paho (paho re-sends it on reconnect by itself)
    done: bool = False

    def payload(self) -> bytes:
        return json.dumps(self.msg).encode("utf-8")


@dataclass
class _DiskQueue:
    """Pending events, in order, mirrored to a JSON-lines log.

    Lines are {"seq": n, "msg": {...}} when an event is queued and {"done": n} when it was
    acknowledged or dropped; the file is compacted when done lines outnumber pending ones,
    so a long outage costs O(n) disk writes, not O(n^2).
    """

    path: Path
    max_items: int
    items: dict[int, _Item] = field(default_factory=dict)
    unhanded: deque[_Item] = field(default_factory=deque)
    next_seq: int = 0
    _file: IO[bytes] | None = None
    _done_lines: int = 0
    _disk_ok: bool = True

    def open(self) -> list[_Item]:
        """Load the backlog a previous run left; returns the items dropped by max_items."""
        prepare_file_path(self.path, "MQTT queue file", "mqtt.queue_path", "/var/lib/car-detector/mqtt-queue.jsonl")
        bad = self._load()
        if bad:
            log.warning("MQTT queue %s: skipped %d unreadable line(s) (torn write?)", self.path, bad)
        dropped = self._enforce_bound()
        try:
            self._rewrite()
        except OSError as exc:
            raise self._setup_error("write it", exc) from None
        if self.items:
            log.info("MQTT queue %s: %d event(s) from a previous run will be re-sent", self.path, len(self.items))
        return dropped

    def _setup_error(self, what: str, exc: OSError) -> PublishSetupError:
        return PublishSetupError(
            f"MQTT queue file {self.path} (config key mqtt.queue_path): cannot {what}: "
            f"{exc.strerror or exc}; point mqtt.queue_path at a writable location"
        )

    def _load(self) -> int:
        bad = 0
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._setup_error("read it", exc) from None
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if "seq" in rec:
                    seq = int(rec["seq"])
                    self.items[seq] = _Item(seq, rec["msg"])
                else:
                    seq = int(rec["done"])
                    self.items.pop(seq, None)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            self.next_seq = max(self.next_seq, seq + 1)
        self.items = dict(sorted(self.items.items()))
        self.unhanded = deque(self.items.values())
        return bad

    def _enforce_bound(self) -> list[_Item]:
        dropped = []
        while len(self.items) > self.max_items:
            oldest = self.items.pop(next(iter(self.items)))
            if self.unhanded and self.unhanded[0] is oldest:
                self.unhanded.popleft()
            oldest.done = True
            dropped.append(oldest)
        return dropped

    def _write(self, rec: dict[str, Any], sync: bool) -> None:
        """Append one record; a failing disk degrades to memory-only, loudly, once."""
        try:
            if self._file is None:
                self._file = open(self.path, "ab")  # noqa: SIM115
            self._file.write((json.dumps(rec, separators=(",", ":")) + "\n").encode("utf-8"))
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            if self._disk_ok:
                log.error("MQTT queue %s: cannot write (%s); events are kept in memory only "
                          "until it works again (mqtt.queue_path)", self.path, exc)
            self._disk_ok = False
            return
        if not self._disk_ok:
            log.warning("MQTT queue %s: writing works again", self.path)
            self._disk_ok = True

    def _rewrite(self) -> None:
        """Replace the file by just the pending items (atomic: tmp + rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            for item in self.items.values():
                f.write((json.dumps({"seq": item.seq, "msg": item.msg}, separators=(",", ":")) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        if self._file is not None:
            self._file.close()
            self._file = None
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._done_lines = 0

    def append(self, msg: Any) -> list[_Item]:
        """Queue one event; returns the oldest items dropped to stay within max_items."""
        item = _Item(self.next_seq, msg)
        self.next_seq += 1
        self.items[item.seq] = item
        self.unhanded.append(item)
        self._write({"seq": item.seq, "msg": msg}, sync=True)
        dropped = self._enforce_bound()
        for d in dropped:
            self._write({"done": d.seq}, sync=False)
        self._done_lines += len(dropped)
        self._maybe_compact()
        return dropped

    def take(self, limit: int) -> list[_Item]:
        """The next not-yet-handed items, oldest first, keeping at most `limit` in flight."""
        room = limit - (len(self.items) - len(self.unhanded))
        out = []
        while room > 0 and self.unhanded:
            item = self.unhanded.popleft()
            item.handed = True
            out.append(item)
            room -= 1
        return out

    def done(self, item: _Item) -> None:
        """Acknowledged: forget it (a no-op if it was already dropped)."""
        if item.done:
            return
        item.done = True
        if self.items.pop(item.seq, None) is None:
            return
        self._write({"done": item.seq}, sync=False)
        self._done_lines += 1
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._done_lines == 0 or not self._disk_ok:
            return
        if not self.items or self._done_lines > max(256, len(self.items)):
            try:
                self._rewrite()
            except OSError as exc:
                log.error("MQTT queue %s: compaction failed: %s", self.path, exc)

    def close(self) -> None:
        if self._file is not None:
            if self._done_lines and self._disk_ok:
                try:
                    self._rewrite()
                except OSError as exc:
                    log.error("MQTT queue %s: compaction failed: %s", self.path, exc)
            if self._file is not None:
                self._file.close()
                self._file = None


# --------------------------------------------------------------------------- publisher

_ONLINE_MARK = object()  # by_mid value of the availability message sent on connect
_OTHER_MARK = object()  # states, stats, discovery: tracked only so flush() can wait for them


class MqttPublisher(Publisher):
    """Publishes to `<topic_prefix>/events`, `/zone/<zone>/state`, `/status`, `/stats`.

    Construction never waits for the broker: paho connects in the background and keeps
    retrying with exponential backoff (reconnect_min_s doubling up to reconnect_max_s).
    """

    def __init__(
        self,
        cfg: MqttConfig,
        zones: list[str],
        *,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 30,
    ) -> None:
        self.cfg = cfg
        self.prefix = self._check_prefix(cfg.topic_prefix, "mqtt.topic_prefix")
        self.discovery_prefix = self._check_prefix(cfg.discovery_prefix, "mqtt.discovery_prefix")
        self.node_id = slug(cfg.client_id or "car-detector")
        self.zones = list(dict.fromkeys(zones))
        self._zone_slugs = self._slug_zones(self.zones)
        self.events_topic = f"{self.prefix}/events"
        self.status_topic = f"{self.prefix}/status"
        self.stats_topic = f"{self.prefix}/stats"

        self._cond = threading.Condition()
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._by_mid: dict[int, object] = {}
        self._online_mid: int | None = None
        self._connected = False
        self._ready = False
        self._intro_due = False
        self._states: dict[str, str] = {}
        self._dirty_states: set[str] = set()
        self._stats: bytes | None = None
        self._stats_dirty = False
        self._closed = False
        self._stop = False
        self._connect_fail_logged = False
        self.dropped_total = 0
        self._last_drop_log = 0.0

        self._queue = _DiskQueue(Path(cfg.queue_path), cfg.queue_max)
        self._note_dropped(self._queue.open())
        self._client = self._make_client(reconnect_min_s, reconnect_max_s)
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._sender.start()
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    @staticmethod
    def _slug_zones(zones: list[str]) -> dict[str, str]:
        """Zone name -> topic level; two zones must not end up on one topic."""
        out: dict[str, str] = {}
        for zone in zones:
            try:
                s = slug(zone)
            except ValueError as exc:
                raise PublishSetupError(f"zones.{zone}: {exc}; rename the zone") from None
            clash = [z for z, t in out.items() if t == s]
            if clash:
                raise PublishSetupError(f"zones {clash[0]!r} and {zone!r} would share the MQTT topic "
                                        f"level {s!r}; rename one of them")
            out[zone] = s
        return out

    @staticmethod
    def _check_prefix(prefix: str, key: str) -> str:
        p = prefix.strip("/")
        if not p or any(c in p for c in "+#\0"):
            raise PublishSetupError(f"{key} = {prefix!r} is not a usable MQTT topic prefix; "
                                    "use something like 'car-detector' (no '+', '#')")
        return p

    def _make_client(self, reconnect_min_s: int, reconnect_max_s: int) -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password or None)
        c.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=max(reconnect_min_s, reconnect_max_s))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        return c

    # ---------------------------------------------------------------- topics & payloads

    def state_topic(self, zone: str) -> str:
        return f"{self.prefix}/zone/{self._zone_slugs.get(zone) or slug(zone)}/state"

    def _device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node_id],
            "name": f"Car detector {self.cfg.client_id}",
            "manufacturer": "car-detector",
            "model": "int8 CNN on Raspberry Pi",
            "sw_version": __version__,
        }

    def discovery_messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) for each Home Assistant entity: one occupancy binary_sensor per
        zone, plus latency p95 and fps sensors read from the stats topic."""
        avail = {"availability_topic": self.status_topic,
                 "payload_available": ONLINE, "payload_not_available": OFFLINE}
        msgs: list[tuple[str, dict[str, Any]]] = []
        for zone in self.zones:
            zs = self._zone_slugs[zone]
            msgs.append((f"{self.discovery_prefix}/binary_sensor/{self.node_id}/{zs}/config", {
                "name": f"{zone} occupied",
                "unique_id": f"{self.node_id}_{zs}_occupancy",
                "device_class": "occupancy",
                "state_topic": self.state_topic(zone),
                "payload_on": ON,
                "payload_off": OFF,
                "qos": 1,
                **avail,
                "device": self._device(),
            }))
        sensors = [("latency_p95", "Latency p95", STATS_LATENCY_P95_KEY, "ms", "mdi:timer-outline"),
                   ("fps", "Frame rate", STATS_FPS_KEY, "fps", "mdi:speedometer")]
        for obj, name, key, unit, icon in sensors:
            msgs.append((f"{self.discovery_prefix}/sensor/{self.node_id}/{obj}/config", {
                "name": name,
                "unique_id": f"{self.node_id}_{obj}",
                "state_topic": self.stats_topic,
                "value_template": "{{ value_json." + key + " }}",
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": icon,
                **avail,
                "device": self._device(),
            }))
        return msgs

    # ---------------------------------------------------------------- Publisher API

    def publish_event(self, event: Event) -> None:
        msg = event.to_dict()
        with self._cond:
            if self._closed:
                raise RuntimeError("MqttPublisher.publish_event after close()")
            dropped = self._queue.append(msg)
            self._note_dropped(dropped)
        self._wake.set()

    def publish_state(self, zone: str, present: bool, score: float) -> None:
        with self._cond:
            value = ON if present else OFF
            if self._states.get(zone) != value:
                self._states[zone] = value
                self._dirty_states.add(zone)
        self._wake.set()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        payload = json.dumps(stats, default=str).encode("utf-8")
        with self._cond:
            self._stats = payload
            self._stats_dirty = True
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        """Events not yet acknowledged by the broker (also what is on disk)."""
        with self._cond:
            return len(self._queue.items)

    @property
    def connected(self) -> bool:
        """Connected and past paho's re-send of old messages (new ones flow now)."""
        return self._ready

    def _idle(self) -> bool:
        return (not self._queue.items and not self._dirty_states and not self._stats_dirty
                and not any(v is _OTHER_MARK for v in self._by_mid.values()))

    def flush(self, timeout_s: float = 1.0) -> None:
        """Wait until every queued event, state and stats message has its PUBACK, or
        until timeout_s; while the broker is down that means the full timeout."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._cond:
            while not self._idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.1))

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush (when connected), say "offline", disconnect. Unsent events stay in the
        queue file for the next start. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            connected = self._ready
        deadline = time.monotonic() + timeout_s
        if connected:
            self.flush(timeout_s * 0.75)
        self._stop = True
        self._wake.set()
        self._sender.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._connected:
            try:
                info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.debug("could not publish offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._send_pass()  # PUBACKs that came in after the sender stopped: not re-sent next start
        with self._cond:
            self._queue.close()
            left = len(self._queue.items)
        if left:
            log.warning("MQTT: %d event(s) not acknowledged yet; kept in %s for the next start",
                        left, self._queue.path)

    # ---------------------------------------------------------------- internals

    def _note_dropped(self, dropped: list[_Item]) -> None:
        """Count drops; warn at most once a minute so an outage does not flood the journal."""
        if not dropped:
            return
        self.dropped_total += len(dropped)
        now = time.monotonic()
        if self._last_drop_log == 0.0 or now - self._last_drop_log >= 60.0:
            self._last_drop_log = now
            log.warning("MQTT queue full (mqtt.queue_max = %d): dropped the oldest event(s), "
                        "%d dropped so far", self._queue.max_items, self.dropped_total)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        try:
            if reason_code.is_failure:
                log.error("MQTT broker %s:%d refused the connection: %s (check mqtt.username/password)",
                          self.cfg.host, self.cfg.port, reason_code)
                return
            # Published before paho re-sends what it still holds; its PUBACK marks "ready".
            info = client.publish(self.status_topic, ONLINE, qos=1, retain=True)
            with self._cond:
                self._connected = True
                self._ready = False
                self._online_mid = info.mid
            self._connect_fail_logged = False
            log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        except Exception:  # never let a callback kill paho's network thread
            log.exception("MQTT on_connect failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._connect_fail_logged:
            log.warning("MQTT broker %s:%d unreachable; retrying in the background, "
                        "events are queued in %s", self.cfg.host, self.cfg.port, self.cfg.queue_path)
            self._connect_fail_logged = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self._ready = False
            self._online_mid = None
            self._cond.notify_all()
        if was and not self._closed:
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting",
                        self.cfg.host, self.cfg.port, reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _run_sender(self) -> None:
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self._send_pass()
            except Exception:
                log.exception("MQTT sender pass failed")
            if self._stop:
                return

    def _send_pass(self) -> None:
        acks = []
        while True:
            try:
                acks.append(self._acks.get_nowait())
            except queue.Empty:
                break
        with self._cond:
            for mid in acks:
                what = self._by_mid.pop(mid, None)
                if mid == self._online_mid and self._connected:
                    self._ready = True
                    self._intro_due = True
                    self._online_mid = None
                elif isinstance(what, _Item):
                    self._queue.done(what)
            plan = self._plan() if self._ready and not self._stop else []
            self._cond.notify_all()
        for topic, payload, retain, tag in plan:
            # An ack that arrives before the mid is recorded waits in self._acks for the
            # next pass (on_publish has set _wake), by which time the mid is known.
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # only on a mid collision; cannot recur soon
                log.error("MQTT: paho refused a message for %s (mid %d in use)", topic, info.mid)
                continue
            with self._cond:
                self._by_mid[info.mid] = tag

    def _plan(self) -> list[tuple[str, bytes, bool, object]]:
        """What to publish now, in order; called with the lock held, only when ready."""
        plan: list[tuple[str, bytes, bool, object]] = []
        if self._intro_due:
            self._intro_due = False
            if self.cfg.discovery:
                for topic, conf in self.discovery_messages():
                    plan.append((topic, json.dumps(conf).encode(), True, _OTHER_MARK))
            self._dirty_states = set(self._states)
            self._stats_dirty = self._stats is not None
        for zone in sorted(self._dirty_states):
            plan.append((self.state_topic(zone), self._states[zone].encode(), True, _OTHER_MARK))
        self._dirty_states.clear()
        if self._stats_dirty and self._stats is not None:
            plan.append((self.stats_topic, self._stats, True, _OTHER_MARK))
            self._stats_dirty = False
        for item in self._queue.take(WINDOW):
            plan.append((self.events_topic, item.payload(), False, item))
        return plan
