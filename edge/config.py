"""Daemon configuration: one TOML file, typed per section, validated at load.

Every error names the offending key (``section.key``) and what would be accepted, because
the person reading it is on a Pi over ssh with a unit that keeps restarting.

Each field declares its own range next to it (``setting(default, Range(...))``), the way
Frigate's pydantic models carry ``Field(ge=...)``: reading a section shows what each key
accepts, and the loader checks every declared range with one generic walk. Checks that tie
two keys together live in the section's ``check`` method; checks that tie two sections
together live in ``Config.check``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from edge.decide import polygon_area, polygon_self_crossing
from edge.runtimes import RUNTIME_CHOICES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Bullseye-era Pythons
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/car-detector/config.toml")

# A field check returns None when the value is fine, else what is wrong with it
# ("must be >= 1, got 0"); the loader puts the key in front.
Check = Callable[[Any], "str | None"]


class ConfigError(ValueError):
    """A config file that the daemon refuses to run with."""


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Range:
    """Numeric bounds of one field; `hint` says what to do instead (e.g. how to turn it off)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    hint: str = ""

    def bounds(self) -> str:
        """The accepted interval in words: "> 0", "in (0, 1]", ">= 1"."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return (f"in {'[' if self.ge is not None else '('}{_num(low)}, "
                    f"{_num(high)}{']' if self.le is not None else ')'}")
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_num(low)}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {_num(high)}"
        raise TypeError("Range needs at least one bound")  # pragma: no cover - a declaration mistake

    def describe(self) -> str:
        return f"must be {self.bounds()}" + (f" ({self.hint})" if self.hint else "")

    def __call__(self, value: Any) -> str | None:
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if ok else f"{self.describe()}, got {value!r}"


@dataclass(frozen=True)
class OneOf:
    """A string from a list that is owned elsewhere (e.g. the runtime registry)."""

    choices: Sequence[str]

    def __call__(self, value: Any) -> str | None:
        if value in self.choices:
            return None
        return f"= {value!r} is not allowed; use one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class Items:
    """A list whose length and every element are checked."""

    each: Range
    min_len: int = 0

    def __call__(self, value: Any) -> str | None:
        bad = [v for v in value if self.each(v) is not None]
        if len(value) < self.min_len or bad:
            least = "one number" if self.min_len == 1 else f"{self.min_len} numbers"
            return f"must list at least {least}, each {self.each.bounds()}, got {value!r}"
        return None


def _rectangle_or_empty(value: list[int]) -> str | None:
    if len(value) not in (0, 4):
        return f"must be [] or [x, y, width, height], got {value!r}"
    if value and not (value[0] >= 0 and value[1] >= 0 and value[2] > 0 and value[3] > 0):
        return f"needs x,y >= 0 and width,height > 0, got {value!r}"
    return None


def setting(default: Any = dataclasses.MISSING, check: Check | None = None, *,
            factory: Callable[[], Any] | Any = dataclasses.MISSING, secret: bool = False) -> Any:
    """A config field with its check beside it; no default and no factory = a required key.

    A `secret` never shows its value: not in the dataclass repr (which ends up in logs and
    test output), not in a type error.
    """
    meta = {**({"check": check} if check else {}), **({"secret": True} if secret else {})}
    return field(default=default, default_factory=factory, repr=not secret, metadata=meta)


def field_check(f: dataclasses.Field) -> Check | None:
    """The check declared next to a field, if any (tests walk these generically)."""
    return f.metadata.get("check")


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key} {msg}")


# A camera id names MQTT topic levels, the MQTT client id, Home Assistant node and unique
# ids (which allow only [A-Za-z0-9_-]) and the Prometheus `camera` label: one rule fits all.
CAMERA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _camera_id(value: str) -> str | None:
    if CAMERA_ID.fullmatch(value):
        return None
    return (f"= {value!r} is not a usable camera id; use 1-63 letters, digits, '-' or '_' starting "
            "with a letter or digit (it names MQTT topics, Home Assistant ids and the Prometheus "
            "camera label), e.g. \"driveway\"")


def default_camera_id() -> str:
    """This machine's host name, made a valid camera id.

    Why the host name: a fleet deployed by Ansible already names each Pi, so one config file
    serves every camera. Pis flashed from one image all answer "raspberrypi"; the MQTT
    publisher reports such duplicates loudly instead of letting them knock each other off.
    """
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-_")
    return name[:63] or "car-detector"


@dataclass
class CameraConfig:
    # names this daemon on the broker, in Home Assistant and in Prometheus; unique per fleet
    id: str = setting(check=_camera_id, factory=default_camera_id)


@dataclass
class ModelConfig:
    path: str = "/var/lib/car-detector/model/current"  # directory with manifest.json
    runtime: str = setting("auto", OneOf(RUNTIME_CHOICES))  # names owned by edge.runtimes
    num_threads: int = setting(1, Range(ge=1))
    precision: Literal["int8", "float"] = "int8"
    preflight: bool = True


@dataclass
class SourceConfig:
    kind: Literal["picamera2", "video", "images", "synthetic"] = "picamera2"
    width: int = setting(320, Range(ge=16))
    height: int = setting(240, Range(ge=16))
    fps: float = setting(15.0, Range(gt=0))
    path: str = ""  # video file or image folder
    loop: bool = True
    pace: bool = True  # video/images: deliver at the source's own frame rate
    main_width: int = setting(1280, Range(ge=16))
    main_height: int = setting(960, Range(ge=16))
    retry_initial_s: float = setting(0.5, Range(gt=0))
    retry_max_s: float = setting(30.0, Range(gt=0))
    capture_timeout_s: float = setting(2.0, Range(gt=0, hint="seconds to wait for a frame"))

    def check(self) -> None:
        _need(self.kind not in ("video", "images") or bool(self.path), "source.path",
              f"must name a file or folder when source.kind = {self.kind!r}")
        _need(self.retry_max_s >= self.retry_initial_s, "source.retry_max_s", "must be >= source.retry_initial_s")


def _polygon_or_empty(value: list[list[int]]) -> str | None:
    """[] or at least 3 [x, y] points (x, y >= 0) enclosing an area, edges not crossing."""
    if not value:
        return None
    if len(value) < 3 or any(len(p) != 2 or p[0] < 0 or p[1] < 0 for p in value):
        return f"must be [] or at least 3 [x, y] points with x, y >= 0, got {value!r}"
    points = tuple((p[0], p[1]) for p in value)
    if (crossing := polygon_self_crossing(points)) is not None:
        return (f"has edges that cross (edge {crossing[0]} and edge {crossing[1]}); list the points in "
                f"order round the zone, got {value!r}")
    if polygon_area(points) <= 0:
        return f"encloses no area (points on one line?), got {value!r}"
    return None


@dataclass
class Zone:
    """A rectangle (x, y, width, height), or a polygon (points); x/y/width/height of a polygon
    are its bounding box, filled in at load (Config.check)."""

    x: int = setting(0, Range(ge=0))
    y: int = setting(0, Range(ge=0))
    width: int = setting(0, Range(gt=0))
    height: int = setting(0, Range(gt=0))
    # [[x, y], ...]: a polygon zone in processing pixels, instead of x/y/width/height
    points: list[list[int]] = setting(check=_polygon_or_empty, factory=list)
    # true: the zone is occupied when the detector's best car score on the zone's own crop
    # (its bounding box) reaches the threshold, instead of looking for detected boxes inside
    # it. Right for a fixed parking space seen at an angle.
    classify: bool = False

    def shape(self) -> tuple:
        """What edge.decide matches boxes against: the polygon's points, else the rectangle."""
        if self.points:
            return tuple((p[0], p[1]) for p in self.points)
        return (self.x, self.y, self.width, self.height)


