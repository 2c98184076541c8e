"""RetryingSource: back-off schedule, counters, pass-through errors, stopping while backing off."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from edge.config import ConfigError, SourceConfig
from edge.frame import Frame
from edge.sources.base import FrameSource, SourceError, SourceExhausted
from edge.sources.picamera2_source import Picamera2Source
from edge.sources.retry import RetryingSource, SourceStopped
from tests.fakes.picamera2 import install_fake_picamera2


class ScriptedSource(FrameSource):
    """Plays a script of outcomes: "ok" (a frame), "err" (SourceError), or an exception to raise.

    `open_script` is consumed by open(), `read_script` by read(); both default to "ok" when
    exhausted. Records every call so tests can check close-before-reopen.
    """

    def __init__(self, read_script: list[object] = (), open_script: list[object] = ()) -> None:
        self.read_script = list(read_script)
        self.open_script = list(open_script)
        self.calls: list[str] = []
        self.next_id = 0

    @staticmethod
    def _play(outcome: object, what: str) -> None:
        if outcome == "err":
            raise SourceError(f"scripted {what} failure")
        if isinstance(outcome, BaseException):
            raise outcome

    def open(self) -> None:
        self.calls.append("open")
        self._play(self.open_script.pop(0) if self.open_script else "ok", "open")

    def read(self) -> Frame:
        self.calls.append("read")
        self._play(self.read_script.pop(0) if self.read_script else "ok", "read")
        self.next_id += 1
        return Frame(np.zeros((4, 4), np.uint8), time.monotonic_ns(), self.next_id - 1)

    def close(self) -> None:
        self.calls.append("close")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retrying(inner: FrameSource, clock: FakeClock, initial: float = 0.5, maximum: float = 4.0,
             stop_event: threading.Event | None = None) -> RetryingSource:
    return RetryingSource(inner, initial, maximum, stop_event=stop_event, sleep=clock.sleep)


def test_backoff_doubles_caps_and_resets_after_a_good_frame() -> None:
    clock = FakeClock()
    inner = ScriptedSource(read_script=["err"] * 6 + ["ok", "err", "ok"])
    src = retrying(inner, clock)
    src.open()
    src.read()
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert (src.errors, src.consecutive_errors) == (6, 0)
    src.read()
    assert clock.sleeps[6:] == [0.5]  # reset by the good frame in between
    assert src.errors == 7


def test_counts_logs_and_closes_before_reopening(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    inner = ScriptedSource(read_script=["ok", "err", "err", "ok"])
    src = retrying(inner, clock)
    src.open()
    src.read()
    with caplog.at_level(logging.WARNING, logger="edge.sources.retry"):
        frame = src.read()
    assert frame.frame_id == 1
    assert inner.calls == ["open", "read", "read", "close", "open", "read", "close", "open", "read"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "scripted read failure" in warnings[0].getMessage()
    assert src.last_error == "scripted read failure"


def test_consecutive_errors_visible_while_failing() -> None:
    clock = FakeClock()
    seen: list[int] = []
    inner = ScriptedSource(read_script=["err", "err", "err", "ok"])
    src = retrying(inner, clock)

    def sleep(seconds: float) -> None:
        seen.append(src.consecutive_errors)
        clock.sleep(seconds)

    src._sleep = sleep
    src.open()
    src.read()
    assert seen == [1, 2, 3]
    assert src.consecutive_errors == 0 and src.errors == 3


def test_failed_open_is_retried_by_read_without_blocking_open() -> None:
    clock = FakeClock()
    inner = ScriptedSource(open_script=["err", "err", "ok"])
    src = retrying(inner, clock)
    src.open()  # must not raise nor sleep: the daemon keeps starting up
    assert clock.sleeps == [] and src.errors == 1
    frame = src.read()
    assert frame.frame_id == 0
    assert clock.sleeps == [0.5, 1.0]
    assert inner.calls == ["open", "close", "open", "close", "open", "read"]


@pytest.mark.parametrize("exc", [SourceExhausted("end of file"), ConfigError("source.path missing"),
                                 RuntimeError("a bug on the very first read")])
def test_exhaustion_and_setup_errors_pass_through(exc: Exception) -> None:
    clock = FakeClock()
    inner = ScriptedSource(read_script=[exc])
    src = retrying(inner, clock)
    src.open()
    with pytest.raises(type(exc), match=str(exc)):
        src.read()
    assert clock.sleeps == [] and src.errors == 0


@pytest.mark.parametrize("exc", [RuntimeError("can't start new thread"), MemoryError(),
                                 ConfigError("source.path = 'clip.avi' does not exist")])
def test_once_frames_flowed_any_failure_is_retried_not_raised(exc: Exception,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A working source that fails (task limit hit, file gone from a mount) must not end the
    service: it is a fault to back off from, counted, with the traceback in the log."""
    clock = FakeClock()
    inner = ScriptedSource(read_script=["ok", exc, "ok"], open_script=["ok", exc, "ok"])
    src = retrying(inner, clock)
    src.open()
    src.read()
    with caplog.at_level(logging.WARNING, logger="edge.sources.retry"):
        assert src.read().frame_id == 1
    assert src.errors == 2 and clock.sleeps == [0.5, 1.0]  # the read failed, then the reopen
    assert inner.calls == ["open", "read", "read", "close", "open", "close", "open", "read"]
    assert all(r.exc_info for r in caplog.records)
    assert src.last_error is not None and type(exc).__name__ in src.last_error


