"""The one shape every frame source produces, so the pipeline never knows the camera."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    """A greyscale frame and when the sensor saw it.

    `timestamp_ns` is on CLOCK_MONOTONIC (what libcamera's SensorTimestamp uses), so
    frame age = time.monotonic_ns() - timestamp_ns is real end-to-end latency.
    """

    image: np.ndarray  # uint8, shape (H, W), C-contiguous
    timestamp_ns: int
    frame_id: int
    wall_time: float = field(default_factory=time.time)  # epoch seconds, for events/logs
    # Time the reader blocked for this frame, back-offs included: set by the one reader that
    # sees the whole wait (the daemon, around RetryingSource.read), never by the sources.
    capture_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim != 2:
            raise ValueError(
                f"Frame.image must be uint8 greyscale HxW, got dtype={self.image.dtype} "
                f"shape={self.image.shape}"
            )
