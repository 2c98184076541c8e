"""MQTT publisher: events at least once and in order, retained presence, HA discovery.

The durable queue lives in mqtt_queue.py, topic names and discovery documents in
ha_discovery.py, TLS set-up and its error messages in mqtt_tls.py; this module is the
sender: connection, ordering, acknowledgements.

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

Duplicate camera ids
--------------------
Two daemons with one camera.id share a client id, and the broker silently hands it to
whichever connected last: both keep reconnecting and knocking each other off. So on each
connect the publisher subscribes to `<prefix>/<camera>/instance`, then publishes there
(retained) a claim with a random nonce of its own. The retained claim that arrives before
ours is the previous owner's (a restart looks just like that) and is not held against
anyone; a foreign claim seen after ours was on the broker means another daemon claimed
the id since: an ERROR naming the other host, and `on_identity_conflict`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttConfig
from edge.events import Event
from edge.publish.base import CLOSE_TIMEOUT_S, Publisher
from edge.publish.ha_discovery import (
    OFF,
    OFFLINE,
    ON,
    ONLINE,
    Topics,
    discovery_messages,
    zone_discovery_topic,
)
from edge.publish.mqtt_queue import DiskQueue, QueuedEvent
from edge.publish.mqtt_tls import explain_tls_error, tls_context

log = logging.getLogger(__name__)

WINDOW = 100  # events handed to paho but not yet acknowledged
_GOODBYE_S = 0.25  # of it, kept back from the flush for "offline" + DISCONNECT
_CONFLICT_LOG_EVERY_S = 60.0  # a duplicate id reconnects every second or two: one ERROR a minute

_ONLINE_MARK = object()  # by_mid value of the availability message sent on connect
_OTHER_MARK = object()  # states, stats, discovery: tracked only so flush() can wait for them


class MqttPublisher(Publisher):
    """Publishes to `<topic_prefix>/<camera_id>/events`, `/zone/<zone>/state`, `/status`,
    `/stats`, `/snapshot`, `/instance`.

    Construction never waits for the broker: paho connects in the background and keeps
    retrying with exponential backoff (reconnect_min_s doubling up to reconnect_max_s).
    `on_queue_depth(n)` is called whenever the number of unacknowledged events changes
    (the daemon points it at its Prometheus gauge); `on_identity_conflict()` each time
    another daemon is seen claiming this camera id.

    With start=False the publisher is checked and built but owns nothing yet: no queue file
    open, no connection. A SIGHUP reload builds the new one that way, closes the old one, and
    only then calls start(): two publishers sharing the queue file and client id would replay
    each other's events (duplicates, out of order) and knock each other off the broker.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        zones: list[str],
        *,
        camera_id: str,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 30,
        on_queue_depth: Callable[[int], None] | None = None,
        on_identity_conflict: Callable[[], None] | None = None,
        start: bool = True,
    ) -> None:
        self.cfg = cfg
        self._on_queue_depth = on_queue_depth
        self._on_identity_conflict = on_identity_conflict
        self.topics = Topics.from_config(cfg, camera_id, zones)
        self._claim = json.dumps({"nonce": secrets.token_hex(8), "host": socket.gethostname(),
                                  "pid": os.getpid(), "since": round(time.time(), 3)}).encode()
        self._claimed = False  # our claim came back from the broker at least once
        self.identity_conflicts = 0
        self._last_conflict_log = 0.0

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
        self._snapshot: bytes | None = None
        self._snapshot_dirty = False
        self._forget: set[str] = set()  # zones whose retained state and HA entity are to be removed
        self._unrecorded = 0  # messages of the current send pass not yet in _by_mid
        self._started = False
        self._closed = False
        self._stop = False
        self._connect_fail_logged = False
        self._tls_error: BaseException | None = None
        self._tls_error_logged = ""
        self.dropped_total = 0
        self._last_drop_log = 0.0

        self._queue = DiskQueue(Path(cfg.queue_path), cfg.queue_max)
        self._queue.check()
        self._client = self._make_client(reconnect_min_s, reconnect_max_s)
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Take the queue file (sending its backlog) and connect; once."""
        with self._cond:
            if self._started or self._closed:
                raise RuntimeError("MqttPublisher.start() twice or after close()")
            self._note_dropped(self._queue.open())
            self._report_depth()
            self._started = True
        self._sender.start()
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    def _make_client(self, reconnect_min_s: int, reconnect_max_s: int) -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.topics.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.cfg.tls.enabled:
            c.tls_set_context(tls_context(self.cfg.tls, self._note_tls_error))
            c.tls_insecure_set(self.cfg.tls.insecure)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password or None)
        c.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=max(reconnect_min_s, reconnect_max_s))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # ---------------------------------------------------------------- Publisher API

    def publish_event(self, event: Event) -> None:
        msg = event.to_dict()
        with self._cond:
            if self._closed or not self._started:
                raise RuntimeError("MqttPublisher.publish_event before start() or after close()")
            dropped = self._queue.append(msg)
            self._note_dropped(dropped)
            self._report_depth()
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

    def publish_snapshot(self, jpeg: bytes) -> None:
        """Only the newest picture matters: one waiting is replaced, never queued behind."""
        if not self.cfg.snapshot:
            return
        with self._cond:
            self._snapshot = bytes(jpeg)
            self._snapshot_dirty = True
        self._wake.set()

    def forget_zones(self, zones: list[str]) -> None:
        """Zones a reload removed: clear their retained state and remove their Home Assistant
        entity (an empty retained config), or HA keeps showing a zone that no longer exists."""
        with self._cond:
            for zone in zones:
                self._states.pop(zone, None)
                self._dirty_states.discard(zone)
                self._forget.add(zone)
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
                and not self._snapshot_dirty and not self._forget and not self._unrecorded
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

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Flush (when connected), say "offline", disconnect: all of it within timeout_s.

        A hung broker (TCP open, nothing acknowledged) would otherwise hold a SIGTERM for the
        flush, then for the "offline" PUBACK, then for the network thread. What is not
        acknowledged in time stays in the queue file for the next start. Safe to call twice.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            connected = self._ready
            if not self._started:  # built but never started: owns nothing
                return
        deadline = time.monotonic() + timeout_s

        def left(keep: float = 0.0) -> float:
            return max(0.0, deadline - keep - time.monotonic())

        if connected:
            self.flush(left(keep=_GOODBYE_S))
        self._stop = True
        self._wake.set()
        self._sender.join(timeout=left())
        if self._connected:
            try:
                info = self._client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=left(keep=_GOODBYE_S / 2))
            except (RuntimeError, ValueError) as exc:
                log.debug("could not publish offline status: %s", exc)
        self._client.disconnect()
        self._stop_network_thread(left())
        self._send_pass()  # PUBACKs that came in after the sender stopped: not re-sent next start
        with self._cond:
            self._queue.close()
            left_items = len(self._queue.items)
            self._report_depth()
        if left_items:
            log.warning("MQTT: %d event(s) not acknowledged yet; kept in %s for the next start",
                        left_items, self._queue.path)

    def _stop_network_thread(self, timeout_s: float) -> None:
        """paho's loop_stop() joins its thread without a timeout, and that thread can sit in
        a TCP connect or TLS handshake for connect_timeout (5 s); so join it from a helper."""
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-loop-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=max(timeout_s, 0.05))
        if stopper.is_alive():
            log.warning("MQTT network thread still busy (connecting to %s:%d?) after the close budget; "
                        "not waiting for it", self.cfg.host, self.cfg.port)

    # ---------------------------------------------------------------- internals

    def _report_depth(self) -> None:
        """Called with the lock held (or before any thread runs), after each change."""
        if self._on_queue_depth is not None:
            self._on_queue_depth(len(self._queue.items))

    def _note_dropped(self, dropped: list[QueuedEvent]) -> None:
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
            info = client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            # Subscribe first: the retained claim delivered then is the previous owner's.
            client.subscribe(self.topics.instance, qos=1)
            client.publish(self.topics.instance, self._claim, qos=1, retain=True)
            with self._cond:
                self._connected = True
                self._ready = False
                self._online_mid = info.mid
            self._connect_fail_logged = False
            self._tls_error_logged = ""
            log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        except Exception:  # never let a callback kill paho's network thread
            log.exception("MQTT on_connect failed")

    def _note_tls_error(self, exc: BaseException) -> None:
        self._tls_error = exc

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc, self._tls_error = self._tls_error, None
        if exc is not None:
            why = explain_tls_error(exc)
            if why != self._tls_error_logged:  # once per distinct reason, not every retry
                self._tls_error_logged = why
                log.error("MQTT broker %s:%d: TLS handshake failed: %s; retrying in the background, "
                          "events are queued in %s", self.cfg.host, self.cfg.port, why, self.cfg.queue_path)
            return
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

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Claims on our instance topic: ours marks "claimed", a foreign one after that is
        another daemon with this camera id."""
        try:
            if msg.topic != self.topics.instance:
                return
            if msg.payload == self._claim:
                self._claimed = True
            elif self._claimed:
                self._report_conflict(msg.payload)
        except Exception:  # never let a callback kill paho's network thread
            log.exception("MQTT on_message failed")

    def _report_conflict(self, payload: bytes) -> None:
        self.identity_conflicts += 1
        if self._on_identity_conflict is not None:
            self._on_identity_conflict()
        try:
            other = json.loads(payload)
            if not isinstance(other, dict):
                raise ValueError("not an object")
        except ValueError:
            other = {"claim": payload[:200].decode("utf-8", "replace")}
        now = time.monotonic()
        if self._last_conflict_log and now - self._last_conflict_log < _CONFLICT_LOG_EVERY_S:
            return
        self._last_conflict_log = now
        log.error("MQTT: another daemon uses camera.id %r on broker %s:%d (host %s, pid %s); the broker "
                  "gives client id %s to whichever connected last, so both keep being disconnected and "
                  "their events and states mix. Give each camera its own [camera] id.",
                  self.topics.camera_id, self.cfg.host, self.cfg.port, other.get("host", "?"),
                  other.get("pid", "?"), self.topics.client_id,
                  extra={"camera": self.topics.camera_id, "other": other,
                         "conflicts": self.identity_conflicts})

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
                elif isinstance(what, QueuedEvent):
                    self._queue.done(what)
            if acks:
                self._report_depth()
            plan = self._plan() if self._ready and not self._stop else []
            # Planned but not yet handed to paho: neither dirty nor in _by_mid any more, and
            # flush() must not take that moment for "all acknowledged".
            self._unrecorded = len(plan)
            self._cond.notify_all()
        for topic, payload, retain, tag in plan:
            # An ack that arrives before the mid is recorded waits in self._acks for the
            # next pass (on_publish has set _wake), by which time the mid is known.
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # only on a mid collision; cannot recur soon
                log.error("MQTT: paho refused a message for %s (mid %d in use)", topic, info.mid)
                with self._cond:
                    self._unrecorded -= 1
                continue
            with self._cond:
                self._by_mid[info.mid] = tag
                self._unrecorded -= 1

    def _plan(self) -> list[tuple[str, bytes, bool, object]]:
        """What to publish now, in order; called with the lock held, only when ready."""
        plan: list[tuple[str, bytes, bool, object]] = []
        if self._intro_due:
            self._intro_due = False
            if self.cfg.discovery:
                for topic, conf in discovery_messages(self.topics, camera=self.cfg.snapshot):
                    plan.append((topic, json.dumps(conf).encode(), True, _OTHER_MARK))
            # A restarted broker may have lost every retained message: say them all again.
            self._dirty_states = set(self._states)
            self._stats_dirty = self._stats is not None
            self._snapshot_dirty = self._snapshot is not None
        for zone in sorted(self._dirty_states):
            plan.append((self.topics.state(zone), self._states[zone].encode(), True, _OTHER_MARK))
        self._dirty_states.clear()
        for zone in sorted(self._forget):
            if self.cfg.discovery:
                plan.append((zone_discovery_topic(self.topics, zone), b"", True, _OTHER_MARK))
            plan.append((self.topics.state(zone), b"", True, _OTHER_MARK))
        self._forget.clear()
        if self._snapshot_dirty and self._snapshot is not None:
            plan.append((self.topics.snapshot, self._snapshot, True, _OTHER_MARK))
            self._snapshot_dirty = False
        if self._stats_dirty and self._stats is not None:
            plan.append((self.topics.stats, self._stats, True, _OTHER_MARK))
            self._stats_dirty = False
        for item in self._queue.take(WINDOW):
            plan.append((self.topics.events, item.payload(), False, item))
        return plan