def test_config_error_from_open_is_not_retried() -> None:
    inner = ScriptedSource(open_script=[ConfigError("picamera2 cannot be imported")])
    src = retrying(inner, FakeClock())
    with pytest.raises(ConfigError):
        src.open()
    assert src.errors == 0


def test_stop_requested_during_backoff_raises_stopped_without_reopening() -> None:
    clock = FakeClock()
    stop = threading.Event()
    inner = ScriptedSource(read_script=["err"] * 10)
    src = retrying(inner, clock, stop_event=stop)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        stop.set()  # SIGTERM arrives while backing off

    src._sleep = sleep
    src.open()
    with pytest.raises(SourceStopped):
        src.read()
    assert isinstance(SourceStopped(), SourceExhausted)
    assert inner.calls == ["open", "read", "close"]


def test_stop_event_ends_a_long_real_backoff_quickly() -> None:
    stop = threading.Event()
    inner = ScriptedSource(read_script=["err"] * 10)
    src = RetryingSource(inner, initial_s=30.0, max_s=60.0, stop_event=stop)  # real waits
    src.open()
    threading.Timer(0.1, stop.set).start()
    start = time.monotonic()
    with pytest.raises(SourceStopped):
        src.read()
    assert time.monotonic() - start < 1.0


def test_read_after_stop_raises_stopped() -> None:
    stop = threading.Event()
    src = RetryingSource(ScriptedSource(), 0.1, 1.0, stop_event=stop)
    src.open()
    src.read()
    stop.set()
    with pytest.raises(SourceStopped):
        src.read()


def test_rejects_nonsense_backoff() -> None:
    with pytest.raises(ValueError):
        RetryingSource(ScriptedSource(), 0.0, 1.0)
    with pytest.raises(ValueError):
        RetryingSource(ScriptedSource(), 2.0, 1.0)


def camera_cfg(**over: object) -> SourceConfig:
    base = dict(kind="picamera2", width=64, height=48, capture_timeout_s=0.1,
                retry_initial_s=0.01, retry_max_s=0.05)
    base.update(over)
    return SourceConfig(**base)  # type: ignore[arg-type]


def test_camera_unplugged_and_replugged_recovers_without_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = install_fake_picamera2(monkeypatch, dead_after=3)
    cfg = camera_cfg()
    src = RetryingSource(Picamera2Source(cfg), cfg.retry_initial_s, cfg.retry_max_s)
    src.open()
    ids = [src.read().frame_id for _ in range(3)]
    threading.Timer(0.5, rig.revive).start()  # cable back after a few timeouts
    ids += [src.read().frame_id for _ in range(3)]
    src.close()
    assert ids == [0, 1, 2, 3, 4, 5]
    assert src.errors >= 2 and src.consecutive_errors == 0
    assert rig.unreleased() == []
    assert rig.open_instances() == []
    assert len(rig.instances) == src.errors + 1  # one camera object per (re)open, each closed


def test_daemon_stops_within_two_seconds_while_camera_is_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM with a hung camera: capture waits are sliced, back-offs wait on the stop event."""
    rig = install_fake_picamera2(monkeypatch, dead_after=0)
    stop = threading.Event()
    cfg = camera_cfg(capture_timeout_s=5.0, retry_initial_s=10.0, retry_max_s=30.0)
    src = RetryingSource(Picamera2Source(cfg, stop_event=stop), 10.0, 30.0, stop_event=stop)
    src.open()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    with pytest.raises(SourceStopped):
        src.read()
    src.close()
    assert time.monotonic() - start < 1.0
    assert rig.unreleased() == [] and rig.open_instances() == []
