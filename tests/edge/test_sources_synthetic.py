"""SyntheticSource: deterministic moving rectangles for mechanics tests."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import SourceConfig
from edge.sources.base import SourceExhausted
from edge.sources.synthetic import SyntheticSource


def cfg(**over: object) -> SourceConfig:
    base = dict(kind="synthetic", width=160, height=120, pace=False)
    base.update(over)
    return SourceConfig(**base)  # type: ignore[arg-type]


def frames(src: SyntheticSource, n: int) -> list:
    src.open()
    out = [src.read() for _ in range(n)]
    src.close()
    return out


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    a = frames(SyntheticSource(cfg(), seed=3), 4)
    b = frames(SyntheticSource(cfg(), seed=3), 4)
    c = frames(SyntheticSource(cfg(), seed=4), 4)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x.image, y.image)
        assert not np.array_equal(x.image, z.image)
    assert all(f.image.shape == (120, 160) and f.image.dtype == np.uint8 for f in a)
    assert [f.frame_id for f in a] == [0, 1, 2, 3]
    assert all(q.timestamp_ns > p.timestamp_ns for p, q in zip(a, a[1:]))


def test_rectangles_are_bright_and_move() -> None:
    src = SyntheticSource(cfg())
    out = frames(src, 12)
    for f in (out[0], out[11]):
        boxes = src.boxes(f.frame_id)
        assert boxes
        mask = np.zeros(f.image.shape, bool)
        for x, y, w, h in boxes:
            mask[y : y + h, x : x + w] = True
        assert f.image[mask].mean() > f.image[~mask].mean() + 80
    assert src.boxes(0) != src.boxes(11)
    for x, y, w, h in src.boxes(5):
        assert 0 <= x and x + w <= 160 and 0 <= y and y + h <= 120


def test_render_is_a_pure_function_of_the_frame_id() -> None:
    src = SyntheticSource(cfg(), seed=9)
    out = frames(src, 3)
    np.testing.assert_array_equal(src.render(2), out[2].image)


def test_max_frames_exhausts() -> None:
    src = SyntheticSource(cfg(), max_frames=2)
    src.open()
    src.read(), src.read()
    with pytest.raises(SourceExhausted):
        src.read()


def test_paced_at_source_fps() -> None:
    out = frames(SyntheticSource(cfg(pace=True, fps=25.0)), 5)
    elapsed = (out[-1].timestamp_ns - out[0].timestamp_ns) / 1e9
    assert 0.12 < elapsed < 1.0  # 4 intervals of 40 ms
