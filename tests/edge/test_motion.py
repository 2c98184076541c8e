"""MotionGate: skip inference on unchanged frames, but never for longer than max_skip_s."""

from __future__ import annotations

import numpy as np

from edge.motion import MotionGate


def scene(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, size=(240, 320), dtype=np.uint8)


def test_first_frame_is_always_inferred() -> None:
    gate = MotionGate(threshold=1000.0, max_skip_s=1e9)  # nothing could count as motion
    assert gate.should_infer(scene(), 0.0) is True


def test_unchanged_frames_are_skipped() -> None:
    gate = MotionGate(threshold=2.0, max_skip_s=60.0)
    img = scene()
    assert gate.should_infer(img, 0.0)
    for t in (0.1, 0.2, 0.3, 5.0):
        assert gate.should_infer(img.copy(), t) is False
    assert gate.last_change == 0.0


def test_changed_frame_is_inferred() -> None:
    gate = MotionGate(threshold=2.0, max_skip_s=60.0)
    img = scene()
    gate.should_infer(img, 0.0)
    moved = img.copy()
    moved[80:160, 100:220] = 255  # a bright car-sized block appears
    assert gate.should_infer(moved, 0.1) is True
    assert gate.last_change >= 2.0
    # The moved frame is now the reference: repeating it is no longer motion.
    assert gate.should_infer(moved.copy(), 0.2) is False


def test_threshold_separates_small_and_large_changes() -> None:
    img = np.full((240, 320), 100, np.uint8)
    gate = MotionGate(threshold=5.0, max_skip_s=60.0)
    gate.should_infer(img, 0.0)
    assert gate.should_infer(img + 4, 0.1) is False  # mean change 4 < 5
    assert gate.last_change == 4.0
    assert gate.should_infer(img + 6, 0.2) is True  # mean change 6 >= 5


def test_darkening_counts_as_motion_too() -> None:
    """The difference must be absolute (int16), not wrapped uint8 arithmetic."""
    img = np.full((240, 320), 100, np.uint8)
    gate = MotionGate(threshold=5.0, max_skip_s=60.0)
    gate.should_infer(img, 0.0)
    assert gate.should_infer(img - 10, 0.1) is True
    assert gate.last_change == 10.0
    # And a tiny darkening must not wrap around to a huge change.
    gate2 = MotionGate(threshold=5.0, max_skip_s=60.0)
    gate2.should_infer(img, 0.0)
    assert gate2.should_infer(img - 1, 0.1) is False


def test_slow_drift_accumulates_against_last_inferred_frame() -> None:
    base = np.full((240, 320), 100, np.uint8)
    gate = MotionGate(threshold=3.0, max_skip_s=60.0)
    gate.should_infer(base, 0.0)
    results = [gate.should_infer(base + k, 0.1 * k) for k in (1, 2, 3)]
    assert results == [False, False, True]


def test_max_skip_s_forces_inference() -> None:
    gate = MotionGate(threshold=2.0, max_skip_s=5.0)
    img = scene()
    assert gate.should_infer(img, 100.0)
    assert gate.should_infer(img, 104.9) is False
    assert gate.should_infer(img, 105.0) is True  # 5 s since the last inference
    assert gate.should_infer(img, 109.0) is False  # the clock restarted at 105
    assert gate.should_infer(img, 110.0) is True


def test_size_change_forces_inference() -> None:
    gate = MotionGate(threshold=2.0, max_skip_s=60.0)
    gate.should_infer(np.zeros((240, 320), np.uint8), 0.0)
    assert gate.should_infer(np.zeros((120, 160), np.uint8), 0.1) is True