# Image pyramid scales; `--scales` on the command line is checked with the same rule.
SCALES_CHECK = Items(Range(ge=0.1, le=4.0), min_len=1)


@dataclass
class ProcessingConfig:
    # processing size the model's input is resized to, once, at start
    width: int = setting(320, Range(ge=16))
    height: int = setting(240, Range(ge=16))
    # [x, y, width, height] of the source frame
    crop: list[int] = setting(check=_rectangle_or_empty, factory=list)
    scales: list[float] = setting(check=SCALES_CHECK, factory=lambda: [1.0])
    threshold: float = setting(-1.0, Range(lt=1.0, hint="negative = the manifest's default"))
    nms_iou: float = setting(-1.0, Range(le=1.0, hint="negative = the manifest's (thresholds.nms_iou)"))
    # fraction of a box that must fall in a zone to count for it
    min_overlap: float = setting(0.5, Range(gt=0.0, le=1.0))


@dataclass
class DecideConfig:
    frames_in: int = setting(3, Range(ge=1))
    frames_out: int = setting(5, Range(ge=1))


@dataclass
class MotionConfig:
    enabled: bool = False
    # mean absolute grey-level change (0..255) that counts as motion
    threshold: float = setting(2.0, Range(ge=0))
    # run inference at least this often even without motion; <= 0 would silently force
    # inference on every frame, i.e. turn the gate off.
    max_skip_s: float = setting(5.0, Range(gt=0, hint="use motion.enabled = false to turn it off"))


