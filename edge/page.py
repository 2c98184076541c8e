"""The page: status, live view, zone editor and labelling, served by the daemon's HTTP server.

Everything here runs on the HTTP server's one thread and only *reads* what the frame loop
leaves behind (the latest frame, the rolling stats, the last latency line); the one thing it
asks of the loop is a reload, through the same flag SIGHUP sets. So an open page costs the
loop only the GIL time of these handlers (measured by `python -m edge.page_bench`).

Why polling and not MJPEG for the live view: the server answers one request per connection
from memory and drops a response not read within 5 s, which an endless multipart stream
cannot fit; and an MJPEG stream encodes every frame whoever looks, where a poll encodes one
JPEG per new frame *asked for* (2 per second per open page, shared between pages).

Files served: the page's own three files (held in memory, never looked up by request path),
JPEGs made here, and captured frames through CaptureStore, whose ids cannot name a path;
each such path is checked once more to lie in the capture folder and not be a symlink.

Writes (zones, labels, export) need the bearer token on every host (edge/http_server.py):
a cross-site form or a DNS-rebinding page cannot set that header, so a browser tab on the
Pi's owner's machine cannot be abused to move zones. Without http.token the page is
read-only and says how to set one. On a loopback bind, page requests must name a loopback
Host (DNS rebinding again: a hostile name resolving to 127.0.0.1 would otherwise read it).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import numpy as np
from PIL import Image

from edge.capture_store import CaptureNotFound, CaptureStore, CaptureStoreError
from edge.config import Config, ConfigError, zones_path
from edge.events import Event
from edge.latency import TRACKED, RollingStats
from edge.snapshot import encode_snapshot_jpeg
from edge.zones_file import write_zones_file, zones_from_json, zones_to_json

log = logging.getLogger(__name__)

MAX_EVENTS = 50  # the status page's event list
THUMB_MARGIN = 0.25  # of the box size, around the car in an event's thumbnail
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
STATIC = {"/": ("page.html", "text/html; charset=utf-8"),
          "/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8")}
Answer = tuple[int, bytes, str, "dict[str, str] | None"]


class DaemonView(Protocol):
    """What the page reads from the daemon (edge.daemon.Daemon has all of it)."""

    cfg: Config
    config_path: Path | None
    stats: RollingStats
    frames: int
    last_frame_monotonic: float
    reloads: dict[str, int]
    reload_requested: threading.Event
    started_monotonic: float
    last_latency: dict[str, Any]
    source: Any
    pipeline: Any


@dataclass
class _PageEvent:
    seq: int
    event: Event
    crop: np.ndarray | None  # around the box, cut at event time; encoded on first request
    jpeg: bytes | None = None


class PageError(Exception):
    """A request the page refuses: HTTP status and a message for the user."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _json(obj: Any, code: int = 200) -> Answer:
    return code, json.dumps(obj, default=str).encode(), "application/json", None


def _thumb_crop(image: np.ndarray, ev: Event) -> np.ndarray | None:
    if ev.box is None:
        return None
    b = ev.box
    h, w = image.shape[:2]
    mx, my = b.width * THUMB_MARGIN, b.height * THUMB_MARGIN
    x0, y0 = max(0, int(b.x - mx)), max(0, int(b.y - my))
    x1, y1 = min(w, int(b.x + b.width + mx)), min(h, int(b.y + b.height + my))
    return image[y0:y1, x0:x1].copy() if x1 > x0 and y1 > y0 else None


