"""The subscriber that records everything the fleet publishes (QoS 1, persistent session).

A persistent session (clean_session=False, fixed client id) on a broker with persistence
keeps its subscription across a broker kill, so events that the daemons re-send before the
recorder is back are queued for it rather than dropped. Messages are written to a JSON-lines
file as they arrive (the evidence) and kept in memory for the report.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

RECORDER_CLIENT_ID = "fleet-test-recorder"


@dataclass(frozen=True)
class Received:
    t: float  # epoch seconds at arrival
    topic: str
    payload: bytes
    retain: bool
    dup: bool


class Recorder:
    def __init__(self, port: int, out_path: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.out_path = out_path
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._out: IO[str] = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=RECORDER_CLIENT_ID,
                                   clean_session=False, protocol=mqtt.MQTTv311)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)  # back quickly after a broker restart
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the subscription to '#' to be granted."""
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise RuntimeError(f"recorder: no subscription on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._out.close()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("recorder: broker refused the connection: %s", reason_code)
            return
        client.subscribe("#", qos=1)  # again on every connect: cheap, and right even without a session

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        rec = Received(time.time(), msg.topic, msg.payload, bool(msg.retain), bool(msg.dup))
        line = json.dumps({"t": round(rec.t, 4), "topic": rec.topic, "retain": rec.retain, "dup": rec.dup,
                           "payload": rec.payload.decode("utf-8", errors="replace")})
        with self._lock:
            self.messages.append(rec)
            if not self._out.closed:
                self._out.write(line + "\n")

    def events_on(self, topic: str) -> list[Received]:
        """Non-retained messages on one topic, in arrival order."""
        with self._lock:
            return [m for m in self.messages if m.topic == topic and not m.retain]