@dataclass
class CaptureConfig:
    enabled: bool = False
    dir: str = "/var/lib/car-detector/capture"
    # size cap of the folder (pictures + sidecars); the oldest unlabelled frames make room
    max_bytes: int = setting(500_000_000, Range(ge=1_000_000, hint="use capture.enabled = false to turn it off"))
    # "uncertain": the top score within this much of the detector's threshold
    uncertain_margin: float = setting(0.15, Range(ge=0, le=1, hint="0 = off"))
    # at most one uncertain or disagreement frame per this many seconds
    min_interval_s: float = setting(10.0, Range(ge=0))
    # "disagreement": model boxes and moving blobs (background subtraction) differ
    disagreement: bool = True
    # check for it on every N-th inferred frame (a check costs milliseconds)
    disagreement_every: int = setting(5, Range(ge=1))
    # background: median of background_frames samples, one every background_every inferred frames
    background_every: int = setting(15, Range(ge=1))
    background_frames: int = setting(9, Range(ge=3, le=64))
    # "random": a trickle of ordinary frames, this many per hour on average
    random_per_hour: float = setting(6.0, Range(ge=0, hint="0 = off"))


@dataclass
class LatencyConfig:
    log_every_s: float = setting(60.0, Range(gt=0))
    window: int = setting(2000, Range(ge=10))


@dataclass
class EventsConfig:
    path: str = "/var/lib/car-detector/events.jsonl"
    max_bytes: int = setting(10_000_000, Range(ge=1024))
    backups: int = setting(5, Range(ge=0))


def _readable_file(value: str) -> str | None:
    """Empty (unset), or an absolute path to a file this process can read (the daemon's user,
    at load: a typo or a root-only key must stop the start, not fail every reconnect)."""
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        return f"= {value!r} must be an absolute path (the service runs in /)"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except IsADirectoryError:
        return f"= {value!r} is a directory, not a file"
    except OSError as exc:
        return f"= {value!r} cannot be read ({exc.strerror or exc})"
    return None


