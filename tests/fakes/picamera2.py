"""A stand-in for picamera2 (and the sliver of libcamera it exposes) for tests off the Pi.

It mirrors the API surface the daemon uses, with the real library's behaviour where a
mistake would matter on the Pi (checked against raspberrypi/picamera2):

- `Picamera2(camera_num)` indexes `global_camera_info()` (IndexError with no camera, as
  the real one) and raises RuntimeError("Camera __init__ sequence did not complete.")
  when the camera is busy, including when another instance still holds it open.
- `create_video_configuration(main, lores, raw, transform, colour_space, buffer_count,
  controls, display, encode, queue, sensor, use_case)` returns a plain dict, rejects
  unknown stream keys (ValueError) and rounds sizes down to even numbers; `configure()`
  checks formats, sizes and lores <= main, then fills in `stride` (padded, as the ISP
  does) which `stream_configuration(name)` reports.
- `capture_request(wait=...)`: wait=False returns a job for `wait(job, timeout)`, a number
  waits that long and raises concurrent.futures.TimeoutError; a job left pending is served
  by the next frame (so an abandoned job leaks a request, as on the Pi) unless
  `cancel_all_and_flush()` cancelled it.
- `make_array("lores")` of a YUV420 stream has shape (h*3//2, stride): luma in [:h, :w],
  padding (PADDING_VALUE) right of it. RGB-family formats follow picamera2's naming:
  "BGR888" is R,G,B in memory order, "RGB888" is B,G,R.
- metadata carries SensorTimestamp on time.monotonic_ns()'s clock, a little in the past.

The fake "hardware" is a CameraRig, shared by every Picamera2 the code under test creates,
with failure injection (busy init/start, a dead camera, make_array errors) and the
bookkeeping tests assert on (requests never released, instances left open).
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BUSY_INIT_MESSAGE = "Camera __init__ sequence did not complete."
BUSY_START_MESSAGE = "Failed to start camera: Device or resource busy"
PADDING_VALUE = 255  # never produced by fake_luma, so stride padding leaking into a frame shows
CHROMA_VALUE = 128
MAIN_RGB = (200, 100, 50)

_FORMATS = ("YUV420", "YVU420", "RGB888", "BGR888", "XBGR8888", "XRGB8888")
_STREAM_KEYS = ("format", "size", "stride", "preserve_ar")
_KNOWN_CONTROLS = {
    "FrameDurationLimits", "FrameRate", "NoiseReductionMode", "AeEnable", "AwbEnable",
    "ExposureTime", "AnalogueGain", "Brightness", "Contrast", "ScalerCrop",
}
_NO_TIMEOUT = (
    "fake picamera2: waiting without a timeout on a camera that delivers no frames "
    "would block forever on the Pi"
)


def fake_luma(index: int, width: int, height: int) -> np.ndarray:
    """The Y plane of the rig's frame number `index` (values 0..250)."""
    rows = np.arange(height, dtype=np.int64)[:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    return ((rows * 3 + cols * 7 + index * 11) % 251).astype(np.uint8)


class ColorSpace:
    """libcamera.ColorSpace: only the named constructors picamera2 users call."""

    def __init__(self, name: str, full_range: bool) -> None:
        self.name = name
        self.full_range = full_range

    def __repr__(self) -> str:
        return f"ColorSpace.{self.name}()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColorSpace) and other.name == self.name

    @staticmethod
    def Sycc() -> ColorSpace:  # noqa: N802 - libcamera's spelling
        return ColorSpace("Sycc", True)

    @staticmethod
    def Smpte170m() -> ColorSpace:  # noqa: N802
        return ColorSpace("Smpte170m", False)

    @staticmethod
    def Rec709() -> ColorSpace:  # noqa: N802
        return ColorSpace("Rec709", False)


class Transform:
    """libcamera.Transform(hflip=0, vflip=0)."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose


class FakeJob:
    """picamera2.job.Job: a future the event loop completes with a request."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def get_result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout=timeout)

    def cancel(self) -> None:
        self.future.set_exception(concurrent.futures.CancelledError())


@dataclass
class CameraRig:
    """The fake camera hardware plus the record of how the code under test used it."""

    cameras: list[dict[str, Any]] = field(default_factory=lambda: [
        {"Model": "imx708", "Location": 2, "Rotation": 180,
         "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0},
    ])
    busy_inits: int = 0  # the next N Picamera2() calls fail as if another process held the camera
    busy_starts: int = 0  # the next N start() calls fail with "Device or resource busy"
    dead_after: int | None = None  # after this many frames (rig-wide) no frame ever arrives
    make_array_errors: int = 0  # the next N make_array() calls raise
    stride_align: int = 64  # bytes; YUV420 rows are padded to a multiple of this
    lores_size_override: tuple[int, int] | None = None  # what libcamera "adjusts" lores to
    sensor_latency_ns: int = 20_000_000  # SensorTimestamp lies this far before delivery

    dead: bool = False
    frames: int = 0
    instances: list[FakePicamera2] = field(default_factory=list)
    requests: list[FakeCompletedRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    module: types.ModuleType | None = None
    _last_ts: int = 0

    def kill(self) -> None:
        """Cable pulled: captures stop completing (they time out, as on the Pi)."""
        self.dead = True

    def revive(self) -> None:
        """Cable back: frames flow again, and pending jobs are served."""
        with self.lock:
            self.dead = False
            self.dead_after = None
            for cam in self.instances:
                cam._serve_pending()

    def unreleased(self) -> list[FakeCompletedRequest]:
        return [r for r in self.requests if r.ref_count > 0]

    def open_instances(self) -> list[FakePicamera2]:
        return [c for c in self.instances if c.is_open]

    def _can_deliver(self) -> bool:
        if self.dead_after is not None and self.frames >= self.dead_after:
            self.dead = True
        return not self.dead

    def _timestamp(self) -> int:
        ts = max(time.monotonic_ns() - self.sensor_latency_ns, self._last_ts + 1)
        self._last_ts = ts
        return ts


class FakeCompletedRequest:
    """picamera2.request.CompletedRequest: buffers held until release()."""

    def __init__(self, rig: CameraRig, index: int, config: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.rig = rig
        self.index = index
        self.config = config
        self.metadata = metadata
        self.ref_count = 1

    @property
    def released(self) -> bool:
        return self.ref_count == 0

    def acquire(self) -> None:
        with self.rig.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.rig.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")

    def _check_held(self, what: str) -> None:
        if self.ref_count <= 0:
            raise RuntimeError(
                f"fake picamera2: {what} on a released request (its buffers are back with libcamera)"
            )

    def get_metadata(self) -> dict[str, Any]:
        self._check_held("get_metadata()")
        return dict(self.metadata)

    def make_array(self, name: str) -> np.ndarray:
        self._check_held("make_array()")
        with self.rig.lock:
            if self.rig.make_array_errors > 0:
                self.rig.make_array_errors -= 1
                raise RuntimeError("fake picamera2: injected make_array failure")
        stream = self.config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        fmt, (w, h), stride = stream["format"], stream["size"], stream["stride"]
        if fmt in ("YUV420", "YVU420"):
            out = np.full((h * 3 // 2, stride), PADDING_VALUE, dtype=np.uint8)
            out[:h, :w] = fake_luma(self.index, w, h)
            out[h:, :] = CHROMA_VALUE
            return out
        r, g, b = MAIN_RGB
        pixel = {"BGR888": (r, g, b), "RGB888": (b, g, r),
                 "XBGR8888": (r, g, b, 255), "XRGB8888": (b, g, r, 255)}[fmt]
        return np.tile(np.array(pixel, dtype=np.uint8), (h, w, 1))


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any] | None:
    """Like Picamera2._make_initial_stream_config + align_stream(optimal=False)."""
    if updates is None:
        return None
    stream = dict(defaults)
    for key, value in updates.items():
        if key not in _STREAM_KEYS:
            raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {_STREAM_KEYS}")
        stream[key] = value
    w, h = stream["size"]
    stream["size"] = (w - w % 2, h - h % 2)
    return stream


def _check_stream(stream: Any, name: str) -> None:
    """Picamera2.check_stream_config."""
    if type(stream) is not dict:
        raise RuntimeError(name + " stream should be a dictionary")
    if stream.get("format") not in _FORMATS:
        raise RuntimeError(f"Bad format {stream.get('format')} in stream {name}")
    size = stream.get("size")
    if type(size) is not tuple or len(size) != 2:
        raise RuntimeError("size in " + name + " stream should be (width, height)")
    if size[0] % 2 or size[1] % 2:
        raise RuntimeError("width and height should be even")


def _stride(fmt: str, width: int, align: int) -> int:
    if fmt in ("YUV420", "YVU420"):
        return _align(width, align)
    bpp = 3 if fmt in ("RGB888", "BGR888") else 4
    return _align(width * bpp, 32)


class FakePicamera2:
    """picamera2.Picamera2, bound to a CameraRig by install_fake_picamera2()."""

    rig: CameraRig  # set on the per-install subclass

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:  # replaced per install
        raise NotImplementedError

    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None,
                 allocator: Any = None) -> None:
        self.is_open = False
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.start_count = 0
        self.stop_count = 0
        self._jobs: list[FakeJob] = []
        num = self.global_camera_info()[camera_num]["Num"]  # IndexError without a camera, as the real one
        rig = self.rig
        with rig.lock:
            busy = any(c.is_open and c.camera_num == num for c in rig.instances)
            if rig.busy_inits > 0:
                rig.busy_inits -= 1
                busy = True
            if busy:
                raise RuntimeError(BUSY_INIT_MESSAGE)
            self.camera_num = num
            self.is_open = True
            rig.instances.append(self)

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main_s = _stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main or {})
        assert main_s is not None
        lores_s = _stream({"format": "YUV420", "size": main_s["size"], "preserve_ar": False}, lores)
        if colour_space is None:
            w, h = main_s["size"]
            colour_space = ColorSpace.Smpte170m() if w < 1280 or h < 720 else ColorSpace.Rec709()
        config = {
            "use_case": use_case, "transform": transform or Transform(), "colour_space": colour_space,
            "buffer_count": buffer_count, "queue": queue, "main": main_s, "lores": lores_s,
            "raw": raw,
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | (controls or {}),
            "sensor": sensor,
        }
        for role, stream_name in (("Display", display), ("Encode", encode)):
            if stream_name is not None and config.get(stream_name) is None:
                raise RuntimeError(f"{role} stream {stream_name} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    def configure(self, camera_config: Any = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict):
            raise TypeError("fake picamera2 only models dict configurations from create_*_configuration()")
        config = {k: dict(v) if isinstance(v, dict) else v for k, v in camera_config.items()}
        for name in ("colour_space", "transform", "main", "lores", "raw"):
            if name not in config:
                raise RuntimeError(f"{name!r} key expected in camera configuration")
        _check_stream(config["main"], "main")
        if config["lores"] is not None:
            _check_stream(config["lores"], "lores")
            (mw, mh), (lw, lh) = config["main"]["size"], config["lores"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if config["lores"]["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            if self.rig.lores_size_override is not None:
                config["lores"]["size"] = self.rig.lores_size_override
        unknown = set(config.get("controls") or {}) - _KNOWN_CONTROLS
        if unknown:
            raise RuntimeError(f"Control {sorted(unknown)[0]} is not advertised by libcamera")
        for name in ("main", "lores"):
            stream = config[name]
            if stream is not None:
                stream["stride"] = _stride(stream["format"], stream["size"][0], self.rig.stride_align)
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        assert self.camera_config is not None, "fake picamera2: stream_configuration() before configure()"
        return self.camera_config[name]

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError(
                "fake picamera2: start() without configure() would run the preview configuration"
            )
        with self.rig.lock:
            if self.rig.busy_starts > 0:
                self.rig.busy_starts -= 1
                raise RuntimeError(BUSY_START_MESSAGE)
            self.started = True
            self.start_count += 1
            self._serve_pending()

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.stop_count += 1

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> Any:
        job = FakeJob()
        with self.rig.lock:
            self._jobs.append(job)
            self._serve_pending()
        if wait is False:
            return job
        if wait is None or wait is True:
            if not job.future.done():
                raise AssertionError(_NO_TIMEOUT)
            return job.get_result()
        return job.get_result(timeout=wait)

    def wait(self, job: FakeJob, timeout: float | None = None) -> Any:
        if timeout is None and not job.future.done():
            raise AssertionError(_NO_TIMEOUT)
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self) -> None:
        with self.rig.lock:
            for job in self._jobs:
                job.cancel()
            self._jobs = []

    def _serve_pending(self) -> None:
        """The event loop: each pending job takes the next frame while the camera runs."""
        rig = self.rig
        with rig.lock:
            while self._jobs and self.started and self.is_open and rig._can_deliver():
                job = self._jobs.pop(0)
                job.future.set_result(self._next_request())

    def _next_request(self) -> FakeCompletedRequest:
        rig = self.rig
        assert self.camera_config is not None
        index = rig.frames
        rig.frames += 1
        frame_us = self.camera_config["controls"].get("FrameDurationLimits", (33333, 33333))[0]
        if "FrameRate" in self.camera_config["controls"]:
            frame_us = int(1_000_000 / self.camera_config["controls"]["FrameRate"])
        metadata = {
            "SensorTimestamp": rig._timestamp(),
            "FrameDuration": frame_us,
            "ExposureTime": min(frame_us, 10_000),
            "AnalogueGain": 2.0,
            "DigitalGain": 1.0,
            "Lux": 400.0,
        }
        request = FakeCompletedRequest(rig, index, self.camera_config, metadata)
        rig.requests.append(request)
        return request


def install_fake_picamera2(monkeypatch: Any, **rig_options: Any) -> CameraRig:
    """Make `import picamera2` / `import libcamera` return the fakes; returns the rig.

    `monkeypatch` is pytest's fixture, so the real modules (if any) come back after the test.
    `rig_options` are CameraRig fields (busy_inits=2, dead_after=5, cameras=[], ...).
    """
    rig = CameraRig(**rig_options)
    cls = type("Picamera2", (FakePicamera2,), {
        "rig": rig,
        "global_camera_info": staticmethod(lambda: [dict(c) for c in rig.cameras]),
    })
    libcamera = types.ModuleType("libcamera")
    libcamera.ColorSpace = ColorSpace  # type: ignore[attr-defined]
    libcamera.Transform = Transform  # type: ignore[attr-defined]
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = cls  # type: ignore[attr-defined]
    picamera2.CompletedRequest = FakeCompletedRequest  # type: ignore[attr-defined]
    picamera2.libcamera = libcamera  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    rig.module = picamera2
    return rig


def hide_picamera2(monkeypatch: Any) -> None:
    """Make `import picamera2` fail as it does on a machine without python3-picamera2."""
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.setitem(sys.modules, "libcamera", None)