class Page:
    """Routes of the page; `handle` answers a request or returns None (not a page path)."""

    OPEN_PATHS = tuple(STATIC)  # the page's shell holds no data: it loads without a token

    def __init__(self, daemon: DaemonView, loopback_only: bool) -> None:
        self.daemon = daemon
        self.loopback_only = loopback_only
        self.static = {path: (resources.files("edge.web").joinpath(name).read_bytes(), ctype)
                       for path, (name, ctype) in STATIC.items()}
        self._events: deque[_PageEvent] = deque(maxlen=MAX_EVENTS)
        self._seq = 0
        self._live: tuple[Any, bytes] | None = None  # (the frame tuple it was made from, JPEG)
        self._manifest: tuple[str, dict[str, Any]] | None = None

    # ---------------------------------------------------------------- frame-loop side

    def note_events(self, events: list[Event], latest: tuple[np.ndarray, Any] | None) -> None:
        """Called by the frame loop with a frame's events: keeps a crop, encodes nothing."""
        for ev in events:
            self._seq += 1
            crop = _thumb_crop(latest[0], ev) if latest is not None else None
            self._events.append(_PageEvent(self._seq, ev, crop))

    # ---------------------------------------------------------------- dispatch

    def handle(self, req: Any) -> Answer | None:
        if self.loopback_only and not self._loopback_host(req.headers.get("Host")):
            return _json({"error": "the page answers only to a loopback Host (localhost, 127.0.0.1); "
                                   "reach it through `ssh -L 8080:127.0.0.1:8080 pi@...`"}, 421)
        path = req.path
        if path in self.static and req.method in ("GET", "HEAD"):
            body, ctype = self.static[path]
            return 200, body, ctype, {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:",
                                      "X-Frame-Options": "DENY"}
        if not path.startswith("/api/"):
            return None
        parts = [unquote(p) for p in path[len("/api/"):].split("/")]
        try:
            return self._route(req, parts)
        except PageError as exc:
            return _json({"error": str(exc)}, exc.code)
        except CaptureNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except (CaptureStoreError, ConfigError) as exc:
            return _json({"error": str(exc)}, 400)

    @staticmethod
    def _loopback_host(host: str | None) -> bool:
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_HOSTS or host in LOOPBACK_HOSTS

    def _route(self, req: Any, parts: list[str]) -> Answer | None:
        m, n = req.method, len(parts)
        read = m in ("GET", "HEAD")
        if read and parts == ["status"]:
            return _json(self.status())
        if read and parts == ["live.jpg"]:
            return self.live_jpeg()
        if read and parts == ["events"]:
            return _json(self.events())
        if read and n == 2 and parts[0] == "events":
            return self.event_thumb(parts[1])
        if parts == ["zones"]:
            if read:
                return _json(self.zones())
            if m == "PUT":
                return self.save_zones(req.body)
        if parts[0] == "captures":
            if read and n == 1:
                return _json({"captures": self._store().list()})
            if n == 2 and read:
                return _json(self._store().get(self._capture_id(parts[1])))
            if n == 3 and parts[2] == "image" and read:
                return self.capture_image(parts[1])
            if n == 2 and m == "PUT":
                return self.save_labels(parts[1], req.body)
        if parts == ["export"] and m == "POST":
            return self.export()
        if not read and parts[0] in ("zones", "captures", "export"):
            raise PageError(405, f"{m} is not served on {req.path}")
        raise PageError(404, f"no such page {req.path}")

    # ---------------------------------------------------------------- status

    def _model(self) -> dict[str, Any]:
        """Run name and sha256 of the running model; the manifest is read once per model path."""
        cfg = self.daemon.cfg
        if self._manifest is None or self._manifest[0] != cfg.model.path:
            from edge.manifest import load_manifest

            info: dict[str, Any] = {"path": cfg.model.path, "precision": cfg.model.precision}
            try:
                mf = load_manifest(cfg.model.path)
                info["name"] = getattr(mf, "name", None) or Path(cfg.model.path).resolve().name
                info["sha256"] = mf.models[cfg.model.precision].sha256
            except Exception as exc:  # noqa: BLE001 - the status page still shows the rest
                info["error"] = str(exc)
            self._manifest = (cfg.model.path, info)
        return {**self._manifest[1], "runtime": getattr(self.daemon.pipeline.detector, "runtime", None)}

    def status(self) -> dict[str, Any]:
        d, now = self.daemon, time.monotonic()
        source = d.source
        latest = d.last_latency or {}
        token = bool(d.cfg.http.token)
        return {
            "model": self._model(),
            "frames": d.frames,
            "monotonic": now,
            "uptime_s": round(now - d.started_monotonic, 1),
            "seconds_since_last_frame": round(now - d.last_frame_monotonic, 3),
            "stages_ms": {k: {"p50": v["p50"], "p95": v["p95"]} for k, v in d.stats.summary().items()
                          if k in TRACKED},
            "skipped": d.stats.skipped,
            "dropped": d.stats.dropped,
            "camera_errors": int(getattr(source, "errors", 0)),
            "camera_error": getattr(source, "last_error", None) if getattr(source, "consecutive_errors", 0) else None,
            "soc_temp_c": latest.get("soc_temp_c"),
            "throttled": latest.get("throttled"),
            "presence": d.pipeline.decider.presence(),
            "reloads": dict(d.reloads),
            "processing": {"width": d.cfg.processing.width, "height": d.cfg.processing.height},
            "writes": "token" if token else "off: set http.token in the config (e.g. `openssl rand -hex 16`)",
            "zones_file": str(self._zones_path() or ""),
            "capture": {"enabled": d.cfg.capture.enabled, "dir": d.cfg.capture.dir},
        }

    # ---------------------------------------------------------------- live view and events

    def live_jpeg(self) -> Answer:
        """The latest frame with its boxes; one encode per frame however many pages poll."""
        latest = self.daemon.pipeline.snapshot_frame()
        if latest is None:
            raise PageError(503, "no frame processed yet")
        if self._live is None or self._live[0] is not latest:
            image, boxes = latest
            self._live = (latest, encode_snapshot_jpeg(image, boxes, quality=80))
        return 200, self._live[1], "image/jpeg", None

    def events(self) -> dict[str, Any]:
        return {"events": [{**pe.event.to_dict(), "seq": pe.seq,
                            "thumb": f"/api/events/{pe.seq}.jpg" if pe.crop is not None else None}
                           for pe in reversed(list(self._events))]}  # a copy: the loop appends

    def event_thumb(self, name: str) -> Answer:
        m = re.fullmatch(r"([0-9]{1,12})\.jpg", name)
        pe = next((p for p in list(self._events) if m and p.seq == int(m.group(1))), None)
        if pe is None or pe.crop is None:
            raise PageError(404, f"no thumbnail {name} (only the last {MAX_EVENTS} events keep one)")
        if pe.jpeg is None:
            out = io.BytesIO()
            Image.fromarray(pe.crop).convert("RGB").save(out, format="JPEG", quality=80)
            pe.jpeg = out.getvalue()
        return 200, pe.jpeg, "image/jpeg", None

    # ---------------------------------------------------------------- zones

    def _zones_path(self) -> Path | None:
        d = self.daemon
        return zones_path(d.config_path, d.cfg) if d.config_path is not None else None

    def zones(self) -> dict[str, Any]:
        """The zones the daemon runs with now (not the file): what a save changed, once applied."""
        d = self.daemon
        return {"zones": zones_to_json(d.cfg.zones), "presence": d.pipeline.decider.presence(),
                "reloads": dict(d.reloads), "zones_file": str(self._zones_path() or ""),
                "processing": {"width": d.cfg.processing.width, "height": d.cfg.processing.height}}

    def save_zones(self, body: bytes) -> Answer:
        path = self._zones_path()
        if path is None:
            raise PageError(409, "the config has no zones_file, so the page cannot save zones: add the line "
                                 "zones_file = \"/var/lib/car-detector/zones.toml\" at the top of the config "
                                 "(before any [section]; a place the service may write), move any [zones.*] "
                                 "tables into that file, and reload")
        zones = zones_from_json(_body_json(body).get("zones"), self.daemon.cfg)
        write_zones_file(path, zones)
        self.daemon.reload_requested.set()  # the SIGHUP path: applied between two frames
        log.info("zones saved from the page", extra={"zones_file": str(path), "zones": list(zones)})
        return _json({"saved": str(path), "zones": zones_to_json(zones), "reload": "requested",
                      "reloads": dict(self.daemon.reloads)}, 202)

    # ---------------------------------------------------------------- labelling

    def _store(self) -> CaptureStore:
        cap = self.daemon.cfg.capture
        return CaptureStore(Path(cap.dir), cap.max_bytes)

    @staticmethod
    def _capture_id(raw: str) -> str:
        if not re.fullmatch(r"[0-9A-Za-z-]{1,64}", raw):
            raise PageError(400, f"capture id {raw!r} is not valid")
        return raw

    def capture_image(self, raw_id: str) -> Answer:
        store = self._store()
        path = store.image_path(self._capture_id(raw_id))
        folder = Path(self.daemon.cfg.capture.dir).resolve()
        if path.is_symlink() or path.resolve().parent != folder:
            raise PageError(403, f"capture {raw_id} is not a plain file in the capture folder")
        return 200, path.read_bytes(), "image/png", None

    def save_labels(self, raw_id: str, body: bytes) -> Answer:
        data = _body_json(body)
        cid = self._capture_id(raw_id)
        self._store().set_labels(cid, data.get("labels"), bool(data.get("no_car", False)))
        return _json(self._store().get(cid))

    def export_dir(self) -> Path:
        """Next to the capture folder, never a path from the request."""
        cap = Path(self.daemon.cfg.capture.dir)
        return cap.with_name(cap.name + "-yolo")

    def export(self) -> Answer:
        summary = self._store().export_yolo(self.export_dir())
        log.info("captures exported from the page", extra={"export": summary})
        return _json(summary)


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PageError(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PageError(400, "the request body must be a JSON object")
    return data