@dataclass
class MqttTlsConfig:
    enabled: bool = False
    # PEM file with the CA that signed the broker's certificate; "" = the system's CAs
    ca_file: str = setting("", _readable_file)
    # client certificate (PEM) and its unencrypted key, for brokers that require one
    cert_file: str = setting("", _readable_file)
    key_file: str = setting("", _readable_file)
    # true: do not check that the certificate names mqtt.host (the CA is still checked)
    insecure: bool = False

    def check(self) -> None:
        for key in ("ca_file", "cert_file", "key_file", "insecure"):
            _need(self.enabled or not getattr(self, key), f"mqtt.tls.{key}",
                  "is set but mqtt.tls.enabled = false, so MQTT would run without TLS; "
                  "set mqtt.tls.enabled = true (or remove the key)")
        _need(bool(self.cert_file) or not self.key_file, "mqtt.tls.key_file",
              "needs mqtt.tls.cert_file (the certificate that goes with the key)")


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = setting(1883, Range(ge=1, le=65535))
    username: str = ""
    password: str = setting("", secret=True)
    topic_prefix: str = "car-detector"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    queue_path: str = "/var/lib/car-detector/mqtt-queue.jsonl"
    queue_max: int = setting(10000, Range(ge=1))
    # 0 disables MQTT keepalive: a silently dead broker connection would never be noticed.
    keepalive_s: int = setting(30, Range(ge=1))
    # Home Assistant camera entity: the annotated snapshot (JPEG) on <prefix>/<camera>/snapshot,
    # sent on every event and at least every snapshot_every_s seconds
    snapshot: bool = True
    snapshot_every_s: float = setting(10.0, Range(ge=1, hint="use mqtt.snapshot = false to turn it off"))
    tls: MqttTlsConfig = field(default_factory=MqttTlsConfig)


def _long_secret(value: str, min_len: int) -> str | None:
    """Empty (unset) or at least `min_len` characters; the message never repeats the secret."""
    if not value or len(value) >= min_len:
        return None
    return f"must be at least {min_len} characters (e.g. `openssl rand -hex 16`), got {len(value)} characters"


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = setting(8080, Range(ge=0, le=65535, hint="0 = any free port"))
    # bearer token for every page but /healthz on a non-loopback host, and for writes on any
    token: str = setting("", lambda t: _long_secret(t, 16), secret=True)

    def check(self) -> None:
        _need(is_loopback(self.host) or bool(self.token), "http.token",
              f"must be set when http.host = {self.host!r} is not a loopback address: anyone on the "
              "network could read the snapshot otherwise (or use http.host = \"127.0.0.1\")")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine ("" means every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or ""
        return False


@dataclass
class WatchdogConfig:
    # no frame for this long: stop feeding the watchdog, /healthz fails
    frame_timeout_s: float = setting(10.0, Range(gt=0))


@dataclass
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
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
    # a TOML file holding the [zones.*] tables (relative: next to this file); the page writes
    # it, so the zones never rewrite this file and its comments. "" = zones live here.
    zones_file: str = ""

    def check(self) -> None:
        """Checks between sections: crop within the source frame, zones within the processing frame."""
        src, p = self.source, self.processing
        if p.crop:
            x, y, w, h = p.crop
            _need(x + w <= src.width and y + h <= src.height, "processing.crop",
                  f"must lie inside the {src.width}x{src.height} source frame")
        for name, z in self.zones.items():
            _need(name != "frame", f"zones.{name}", "is reserved for the whole frame; pick another name")
            _check_zone_shape(name, z)
            _need(z.x + z.width <= p.width and z.y + z.height <= p.height, f"zones.{name}",
                  f"must lie inside the {p.width}x{p.height} processing frame")


def _check_zone_shape(name: str, z: Zone) -> None:
    """A zone is a polygon or a rectangle, never both; a polygon's x/y/width/height become
    its bounding box, so crop-based code (classify) and the frame check treat both alike."""
    if z.points:
        _need(not (z.x or z.y or z.width or z.height), f"zones.{name}",
              "has both points and x/y/width/height; keep points for a polygon or the four keys for a rectangle")
        xs, ys = [p[0] for p in z.points], [p[1] for p in z.points]
        z.x, z.y, z.width, z.height = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        return
    for key in ("width", "height"):
        _need(getattr(z, key) > 0, f"zones.{name}.{key}",
              "is required for a rectangle zone (or give points = [[x, y], ...] for a polygon)")


def zones_path(config_path: str | Path, cfg: Config) -> Path | None:
    """The zones file `cfg` includes (relative names are next to the main config), or None."""
    if not cfg.zones_file:
        return None
    return Path(config_path).parent / cfg.zones_file


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


def _convert_field(f: dataclasses.Field, tp: Any, value: Any, key: str) -> Any:
    """Type conversion, then the range/validator declared next to the field."""
    if get_origin(tp) is dict:
        _, vtp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table, got {value!r}")
        out = {k: _convert(v, vtp, f"{key}.{k}") for k, v in value.items()}
    elif f.metadata.get("secret"):
        try:
            out = _convert(value, tp, key)
        except ConfigError:
            raise ConfigError(f"{key} must be {_describe(tp)}, got a TOML {type(value).__name__} "
                              "(value not shown: it is a secret)") from None
    else:
        out = _convert(value, tp, key)
    check = field_check(f)
    if check is not None and (problem := check(out)) is not None:
        raise ConfigError(f"{key} {problem}")
    return out


# Keys an older config may still carry, and what to do instead.
REPLACED_KEYS = {
    "capture.max_files": "the capture folder is capped by size: capture.max_bytes (oldest unlabelled "
                         "frames make room)",
    "capture.every_s": "ordinary frames are sampled at random: capture.random_per_hour",
    "capture.uncertain_min_interval_s": "capture.min_interval_s limits uncertain and disagreement frames alike",
    "capture.uncertain_low": "the band follows the model's threshold: capture.uncertain_margin",
    "capture.uncertain_high": "the band follows the model's threshold: capture.uncertain_margin",
    "mqtt.client_id": "the MQTT client id is built from [camera] id (default: the host name); "
                      "remove the line and set camera.id if the host name does not suit",
}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix}] must be a table of keys, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown and (gone := f"{prefix}.{unknown[0]}" if prefix else unknown[0]) in REPLACED_KEYS:
        raise ConfigError(f"{gone} is no longer a setting: {REPLACED_KEYS[gone]}")
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
        kwargs[f.name] = _convert_field(f, hints[f.name], data[f.name], key)
    obj = cls(**kwargs)
    if callable(getattr(obj, "check", None)):
        obj.check()
    return obj


