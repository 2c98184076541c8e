"""The Raspberry Pi camera through picamera2 (libcamera): the source the daemon exists for.

The detector wants small greyscale frames, which the ISP produces for free: a `lores`
stream in YUV420 at the configured size whose Y plane *is* the greyscale image, so no
colour conversion or resize runs on the CPU. libcamera derives the lores stream from the
`main` stream, which is configured at source.main_width x main_height (YUV420, never copied
out) so that the sensor mode, and thus the field of view, is the one chosen there.

picamera2 exists only on the Pi (Debian package python3-picamera2), so it is imported in
open(), never at module import.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Any

import numpy as np

from edge.config import ConfigError, SourceConfig
from edge.frame import Frame
from edge.sources._util import fit_grey
from edge.sources.base import FrameSource, SourceError

log = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install it with `sudo apt install python3-picamera2` and create the virtualenv with "
    "`python3 -m venv --system-site-packages` so it can see the system package"
)
_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)  # distinct before Python 3.11


def _import_picamera2() -> tuple[Any, Any]:
    """(picamera2 module, libcamera module), or a ConfigError that says how to install them."""
    try:
        import libcamera
        import picamera2
    except ImportError as exc:
        raise ConfigError(
            f"source.kind = 'picamera2' but picamera2 cannot be imported ({exc}); {_INSTALL_HINT}"
        ) from None
    return picamera2, libcamera


class Picamera2Source(FrameSource):
    """Greyscale frames from the `lores` Y plane; SensorTimestamp as the frame time."""

    def __init__(
        self,
        cfg: SourceConfig,
        *,
        stop_event: threading.Event | None = None,
        camera_num: int = 0,
        buffer_count: int = 4,
        poll_s: float = 0.1,
    ) -> None:
        self.cfg = cfg
        self.camera_num = camera_num
        self.buffer_count = buffer_count
        self.poll_s = poll_s
        self._stop_event = stop_event
        self._cam: Any = None
        self._lores_size: tuple[int, int] = (cfg.width, cfg.height)
        self._next_id = 0
        self._warned_timestamp = False

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        if self._cam is not None:
            return
        picamera2, libcamera = _import_picamera2()
        cam = self._construct(picamera2.Picamera2)
        try:
            cam.configure(self._configuration(cam, libcamera))
            cam.start()
            lores = cam.stream_configuration("lores")
        except Exception as exc:
            self._shutdown(cam)
            raise SourceError(f"camera {self.camera_num} could not be started: {exc}") from exc
        self._lores_size = (int(lores["size"][0]), int(lores["size"][1]))
        if self._lores_size != (self.cfg.width, self.cfg.height):
            log.info(
                "camera delivers lores %dx%d for the requested %dx%d; frames are resized",
                *self._lores_size, self.cfg.width, self.cfg.height,
            )
        self._cam = cam
        log.info("camera %d started: %dx%d greyscale at %.1f fps", self.camera_num,
                 self.cfg.width, self.cfg.height, self.cfg.fps)

    def _construct(self, picamera2_cls: Any) -> Any:
        try:
            cameras = picamera2_cls.global_camera_info()
        except Exception as exc:
            raise SourceError(f"cannot list cameras: {exc}") from exc
        if len(cameras) <= self.camera_num:
            raise SourceError(
                f"camera {self.camera_num} not found ({len(cameras)} detected): check the ribbon "
                "cable and `rpicam-hello --list-cameras`"
            )
        try:
            return picamera2_cls(camera_num=self.camera_num)
        except Exception as exc:
            raise SourceError(
                f"camera {self.camera_num} could not be opened ({exc}); another process probably "
                "holds it (another car-detector, rpicam-*/libcamera-* apps): "
                "check `sudo fuser -v /dev/media*`"
            ) from exc

    def _configuration(self, cam: Any, libcamera: Any) -> Any:
        cfg = self.cfg
        main_size = (max(cfg.main_width, cfg.width), max(cfg.main_height, cfg.height))
        if abs(main_size[0] / main_size[1] - cfg.width / cfg.height) > 0.01:
            log.warning(
                "source.main %dx%d and source %dx%d differ in aspect ratio: the greyscale frames "
                "will be stretched", *main_size, cfg.width, cfg.height,
            )
        frame_us = int(round(1_000_000 / cfg.fps))
        return cam.create_video_configuration(
            main={"size": main_size, "format": "YUV420"},
            lores={"size": (cfg.width, cfg.height), "format": "YUV420"},
            # Full-range (JPEG) YUV: the model was trained on 0..255 greyscale pictures,
            # not on the 16..235 luma the video colour spaces would give.
            colour_space=libcamera.ColorSpace.Sycc(),
            # FrameDurationLimits (microseconds) works on every picamera2 release;
            # the FrameRate shorthand only on newer ones.
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            buffer_count=self.buffer_count,
            display=None,
            encode=None,
        )

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            self._shutdown(cam)

    @staticmethod
    def _shutdown(cam: Any) -> None:
        for step in (cam.stop, cam.close):
            try:
                step()
            except Exception as exc:  # a dead camera may fail to stop; the fd must still go
                log.warning("camera %s failed: %s", step.__name__, exc)

    # -- reading -----------------------------------------------------------------------

    def read(self) -> Frame:
        cam = self._cam
        if cam is None:
            raise SourceError("camera read() before open() (or after a failure closed it)")
        request = self._capture(cam)
        try:
            yuv, metadata = self._extract(request)
        finally:
            self._release(request)
        w, h = self._lores_size
        image = fit_grey(yuv[:h, :w], self.cfg.width, self.cfg.height)  # Y plane minus stride padding
        timestamp_ns = self._timestamp(metadata)
        frame_id = self._next_id
        self._next_id += 1
        return Frame(
            image=image,
            timestamp_ns=timestamp_ns,
            frame_id=frame_id,
            wall_time=time.time() - (time.monotonic_ns() - timestamp_ns) / 1e9,
        )

    def _extract(self, request: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """The lores YUV420 array and the metadata."""
        try:
            yuv = request.make_array("lores")
            metadata = request.get_metadata()
        except Exception as exc:
            raise SourceError(f"reading a frame from camera {self.camera_num} failed: {exc}") from exc
        return yuv, metadata

    def _release(self, request: Any) -> None:
        """Hand the buffers back to libcamera; a request kept by mistake stalls the camera."""
        try:
            request.release()
        except Exception as exc:
            raise SourceError(f"releasing a request of camera {self.camera_num} failed: {exc}") from exc

    def _capture(self, cam: Any) -> Any:
        """Next completed request, waiting at most capture_timeout_s and stopping on request.

        The wait is sliced so that a stop event ends it within poll_s even when the camera
        is dead; the one job is reused across slices so no orphan job later swallows a
        request that nobody releases.
        """
        try:
            job = cam.capture_request(wait=False)
        except Exception as exc:
            raise SourceError(f"camera {self.camera_num} refused a capture: {exc}") from exc
        deadline = time.monotonic() + self.cfg.capture_timeout_s
        while True:
            if self._stop_event is not None and self._stop_event.is_set():
                self._abandon(cam, job)
                raise SourceError("capture abandoned: stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abandon(cam, job)
                raise SourceError(
                    f"no frame from camera {self.camera_num} within {self.cfg.capture_timeout_s:g} s "
                    "(cable loose or camera hung?)"
                )
            slice_s = remaining if self._stop_event is None else min(remaining, self.poll_s)
            try:
                return cam.wait(job, timeout=slice_s)
            except _TIMEOUTS:
                continue
            except Exception as exc:
                self._abandon(cam, job)
                raise SourceError(f"capture from camera {self.camera_num} failed: {exc}") from exc

    @staticmethod
    def _abandon(cam: Any, job: Any) -> None:
        """Cancel the pending capture; release the request if it completed in the meantime."""
        try:
            cam.cancel_all_and_flush()
        except Exception as exc:
            log.warning("cancelling the pending capture failed: %s", exc)
        try:
            late = cam.wait(job, timeout=0)
        except Exception:  # cancelled or still pending: nothing was handed to us
            return
        if late is not None:
            try:
                late.release()
            except Exception as exc:
                log.warning("releasing a late request failed: %s", exc)

    def _timestamp(self, metadata: dict[str, Any]) -> int:
        """SensorTimestamp (CLOCK_MONOTONIC ns, start of readout) so frame age is real.

        Falls back to the arrival time, with one warning, when the camera gives no
        timestamp or one on another clock (an age outside 0..60 s cannot be a real frame).
        """
        now = time.monotonic_ns()
        ts = metadata.get("SensorTimestamp")
        if isinstance(ts, int) and 0 <= now - ts < 60_000_000_000:
            return ts
        if not self._warned_timestamp:
            self._warned_timestamp = True
            log.warning("camera SensorTimestamp %r is not on CLOCK_MONOTONIC; using arrival time "
                        "(frame ages will miss the capture latency)", ts)
        return now
