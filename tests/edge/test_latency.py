"""RollingStats: percentiles in milliseconds, a bounded window, and fps between calls."""

from __future__ import annotations

import numpy as np
import pytest

from edge.latency import TRACKED, RollingStats


def test_percentiles_match_numpy_in_milliseconds() -> None:
    rng = np.random.default_rng(1)
    seconds = rng.gamma(2.0, 0.01, size=500)
    st = RollingStats(window=1000)
    for s in seconds:
        st.add("infer", float(s))
    out = st.summary()
    assert set(out) == {"infer"}, "stages without samples are left out"
    ms = seconds * 1000.0
    want = np.percentile(ms, [50, 95, 99])
    got = out["infer"]
    assert got["p50"] == pytest.approx(want[0], abs=1e-3)
    assert got["p95"] == pytest.approx(want[1], abs=1e-3)
    assert got["p99"] == pytest.approx(want[2], abs=1e-3)
    assert got["max"] == pytest.approx(ms.max(), abs=1e-3)
    assert got["n"] == 500


def test_known_small_sample() -> None:
    st = RollingStats()
    for ms in range(1, 101):  # 1..100 ms
        st.add("total", ms / 1000.0)
    s = st.summary()["total"]
    assert s["p50"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert s["max"] == pytest.approx(100.0)


def test_window_keeps_only_the_latest_samples() -> None:
    st = RollingStats(window=10)
    for i in range(100):
        st.add("publish", 1.0 if i < 90 else 0.001)  # old slow samples, then 10 fast ones
    s = st.summary()["publish"]
    assert s["n"] == 10
    assert s["max"] == pytest.approx(1.0)  # 0.001 s = 1 ms
    assert s["p99"] == pytest.approx(1.0)


def test_stages_are_separate() -> None:
    st = RollingStats()
    st.add("infer", 0.010)
    st.add("preprocess", 0.002)
    out = st.summary()
    assert out["infer"]["max"] == pytest.approx(10.0)
    assert out["preprocess"]["max"] == pytest.approx(2.0)
    assert set(out) <= set(TRACKED)


def test_fps_is_frames_since_previous_call() -> None:
    st = RollingStats()
    assert st.fps(100.0) == 0.0  # the first call starts the window
    st.frames += 30
    assert st.fps(102.0) == pytest.approx(15.0)
    st.frames += 10
    assert st.fps(106.0) == pytest.approx(2.5)  # only the 10 frames of the last 4 s
    assert st.fps(106.0) == 0.0  # zero-length window does not divide by zero