def parse_config(data: dict[str, Any]) -> Config:
    return _build(Config, data, "")


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
    zones_from = _include_zones(path, data)
    try:
        return parse_config(data)
    except ConfigError as exc:
        about_zones = "zones." in str(exc)[:60]  # the message starts with the key it names
        where = f"{zones_from} (zones_file of {path})" if zones_from is not None and about_zones else path
        raise ConfigError(f"{where}: {exc}") from None


def _include_zones(path: Path, data: dict[str, Any]) -> Path | None:
    """Put the zones of `zones_file` into `data`; returns that file, or None without one.

    A zones file that does not exist yet means no zones: the page creates it on first save.
    """
    name = data.get("zones_file", "")
    if not isinstance(name, str) or not name:
        return None  # the type error is reported by the normal walk
    zpath = path.parent / name
    _need("zones" not in data, "zones_file",
          f"is set but {path} also has [zones.*] tables; keep the zones in one place ({zpath})")
    try:
        ztext = zpath.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        return zpath
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: zones_file {zpath} cannot be read: {exc}") from None
    try:
        zdata = tomllib.loads(ztext)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{zpath} (zones_file of {path}): not valid TOML: {exc}") from None
    extra = sorted(set(zdata) - {"zones"})
    if extra:
        raise ConfigError(f"{zpath} (zones_file of {path}): only [zones.<name>] tables belong in a zones "
                          f"file, found {extra[0]!r}")
    data["zones"] = zdata.get("zones", {})
    return zpath
