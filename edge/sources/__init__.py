"""The frame-source family: every camera-like thing the daemon can read from.

`make_source(cfg)` picks the class for `source.kind` from SOURCES. Importing this package
imports no optional dependency: picamera2 (Pi only) and PyAV are imported in open().
"""

from __future__ import annotations

import threading

from edge.config import ConfigError, SourceConfig
from edge.sources.base import FrameSource, SourceError, SourceExhausted
from edge.sources.images import ImageFolderSource
from edge.sources.picamera2_source import Picamera2Source
from edge.sources.retry import RetryingSource, SourceStopped
from edge.sources.synthetic import SyntheticSource
from edge.sources.video import VideoSource

# Every class takes (cfg: SourceConfig, *, stop_event: threading.Event | None).
SOURCES: dict[str, type[FrameSource]] = {
    "picamera2": Picamera2Source,
    "video": VideoSource,
    "images": ImageFolderSource,
    "synthetic": SyntheticSource,
}


def make_source(cfg: SourceConfig, *, stop_event: threading.Event | None = None) -> FrameSource:
    """The (unopened) source for `cfg.kind`; ConfigError if the kind or its settings are wrong.

    `stop_event` lets blocking waits inside the source (camera capture, pacing) end early
    on shutdown.
    """
    try:
        cls = SOURCES[cfg.kind]
    except KeyError:
        raise ConfigError(
            f"source.kind = {cfg.kind!r} is not a known frame source; use one of "
            + ", ".join(repr(k) for k in SOURCES)
        ) from None
    if cfg.width < 1 or cfg.height < 1 or cfg.fps <= 0:
        raise ConfigError(
            f"source.width/height/fps must be positive, got {cfg.width}x{cfg.height} at {cfg.fps} fps"
        )
    return cls(cfg, stop_event=stop_event)  # type: ignore[call-arg]


def make_retrying_source(cfg: SourceConfig, stop_event: threading.Event) -> RetryingSource:
    """make_source() wrapped in the back-off/reconnect logic the daemon runs with."""
    inner = make_source(cfg, stop_event=stop_event)
    return RetryingSource(inner, cfg.retry_initial_s, cfg.retry_max_s, stop_event=stop_event)


__all__ = [
    "SOURCES",
    "FrameSource",
    "ImageFolderSource",
    "Picamera2Source",
    "RetryingSource",
    "SourceError",
    "SourceExhausted",
    "SourceStopped",
    "SyntheticSource",
    "VideoSource",
    "make_retrying_source",
    "make_source",
]
