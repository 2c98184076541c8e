"""A video file replayed as if it were a camera: for soak, timing and fault tests off the Pi.

PyAV is imported in open() so that `import edge.sources` works where only the camera is
needed; on the Pi it is installed anyway (picamera2 depends on it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import ConfigError, SourceConfig
from edge.frame import Frame
from edge.sources._util import Pacer
from edge.sources.base import FrameSource, SourceError, SourceExhausted

log = logging.getLogger(__name__)


def _import_av() -> Any:
    try:
        import av
        import av.error  # FFmpegError lives here in every PyAV >= 12
    except ImportError as exc:
        raise ConfigError(
            f"source.kind = 'video' needs PyAV, which is not importable ({exc}); "
            "install it with `pip install av` (or `sudo apt install python3-av`)"
        ) from None
    return av


class VideoSource(FrameSource):
    """Frames of a video file, greyscale at the configured size, optionally looped and paced.

    With `pace` the file plays at its own frame rate (what a camera would deliver); without
    it frames come as fast as they decode, which is what throughput benchmarks want.
    """

    def __init__(self, cfg: SourceConfig, *, stop_event: threading.Event | None = None) -> None:
        if not cfg.path:
            raise ConfigError("source.path must name a video file when source.kind = 'video'")
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._stop_event = stop_event
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._pacer: Pacer | None = None
        self._next_id = 0
        self._frames_this_pass = 0
        self._announced = 0  # frames the container header claims (0: it does not say)
        self._warned_short = False
        self.fps: float | None = None  # the file's own frame rate, known after open()

    def open(self) -> None:
        if self._container is not None:
            return
        av = _import_av()
        if not self.path.is_file():
            what = "is a directory, not a video file" if self.path.is_dir() else "does not exist"
            raise ConfigError(f"source.path = {str(self.path)!r} {what}")
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise ConfigError(
                f"source.path = {str(self.path)!r} cannot be opened as a video: {exc}"
            ) from None
        if not container.streams.video:
            container.close()
            raise ConfigError(f"source.path = {str(self.path)!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else self.cfg.fps
        if self._pacer is None and self.cfg.pace:
            self._pacer = Pacer(self.fps, self._stop_event)
        self._container = container
        self._frames = container.decode(stream)
        self._frames_this_pass = 0
        self._announced = int(stream.frames or 0)
        log.debug("video source %s opened: %.3f fps", self.path, self.fps)

    def close(self) -> None:
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            try:
                container.close()
            except Exception as exc:  # closing must never mask the error that led here
                log.warning("closing video %s failed: %s", self.path, exc)

    def _next_decoded(self) -> Any:
        """The next decoded frame, reopening the file at its end when looping."""
        decode_error = _import_av().error.FFmpegError
        for _attempt in range(2):
            if self._frames is None:
                raise SourceError(f"video source {self.path}: read() before open()")
            try:
                frame = next(self._frames)
                self._frames_this_pass += 1
                return frame
            except StopIteration:
                ended = self._end_of_pass()
                if not self.cfg.loop or self._frames_this_pass == 0:
                    raise SourceExhausted(ended) from None
                # Reopening is cheaper to get right than seeking in every container format.
                self.close()
                self.open()
            except decode_error as exc:
                raise SourceError(f"decoding {self.path} failed: {exc}") from exc
        raise SourceExhausted(f"video {self.path} contains no decodable frames")

    def _end_of_pass(self) -> str:
        """What happened, in words: how many frames, and whether the file looks cut short.

        A file that stops before the frame count its header announces was truncated (a copy
        that did not finish, a recording that was killed): said once, as a warning.
        """
        n, announced = self._frames_this_pass, self._announced
        if n == 0:
            what = f"contains no decodable frames (its header announces {announced})"
        elif announced > n:
            what = (f"ended after {n} of the {announced} frames its header announces: "
                    "the file is truncated or damaged")
            if not self._warned_short:
                log.warning("video %s %s", self.path, what)
                self._warned_short = True
        else:
            what = f"ended after {n} frames"
        if n and not self.cfg.loop:
            what += " (source.loop = false)"
        return f"video {self.path} {what}"

    def read(self) -> Frame:
        decoded = self._next_decoded()
        if self._pacer is not None:
            self._pacer.wait()
        timestamp_ns = time.monotonic_ns()
        w, h = self.cfg.width, self.cfg.height
        if decoded.width == w and decoded.height == h:
            image = decoded.to_ndarray(format="gray")
        else:  # let swscale resize during the colour conversion: one pass instead of two
            image = decoded.to_ndarray(format="gray", width=w, height=h)
        frame_id = self._next_id
        self._next_id += 1
        return Frame(
            image=np.ascontiguousarray(image),
            timestamp_ns=timestamp_ns,
            frame_id=frame_id,
        )
