"""One fleet member: its config file, its `edge run` process and what it wrote.

Daemons are driven only through their public surface (the TOML config, the JSON log lines
on stdout, the events file, /metrics), never through edge internals, so the harness keeps
working when the model or the pipeline inside is replaced.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import ProcessRegistry, memory_kb

# Log messages the harness reads (their one owner is the daemon: edge/daemon.py and
# edge/publish/mqtt.py), in the JSON "msg" field: the first four by prefix.
MSG_READY = "ready"
MSG_HTTP = "http listening"
MSG_LATENCY = "latency"
MSG_MQTT_CONNECTED = "MQTT connected to"
MSG_MQTT_LEFT_QUEUED = "not acknowledged yet"  # "MQTT: N event(s) not acknowledged yet; kept in ..."
QUEUE_DEPTH_SUFFIX = "mqtt_queue_depth"  # the /metrics gauge, whatever its namespace


def toml_text(tables: dict[str, Any]) -> str:
    """A small TOML writer for the flat tables of a daemon config (strings, numbers, bools,
    lists, one level of sub-tables such as zones.<name>)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        subs = {k: v for k, v in body.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {value(v)}" for k, v in body.items() if not isinstance(v, dict))
        lines.append("")
        for k, v in subs.items():
            table(f"{name}.{k}", v)

    for name, body in tables.items():
        table(name, body)
    return "\n".join(lines)


@dataclass
class DaemonSettings:
    """What every fleet member shares; only the camera name and its files differ."""

    model: Path
    clip: Path
    clip_size: tuple[int, int]
    processing: tuple[int, int]
    zones: dict[str, tuple[int, int, int, int]]
    frames_in: int = 2
    frames_out: int = 2
    threshold: float = -1.0  # detection threshold; negative = the model's own (manifest)
    motion: bool = False
    latency_window: int = 240
    latency_log_every_s: float = 30.0

    def tables(self, camera: str, workdir: Path, broker_port: int | None, *, pace: bool = True,
               loop: bool = True, http: bool = True) -> dict[str, Any]:
        """The config of one daemon; broker_port None = MQTT off (the zone probe)."""
        mqtt: dict[str, Any] = {"enabled": broker_port is not None}
        if broker_port is not None:
            mqtt.update(host="127.0.0.1", port=broker_port, queue_path=str(workdir / "mqtt-queue.jsonl"))
        return {
            "camera": {"id": camera},  # names its MQTT client id, topics and metric labels
            "model": {"path": str(self.model), "num_threads": 1},
            "source": {"kind": "video", "path": str(self.clip), "width": self.clip_size[0],
                       "height": self.clip_size[1], "loop": loop, "pace": pace},
            "processing": {"width": self.processing[0], "height": self.processing[1], "threshold": self.threshold},
            "zones": {name: {"x": x, "y": y, "width": w, "height": h} for name, (x, y, w, h) in self.zones.items()},
            "decide": {"frames_in": self.frames_in, "frames_out": self.frames_out},
            "motion": {"enabled": self.motion},
            "latency": {"log_every_s": self.latency_log_every_s, "window": max(10, self.latency_window)},
            "events": {"path": str(workdir / "events.jsonl")},
            "mqtt": mqtt,
            "http": {"enabled": http, "host": "127.0.0.1", "port": 0},
            "log": {"level": "INFO"},
        }


@dataclass
class FleetDaemon:
    camera: str
    workdir: Path
    proc: Any = None
    _lines: list[dict[str, Any]] = field(default_factory=list)
    _read_bytes: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    @property
    def events_path(self) -> Path:
        return self.workdir / "events.jsonl"

    def write_config(self, settings: DaemonSettings, broker_port: int | None, **kw: Any) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(toml_text(settings.tables(self.camera, self.workdir, broker_port, **kw)))

    def start(self, registry: ProcessRegistry, python: str = sys.executable) -> None:
        self.proc = registry.spawn([python, "-m", "edge", "run", "--config", str(self.config_path)], self.log_path)

    # --- what it logged -------------------------------------------------------------
    def lines(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far (read incrementally; non-JSON lines such as the
        runtime's banner on stderr are skipped)."""
        if not self.log_path.exists():
            return self._lines
        with open(self.log_path, "rb") as f:
            f.seek(self._read_bytes)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read_bytes += len(complete)
        for raw in complete.splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self._lines.append(rec)
        return self._lines

    def messages(self, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.lines() if str(r.get("msg", "")).startswith(prefix)]

    @property
    def ready(self) -> bool:
        return bool(self.messages(MSG_READY))

    @property
    def mqtt_connects(self) -> list[float]:
        return [float(r["ts"]) for r in self.messages(MSG_MQTT_CONNECTED)]

    @property
    def http_port(self) -> int | None:
        found = self.messages(MSG_HTTP)
        return int(found[-1]["port"]) if found else None

    def last_latency(self) -> dict[str, Any]:
        found = self.messages(MSG_LATENCY)
        return dict(found[-1].get("latency", {})) if found else {}

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    # --- what it published and what it costs -------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]

    def queue_depth(self, timeout_s: float = 2.0) -> float | None:
        """Events waiting for a PUBACK, from its /metrics; None when it cannot be read."""
        port = self.http_port
        if port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for fam in text_string_to_metric_families(text):
            if fam.name.endswith(QUEUE_DEPTH_SUFFIX):
                return sum(s.value for s in fam.samples)
        return None

    def memory_kb(self) -> dict[str, int]:
        return memory_kb(self.proc.pid) if self.proc is not None else {}
