"""The capture folder: saved frames, their proposed boxes, the user's labels, YOLO export.

One PNG plus one JSON sidecar per frame, named by its id. The sidecar is the only record of
a frame's labels, so it is written by tmp + rename (a crash or a full card never leaves half
a label file) and the PNG is renamed into place before its sidecar: a sidecar always has its
picture, and a frame without a sidecar is not listed.

Why a folder and not a database: `make pull` copies it with tar over ssh, a user can look at
it with any image viewer, and two processes (the daemon saving, the page labelling) share it
with nothing more than atomic renames.

The store never fills the disk: `max_bytes` caps PNGs plus sidecars, and the oldest
*unlabelled* frames go first. Labelled frames are a person's work and are never evicted;
when they alone fill the cap, new frames are refused (one warning) instead.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge.files import make_dirs, open_replace

log = logging.getLogger(__name__)

SIDECAR_VERSION = 2
CLASS_NAMES = ["car"]  # YOLO class 0; `training` reads these names from classes.yaml
BOX_KEYS = ("x", "y", "width", "height")
PROPOSAL_KEYS = (*BOX_KEYS, "score", "source")

# Ids are the file stem: the UTC time of the frame (so name order is time order, which the
# training side's hold-out-by-time split relies on) and the frame id. Nothing else is allowed
# in an id, so an id from a URL can never name a path outside the folder.
_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9]{3}-[0-9]{8,}")


class CaptureStoreError(ValueError):
    """Bad input to the store (an id, a box): the message says which and why."""


class CaptureNotFound(CaptureStoreError, LookupError):
    """A well-formed id with no frame behind it (never saved, or evicted)."""


def make_id(wall_time: float, frame_id: int) -> str:
    ms = round(wall_time * 1000)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ms // 1000))
    return f"{stamp}-{ms % 1000:03d}-{int(frame_id):08d}"


def check_id(capture_id: str) -> str:
    if not isinstance(capture_id, str) or not _ID.fullmatch(capture_id):
        raise CaptureStoreError(f"capture id {capture_id!r} is not valid (expected e.g. "
                                "'20260101-120000-000-00000042')")
    return capture_id


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_box(box: Any, width: int, height: int, where: str) -> dict[str, float]:
    """A labelled box inside the picture, as {x, y, width, height}; CaptureStoreError otherwise."""
    if not isinstance(box, dict):
        raise CaptureStoreError(f"{where} must be an object with {', '.join(BOX_KEYS)}, got {box!r}")
    missing = [k for k in BOX_KEYS if k not in box]
    if missing:
        raise CaptureStoreError(f"{where} lacks {', '.join(missing)}")
    bad = [k for k in BOX_KEYS if not _finite(box[k])]
    if bad:
        raise CaptureStoreError(f"{where}.{bad[0]} must be a finite number, got {box[bad[0]]!r}")
    x, y, w, h = (float(box[k]) for k in BOX_KEYS)
    if w <= 0 or h <= 0:
        raise CaptureStoreError(f"{where} needs width and height > 0, got {w:g}x{h:g}")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise CaptureStoreError(f"{where} = ({x:g}, {y:g}, {w:g}, {h:g}) must lie inside the "
                                f"{width}x{height} picture")
    return {"x": round(x, 2), "y": round(y, 2), "width": round(w, 2), "height": round(h, 2)}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open_replace(tmp) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class _Entry:
    """What list() needs of one sidecar, cached by the sidecar's (mtime, size)."""

    stamp: tuple[int, int]
    time: float
    labelled: bool
    no_car: bool
    n_proposals: int
    bytes: int


