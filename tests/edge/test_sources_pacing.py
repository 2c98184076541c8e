"""Pacer: fixed-rate release like a camera, no burst after a stall; interruptible waits."""

from __future__ import annotations

import threading
import time

import pytest

from edge.sources._util import Pacer, wait_or_stop


def test_fixed_rate_then_resync_after_a_stall() -> None:
    now = [0.0]
    stop = threading.Event()
    stop.set()  # make the waits return at once; the pacer's arithmetic is what is tested
    pacer = Pacer(10.0, stop, clock=lambda: now[0])
    assert pacer.wait() == 0.0  # first frame immediately
    now[0] = 0.02
    assert pacer.wait() == pytest.approx(0.08)  # due at 0.1
    now[0] = 0.5  # consumer stalled for several periods
    assert pacer.wait() == 0.0
    assert pacer.wait() == pytest.approx(0.1)  # next one a full period later, not a burst


def test_wait_or_stop_is_cut_short_by_the_event() -> None:
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    start = time.monotonic()
    assert wait_or_stop(5.0, stop) is True
    assert time.monotonic() - start < 1.0
    assert wait_or_stop(0.0, None) is False


def test_rejects_zero_fps() -> None:
    with pytest.raises(ValueError):
        Pacer(0.0)
