"""Keep a flaky source alive: a camera that is busy, unplugged or hung comes back by itself.

The daemon reads through a RetryingSource so a camera fault becomes a logged, counted,
backed-off reconnect instead of a crash, while `last_frame_monotonic` lets the watchdog
notice that no frames are arriving, and a stop event lets SIGTERM end the wait at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.frame import Frame
from edge.sources.base import FrameSource, SourceError, SourceExhausted

log = logging.getLogger(__name__)


class SourceStopped(SourceExhausted):
    """The stop event was set: no more frames will be delivered.

    A SourceExhausted, so a loop that ends on exhaustion also ends on stop.
    """


class RetryingSource(FrameSource):
    """Wraps any FrameSource; on SourceError closes it, backs off exponentially, reopens.

    Back-off: `initial_s`, doubling per consecutive failure, capped at `max_s`, back to
    `initial_s` after a good frame. SourceExhausted and non-SourceError exceptions (bad
    configuration) pass through untouched: retrying cannot fix them.

    Waits go through `stop_event.wait()` so that setting the event ends a back-off at
    once; `sleep` replaces that wait in tests (the stop event is still checked after it).
    """

    def __init__(
        self,
        inner: FrameSource,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        *,
        stop_event: threading.Event | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s} max_s={max_s}")
        self.inner = inner
        self.initial_s = initial_s
        self.max_s = max_s
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._sleep = sleep
        self._clock = clock
        self._inner_open = False
        self._next_delay = initial_s
        self._pending_delay: float | None = None
        self.errors = 0  # SourceErrors since construction
        self.consecutive_errors = 0  # since the last good frame
        self.last_error: str | None = None
        # Starts at construction so a camera that never delivers still trips the watchdog.
        self.last_frame_monotonic: float = clock()
        self.delays: list[float] = []  # back-offs actually taken, newest last (bounded)

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Try the inner source once; a SourceError is logged and retried by read()."""
        self.last_frame_monotonic = self._clock()
        self._try_open()

    def close(self) -> None:
        self._close_inner()

    def stop(self) -> None:
        """Ask a read() that is backing off (or about to) to give up with SourceStopped."""
        self.stop_event.set()

    # -- reading -----------------------------------------------------------------------

    def read(self) -> Frame:
        while True:
            self._check_stopped()
            if self._pending_delay is not None:
                self._pause(self._pending_delay)
                self._pending_delay = None
                continue  # re-check the stop event before touching the device again
            if not self._inner_open and not self._try_open():
                continue
            try:
                frame = self.inner.read()
            except SourceError as exc:
                self._failed("read", exc)
                continue
            self.consecutive_errors = 0
            self._next_delay = self.initial_s
            self.last_frame_monotonic = self._clock()
            return frame

    def _try_open(self) -> bool:
        try:
            self.inner.open()
        except SourceError as exc:
            self._failed("open", exc)
            return False
        self._inner_open = True
        return True

    def _failed(self, what: str, exc: SourceError) -> None:
        """Count the fault, release the device, and schedule the next back-off."""
        self._close_inner()
        if self.stop_event.is_set():
            raise SourceStopped(f"stopped while the source was failing: {exc}") from exc
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = str(exc)
        delay = self._next_delay
        self._next_delay = min(delay * 2.0, self.max_s)
        self._pending_delay = delay
        log.warning(
            "frame source %s failed (%s; %d in a row, %d total); retrying in %.1f s",
            what, exc, self.consecutive_errors, self.errors, delay,
        )

    def _close_inner(self) -> None:
        """Close even when open() failed: it may have half-acquired the device."""
        self._inner_open = False
        try:
            self.inner.close()
        except Exception as exc:  # a broken device must not stop the retry loop
            log.warning("closing the frame source failed: %s", exc)

    def _pause(self, delay: float) -> None:
        self.delays.append(delay)
        del self.delays[:-100]
        if self._sleep is not None:
            self._sleep(delay)
        else:
            self.stop_event.wait(delay)

    def _check_stopped(self) -> None:
        if self.stop_event.is_set():
            raise SourceStopped("frame source stopped")