class CaptureStore:
    """Frames in `folder`, at most `max_bytes` of them (PNGs plus sidecars).

    Safe to share between threads; several instances (the daemon's, the page's) may use one
    folder: listings are re-read from the folder, only changed sidecars are parsed again.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self._lock = threading.RLock()
        self._cache: dict[str, _Entry] = {}
        self._warned_full = False

    # ------------------------------------------------------------------ reading

    def _paths(self, capture_id: str) -> tuple[Path, Path]:
        check_id(capture_id)
        png = self.folder / f"{capture_id}.png"
        # Belt and braces: the id pattern already excludes '/', '.' and NUL.
        if png.resolve().parent != self.folder.resolve():
            raise CaptureStoreError(f"capture id {capture_id!r} points outside {self.folder}")
        return png, png.with_suffix(".json")

    def _read_sidecar(self, path: Path) -> dict[str, Any]:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:
            raise ValueError(f"not a version {SIDECAR_VERSION} capture sidecar")
        return data

    def _scan(self) -> dict[str, _Entry]:
        """Refresh the cache from the folder; unreadable sidecars are logged and left out."""
        seen: dict[str, _Entry] = {}
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            self._cache = {}
            return {}
        sizes = {e.name: e.stat().st_size for e in entries if e.name.endswith(".png")}
        for e in entries:
            stem, dot, ext = e.name.rpartition(".")
            if ext != "json" or not dot or not _ID.fullmatch(stem):
                continue
            st = e.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            old = self._cache.get(stem)
            if old is not None and old.stamp == stamp:
                old.bytes = st.st_size + sizes.get(f"{stem}.png", 0)
                seen[stem] = old
                continue
            try:
                d = self._read_sidecar(Path(e.path))
                seen[stem] = _Entry(stamp, float(d["time"]), d.get("labels") is not None,
                                    bool(d.get("no_car")), len(d.get("proposals") or []),
                                    st.st_size + sizes.get(f"{stem}.png", 0))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("capture sidecar %s is unreadable (%s); leaving it out", e.path, exc)
        self._cache = seen
        return seen

    def list(self) -> list[dict[str, Any]]:
        """Every frame, oldest first: {id, time, labelled, no_car, n_proposals}."""
        with self._lock:
            entries = self._scan()
        return [{"id": k, "time": e.time, "labelled": e.labelled, "no_car": e.no_car,
                 "n_proposals": e.n_proposals} for k, e in sorted(entries.items(), key=lambda kv: (kv[1].time, kv[0]))]

    def image_path(self, capture_id: str) -> Path:
        """The PNG of a frame; never a path outside the folder."""
        png, side = self._paths(capture_id)
        if not (png.is_file() and side.is_file()):
            raise CaptureNotFound(f"no captured frame {capture_id!r} in {self.folder}")
        return png

    def get(self, capture_id: str) -> dict[str, Any]:
        """{id, width, height, proposals, labels (None = not labelled yet), no_car}."""
        _, side = self._paths(capture_id)
        try:
            d = self._read_sidecar(side)
        except FileNotFoundError:
            raise CaptureNotFound(f"no captured frame {capture_id!r} in {self.folder}") from None
        except (OSError, ValueError) as exc:
            raise CaptureStoreError(f"capture {capture_id}: sidecar {side} is unreadable: {exc}") from None
        return {"id": capture_id, "width": int(d["width"]), "height": int(d["height"]),
                "proposals": [{k: p[k] for k in PROPOSAL_KEYS} for p in d.get("proposals") or []],
                "labels": d.get("labels"), "no_car": bool(d.get("no_car"))}

    # ------------------------------------------------------------------ writing

    def set_labels(self, capture_id: str, labels: list[dict[str, Any]] | None, no_car: bool) -> None:
        """The user's boxes for one frame (labels=None: back to unlabelled); atomic."""
        _, side = self._paths(capture_id)
        if not isinstance(no_car, bool):
            raise CaptureStoreError(f"no_car must be true or false, got {no_car!r}")
        with self._lock:
            try:
                d = self._read_sidecar(side)
            except FileNotFoundError:
                raise CaptureNotFound(f"no captured frame {capture_id!r} in {self.folder}") from None
            if labels is None:
                if no_car:
                    raise CaptureStoreError("no_car = true is a label: pass labels = [] with it")
                clean = None
            else:
                if not isinstance(labels, list):
                    raise CaptureStoreError(f"labels must be a list of boxes or null, got {labels!r}")
                clean = [check_box(b, int(d["width"]), int(d["height"]), f"labels[{i}]")
                         for i, b in enumerate(labels)]
                if no_car and clean:
                    raise CaptureStoreError(f"no_car = true but {len(clean)} box(es) given; "
                                            "a frame is either empty or has cars")
            d.update(labels=clean, no_car=no_car, labelled_at=round(time.time(), 3))
            _write_atomic(side, (json.dumps(d) + "\n").encode("utf-8"))

    def add(self, image: np.ndarray, wall_time: float, frame_id: int, reason: str, top_score: float,
            proposals: list[dict[str, Any]]) -> str | None:
        """Save one frame with its proposals; the id, or None when only labelled frames are left
        to fill the cap. Evicts the oldest unlabelled frames to make room."""
        cid = make_id(wall_time, frame_id)
        png, side = self._paths(cid)
        height, width = image.shape[:2]
        sidecar = {"version": SIDECAR_VERSION, "frame_id": int(frame_id), "time": float(wall_time),
                   "width": int(width), "height": int(height), "reason": reason,
                   "top_score": round(float(top_score), 4),
                   "proposals": [{k: (str(p[k]) if k == "source" else round(float(p[k]), 4))
                                  for k in PROPOSAL_KEYS} for p in proposals],
                   "labels": None, "no_car": False}
        side_bytes = (json.dumps(sidecar) + "\n").encode("utf-8")
        with self._lock:
            make_dirs(self.folder)  # 0750: frames show who parks here; not for every local user
            tmp = png.with_name(png.name + ".tmp")
            with open_replace(tmp) as f:
                Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")
            need = tmp.stat().st_size + len(side_bytes)
            if not self._make_room(need):
                tmp.unlink(missing_ok=True)
                return None
            os.replace(tmp, png)
            _write_atomic(side, side_bytes)
        return cid

    def _make_room(self, need: int) -> bool:
        """Evict oldest unlabelled frames until `need` more bytes fit under max_bytes."""
        entries = self._scan()
        total = sum(e.bytes for e in entries.values())
        if total + need <= self.max_bytes:
            self._warned_full = False
            return True
        for cid, e in sorted(entries.items(), key=lambda kv: (kv[1].time, kv[0])):
            if e.labelled:
                continue
            png, side = self._paths(cid)
            side.unlink(missing_ok=True)  # sidecar first: a frame without one is not listed
            png.unlink(missing_ok=True)
            self._cache.pop(cid, None)
            total -= e.bytes
            if total + need <= self.max_bytes:
                return True
        if not self._warned_full:  # once: at 10 fps a warning per frame would flood the journal
            log.warning("capture folder %s: labelled frames alone fill capture.max_bytes = %d; not "
                        "saving more until they are pulled (make pull) and removed, or the cap is raised",
                        self.folder, self.max_bytes)
            self._warned_full = True
        return False

    # ------------------------------------------------------------------ export

    def export_yolo(self, dest: Path) -> dict[str, Any]:
        """Labelled frames as a YOLO folder: images/<id>.png, labels/<id>.txt
        ("0 cx cy w h", normalised; empty for "no car"), classes.yaml.

        Names are ids, so name order is time order. `dest` is replaced only when it is a
        previous export (it has classes.yaml) or empty: nothing else of the user's is
        overwritten. One unreadable frame is reported in the summary and skipped.
        """
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / "classes.yaml").is_file())):
            raise CaptureStoreError(f"{dest} exists and is not an earlier export (no classes.yaml); "
                                    "pick a new or empty folder")
        work = dest.with_name(f".{dest.name}.export-tmp")
        shutil.rmtree(work, ignore_errors=True)
        (work / "images").mkdir(parents=True)
        (work / "labels").mkdir()
        summary: dict[str, Any] = {"dest": str(dest), "frames": 0, "boxes": 0, "no_car": 0, "skipped": []}
        for item in self.list():
            if not item["labelled"]:
                continue
            cid = item["id"]
            try:
                frame = self.get(cid)
                shutil.copyfile(self.image_path(cid), work / "images" / f"{cid}.png")
            except (OSError, CaptureStoreError) as exc:
                summary["skipped"].append({"id": cid, "why": str(exc)})
                continue
            w, h = frame["width"], frame["height"]
            lines = [f"0 {(b['x'] + b['width'] / 2) / w:.6f} {(b['y'] + b['height'] / 2) / h:.6f} "
                     f"{b['width'] / w:.6f} {b['height'] / h:.6f}\n" for b in frame["labels"]]
            (work / "labels" / f"{cid}.txt").write_text("".join(lines))
            summary["frames"] += 1
            summary["boxes"] += len(lines)
            summary["no_car"] += int(frame["no_car"])
        (work / "classes.yaml").write_text("names: [" + ", ".join(CLASS_NAMES) + "]\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(work, dest)
        return summary
