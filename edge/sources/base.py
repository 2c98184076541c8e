"""The frame-source family: every camera-like thing the daemon can read from.

One base class, one small module per kind (as picamera2 does for previews), so the
pipeline and the tests never care where pixels came from.
"""

from __future__ import annotations

import abc

from edge.frame import Frame


class SourceError(RuntimeError):
    """A recoverable camera fault (busy, timeout, disconnected): retry with backoff."""


class SourceExhausted(Exception):
    """A finite source (video without loop, image folder) has no more frames."""


class FrameSource(abc.ABC):
    """Produces greyscale frames of the configured size.

    Lifecycle: open() -> read() ... -> close(). read() blocks until a frame is available
    or raises SourceError (recoverable; the caller retries with backoff after
    close()/open()) or SourceExhausted (finite source finished).
    """

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device/file. May raise SourceError."""

    @abc.abstractmethod
    def read(self) -> Frame:
        """Return the next frame; Frame.timestamp_ns on CLOCK_MONOTONIC."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device/file. Must be safe to call twice and after a failed open()."""

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
