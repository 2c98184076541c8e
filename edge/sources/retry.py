"""Keep a flaky source alive: a camera that is busy, unplugged or hung comes back by itself.

The daemon reads through a RetryingSource so a camera fault becomes a logged, counted,
backed-off reconnect instead of a crash (the daemon's watchdog notices if frames stay away),
and a stop event lets SIGTERM end the wait at once.

What ends the frame loop and what is retried:
- SourceExhausted (a finite source's end, or the stop event) always passes through.
- Before the source has delivered its first frame, anything but a SourceError passes through:
  a wrong path or a missing library is a setup error the daemon names and exits on, and
  retrying cannot fix it.
- Once a frame has come through, the source is known to work, so any failure is a fault of
  the device or the machine (a decoder that cannot start a thread because the process hit
  its task limit, a file that vanished from a mount, a bug in a driver): logged with its
  traceback, counted in `errors`, backed off and reopened. A service that watches a
  driveway for months must outlive it; if it lasts, /healthz and systemd's watchdog say so.
"""

from __future__ import annotations

import logging
import threading
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
    `initial_s` after a good frame. Which exceptions pass through: see the module docstring.

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
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s} max_s={max_s}")
        self.inner = inner
        self.initial_s = initial_s
        self.max_s = max_s
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._sleep = sleep
        self._inner_open = False
        self._delivered = False  # a frame has come through: failures from now on are retried
        self._next_delay = initial_s
        self._pending_delay: float | None = None
        self.errors = 0  # failures since construction (the daemon's camera_errors)
        self.consecutive_errors = 0  # since the last good frame
        self.last_error: str | None = None  # with consecutive_errors > 0: why frames stay away

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Try the inner source once; a SourceError is logged and retried by read()."""
        self._try_open()

    def close(self) -> None:
        self._close_inner()

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
            except Exception as exc:  # noqa: BLE001 - sorted by _retryable
                if not self._retryable(exc):
                    raise
                self._failed("read", exc)
                continue
            self.consecutive_errors = 0
            self._next_delay = self.initial_s
            self._delivered = True
            return frame

    def _try_open(self) -> bool:
        try:
            self.inner.open()
        except Exception as exc:  # noqa: BLE001 - sorted by _retryable
            if not self._retryable(exc):
                raise
            self._failed("open", exc)
            return False
        self._inner_open = True
        return True

    def _retryable(self, exc: Exception) -> bool:
        """The policy in the module docstring: device faults always, anything else once running."""
        if isinstance(exc, SourceExhausted):
            return False
        return isinstance(exc, SourceError) or self._delivered

    def _failed(self, what: str, exc: Exception) -> None:
        """Count the fault, release the device, and schedule the next back-off."""
        self._close_inner()
        if self.stop_event.is_set():
            raise SourceStopped(f"stopped while the source was failing: {exc}") from exc
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        delay = self._next_delay
        self._next_delay = min(delay * 2.0, self.max_s)
        self._pending_delay = delay
        log.warning(
            "frame source %s failed (%s; %d in a row, %d total); retrying in %.1f s",
            what, exc, self.consecutive_errors, self.errors, delay,
            exc_info=not isinstance(exc, SourceError),  # not a known device fault: keep the trace
        )

    def _close_inner(self) -> None:
        """Close even when open() failed: it may have half-acquired the device."""
        self._inner_open = False
        try:
            self.inner.close()
        except Exception as exc:  # a broken device must not stop the retry loop
            log.warning("closing the frame source failed: %s", exc)

    def _pause(self, delay: float) -> None:
        if self._sleep is not None:
            self._sleep(delay)
        else:
            self.stop_event.wait(delay)

    def _check_stopped(self) -> None:
        if self.stop_event.is_set():
            raise SourceStopped("frame source stopped")
