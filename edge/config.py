"""Daemon configuration: one TOML file, typed per section, validated at load.

Every error names the offending key (``section.key``) and what would be accepted, because
the person reading it is on a Pi over ssh with a unit that keeps restarting.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Bullseye-era Pythons
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/car-detector/config.toml")


class ConfigError(ValueError):
    """A config file that the daemon refuses to run with."""


@dataclass
class ModelConfig:
    path: str = "/var/lib/car-detector/model/current"  # directory with manifest.json
    runtime: Literal["auto", "litert", "tflite-runtime", "tensorflow"] = "auto"
    num_threads: int = 1
    precision: Literal["int8", "float"] = "int8"
    preflight: bool = True


@dataclass
class SourceConfig:
    kind: Literal["picamera2", "video", "images", "synthetic"] = "picamera2"
    width: int = 320
    height: int = 240
    fps: float = 15.0
    path: str = ""  # video file or image folder
    loop: bool = True
    pace: bool = True  # video/images: deliver at the source's own frame rate
    snapshot_stream: bool = False  # picamera2: also configure a `main` stream for snapshots
    main_width: int = 1280
    main_height: int = 960
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    capture_timeout_s: float = 2.0


@dataclass
class Zone:
    x: int
    y: int
    width: int
    height: int
    # true: classify this zone's crop (resized to the model window) instead of looking for
    # detected boxes inside it. Right for a fixed parking space seen at an angle.
    classify: bool = False


@dataclass
class ProcessingConfig:
    width: int = 320  # processing size the model's input is resized to, once, at start
    height: int = 240
    crop: list[int] = field(default_factory=list)  # [x, y, width, height] of the source frame
    scales: list[float] = field(default_factory=lambda: [1.0])
    threshold: float = -1.0  # < 0: use the manifest's default
    nms_iou: float = 0.3
    min_overlap: float = 0.5  # fraction of a box that must fall in a zone to count for it


@dataclass
class DecideConfig:
    frames_in: int = 3
    frames_out: int = 5


@dataclass
class MotionConfig:
    enabled: bool = False
    threshold: float = 2.0  # mean absolute grey-level change (0..255) that counts as motion
    max_skip_s: float = 5.0  # run inference at least this often even without motion


@dataclass
class CaptureConfig:
    enabled: bool = False
    dir: str = "/var/lib/car-detector/capture"
    every_s: float = 0.0  # 0: off
    uncertain_low: float = 0.3
    uncertain_high: float = 0.7
    uncertain_min_interval_s: float = 10.0  # at most one "uncertain" frame per this many seconds
    max_files: int = 10000


@dataclass
class LatencyConfig:
    log_every_s: float = 60.0
    window: int = 2000


@dataclass
class EventsConfig:
    path: str = "/var/lib/car-detector/events.jsonl"
    max_bytes: int = 10_000_000
    backups: int = 5


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    client_id: str = "car-detector"
    topic_prefix: str = "car-detector"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    queue_path: str = "/var/lib/car-detector/mqtt-queue.jsonl"
    queue_max: int = 10000
    keepalive_s: int = 30


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class WatchdogConfig:
    frame_timeout_s: float = 10.0  # no frame for this long: stop feeding the watchdog, /healthz fails


@dataclass
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    zones: dict[str, Zone] = field(default_factory=dict)
    decide: DecideConfig = field(default_factory=DecideConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Coerce one TOML value to the declared type or raise a ConfigError naming `key`."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key} = {value!r} is not allowed; use {_describe(tp)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be {_describe(tp)}, got {value!r}")
        (inner,) = get_args(tp)
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported union type")  # pragma: no cover
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix}] must be a table of keys, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + '.' if prefix else ''}{unknown[0]}; "
            f"allowed keys{' in [' + prefix + ']' if prefix else ''}: {', '.join(names)}"
        )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required key {key}")
            continue
        tp = hints[f.name]
        if get_origin(tp) is dict:
            _, vtp = get_args(tp)
            if not isinstance(data[f.name], dict):
                raise ConfigError(f"[{key}] must be a table, got {data[f.name]!r}")
            kwargs[f.name] = {
                k: _convert(v, vtp, f"{key}.{k}") for k, v in data[f.name].items()
            }
        else:
            kwargs[f.name] = _convert(data[f.name], tp, key)
    return cls(**kwargs)


def _check_ranges(cfg: Config) -> None:
    """Values that parse but cannot work; each message says what would."""

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key} {msg}")

    need(cfg.model.num_threads >= 1, "model.num_threads", "must be >= 1")
    need(cfg.source.width >= 16 and cfg.source.height >= 16, "source.width/height", "must be >= 16")
    need(cfg.source.fps > 0, "source.fps", "must be > 0")
    need(
        cfg.source.kind not in ("video", "images") or bool(cfg.source.path),
        "source.path",
        f"must name a file or folder when source.kind = {cfg.source.kind!r}",
    )
    need(cfg.source.retry_initial_s > 0, "source.retry_initial_s", "must be > 0")
    need(cfg.source.retry_max_s >= cfg.source.retry_initial_s, "source.retry_max_s",
         "must be >= source.retry_initial_s")
    need(cfg.source.capture_timeout_s > 0, "source.capture_timeout_s", "must be > 0 (seconds to wait for a frame)")
    p = cfg.processing
    need(p.width >= 16 and p.height >= 16, "processing.width/height", "must be >= 16")
    need(len(p.crop) in (0, 4), "processing.crop", "must be [] or [x, y, width, height]")
    if p.crop:
        x, y, w, h = p.crop
        need(x >= 0 and y >= 0 and w > 0 and h > 0, "processing.crop", "needs x,y >= 0 and width,height > 0")
        need(x + w <= cfg.source.width and y + h <= cfg.source.height, "processing.crop",
             f"must lie inside the {cfg.source.width}x{cfg.source.height} source frame")
    need(len(p.scales) >= 1 and all(0.1 <= s <= 4.0 for s in p.scales), "processing.scales",
         "must be a non-empty list of numbers between 0.1 and 4.0")
    need(p.threshold < 1.0, "processing.threshold", "must be < 1 (negative = manifest default)")
    need(0.0 < p.nms_iou <= 1.0, "processing.nms_iou", "must be in (0, 1]")
    need(0.0 < p.min_overlap <= 1.0, "processing.min_overlap", "must be in (0, 1]")
    for name, z in cfg.zones.items():
        need(name != "frame", f"zones.{name}", "is reserved for the whole frame; pick another name")
        need(z.width > 0 and z.height > 0 and z.x >= 0 and z.y >= 0, f"zones.{name}",
             "needs x,y >= 0 and width,height > 0")
        need(z.x + z.width <= p.width and z.y + z.height <= p.height, f"zones.{name}",
             f"must lie inside the {p.width}x{p.height} processing frame")
    need(cfg.decide.frames_in >= 1, "decide.frames_in", "must be >= 1")
    need(cfg.decide.frames_out >= 1, "decide.frames_out", "must be >= 1")
    need(cfg.motion.threshold >= 0, "motion.threshold", "must be >= 0")
    # <= 0 would silently force inference on every frame, i.e. turn the gate off.
    need(cfg.motion.max_skip_s > 0, "motion.max_skip_s", "must be > 0 (use motion.enabled = false to turn it off)")
    need(cfg.capture.every_s >= 0, "capture.every_s", "must be >= 0")
    need(cfg.capture.uncertain_min_interval_s >= 0, "capture.uncertain_min_interval_s", "must be >= 0")
    need(0 <= cfg.capture.uncertain_low <= cfg.capture.uncertain_high <= 1, "capture.uncertain_low/high",
         "must satisfy 0 <= low <= high <= 1")
    need(cfg.capture.max_files >= 1, "capture.max_files", "must be >= 1 (use capture.enabled = false to turn it off)")
    need(cfg.latency.log_every_s > 0, "latency.log_every_s", "must be > 0")
    need(cfg.latency.window >= 10, "latency.window", "must be >= 10")
    need(cfg.events.max_bytes >= 1024, "events.max_bytes", "must be >= 1024")
    need(cfg.events.backups >= 0, "events.backups", "must be >= 0")
    need(0 < cfg.mqtt.port < 65536, "mqtt.port", "must be 1..65535")
    need(cfg.mqtt.queue_max >= 1, "mqtt.queue_max", "must be >= 1")
    # 0 disables MQTT keepalive: a silently dead broker connection would never be noticed.
    need(cfg.mqtt.keepalive_s >= 1, "mqtt.keepalive_s", "must be >= 1")
    need(0 <= cfg.http.port < 65536, "http.port", "must be 0..65535 (0 = any free port)")
    need(cfg.watchdog.frame_timeout_s > 0, "watchdog.frame_timeout_s", "must be > 0")


def parse_config(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data, "")
    _check_ranges(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; raises ConfigError with the file name in it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; copy firmware_config/config.toml there "
            "or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        # utf-8-sig: a file saved by a Windows editor starts with a BOM that TOML rejects.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
