"""FrameCapture: which frames are kept, what is written, and the folder cap."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.capture import FrameCapture
from edge.config import CaptureConfig
from edge.events import Box
from tests.edge.conftest import mode

WALL = 1_700_000_000.0
BOX = Box(10.5, -3.25, 100.0, 40.0, 0.55)


def make(tmp_path: Path, **over: object) -> FrameCapture:
    base: dict[str, object] = dict(enabled=True, dir=str(tmp_path / "cap"), every_s=0.0,
                                   uncertain_low=0.3, uncertain_high=0.7, max_files=100,
                                   uncertain_min_interval_s=0.0)
    base.update(over)
    return FrameCapture(CaptureConfig(**base))  # type: ignore[arg-type]


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(60, 80), dtype=np.uint8)


def pngs(cap: FrameCapture) -> list[Path]:
    return sorted(cap.dir.glob("*.png"))


def test_disabled_does_nothing(tmp_path: Path) -> None:
    cap = make(tmp_path, enabled=False, every_s=1.0)
    assert cap.reason(0.5, 100.0) is None
    assert cap.maybe_save(image(), 1, WALL, 0.5, [BOX], {"frame": True}, now=100.0) is None
    assert not (tmp_path / "cap").exists()
    assert cap.saved == 0


def test_uncertain_band_is_inclusive_and_bounded(tmp_path: Path) -> None:
    cap = make(tmp_path)
    assert cap.reason(0.3, 0.0) == "uncertain"
    assert cap.reason(0.5, 0.0) == "uncertain"
    assert cap.reason(0.7, 0.0) == "uncertain"
    assert cap.reason(0.29, 0.0) is None
    assert cap.reason(0.71, 0.0) is None
    assert cap.reason(0.99, 0.0) is None


def test_periodic_every_s(tmp_path: Path) -> None:
    cap = make(tmp_path, every_s=10.0, uncertain_low=1.0, uncertain_high=1.0)  # band effectively off
    got = [cap.reason(0.0, t) for t in (5.0, 6.0, 14.9, 15.0, 20.0, 25.0)]
    # The first frame is saved whatever the clock reads; then one every 10 s.
    assert got == ["periodic", None, None, "periodic", None, "periodic"]


def test_periodic_first_frame_even_when_clock_starts_near_zero(tmp_path: Path) -> None:
    cap = make(tmp_path, every_s=60.0, uncertain_low=1.0, uncertain_high=1.0)
    assert cap.reason(0.0, 0.5) == "periodic"


def test_png_and_json_sidecar_are_written_and_read_back(tmp_path: Path) -> None:
    cap = make(tmp_path)
    img = image(3)
    path = cap.maybe_save(img, 42, WALL, np.float32(0.55), [BOX], {"frame": True, "door": False}, now=1.0)
    assert path is not None and path.exists() and path.suffix == ".png"
    assert path.name.endswith("-00000042.png")
    with Image.open(path) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), img)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side == {
        "frame_id": 42, "time": WALL, "reason": "uncertain", "top_score": 0.55,
        "boxes": [{"x": 10.5, "y": -3.25, "width": 100.0, "height": 40.0, "score": 0.55}],
        "presence": {"frame": True, "door": False}, "label": None,
    }
    assert cap.saved == 1
    assert not list(cap.dir.glob("*.tmp")), "temporary files must be renamed into place"


def test_confident_frames_are_not_saved(tmp_path: Path) -> None:
    cap = make(tmp_path)
    assert cap.maybe_save(image(), 1, WALL, 0.95, [], {}, now=1.0) is None
    assert cap.maybe_save(image(), 2, WALL, 0.05, [], {}, now=2.0) is None
    assert pngs(cap) == []


def test_cropped_view_is_saved_correctly(tmp_path: Path) -> None:
    """The pipeline hands over crop views (non-contiguous); the PNG must hold exactly them."""
    cap = make(tmp_path)
    big = image(7)
    view = big[5:45, 10:70]
    assert not view.flags["C_CONTIGUOUS"]
    path = cap.maybe_save(view, 1, WALL, 0.5, [], {}, now=1.0)
    assert path is not None
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), view)


def test_max_files_caps_the_folder_and_counts_existing_files(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cap = make(tmp_path, max_files=3)
    saved = [cap.maybe_save(image(i), i, WALL + i, 0.5, [], {}, now=float(i)) for i in range(3)]
    assert all(p is not None for p in saved)
    with caplog.at_level(logging.WARNING, logger="edge.capture"):
        for i in range(3, 8):
            assert cap.maybe_save(image(i), i, WALL + i, 0.5, [], {}, now=float(i)) is None
    assert len(pngs(cap)) == 3 and cap.saved == 3
    full = [r for r in caplog.records if "max_files" in r.getMessage()]
    assert len(full) == 1, "the full-folder warning is logged once, not per frame"

    # A restart sees the frames already there and stays within the cap.
    again = make(tmp_path, max_files=4)
    assert again.maybe_save(image(9), 9, WALL + 9, 0.5, [], {}, now=9.0) is not None
    assert again.maybe_save(image(10), 10, WALL + 10, 0.5, [], {}, now=10.0) is None
    assert len(pngs(again)) == 4
    assert len(list(again.dir.glob("*.json"))) == 4


def test_uncertain_saves_are_rate_limited(tmp_path: Path) -> None:
    """A doubtful car parked for minutes must not write 15 PNGs a second."""
    cap = make(tmp_path, uncertain_min_interval_s=10.0)
    assert cap.reason(0.5, now=100.0) == "uncertain"
    assert cap.reason(0.5, now=105.0) is None
    assert cap.reason(0.5, now=110.0) == "uncertain"


def test_capture_folder_and_frames_are_private_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    cap = make(tmp_path, dir=str(tmp_path / "var" / "capture"))
    path = cap.maybe_save(image(), 7, WALL, 0.5, [BOX], {"frame": True}, now=100.0)
    assert path is not None
    assert mode(tmp_path / "var") == 0o750 and mode(cap.dir) == 0o750
    assert mode(path) == 0o640 and mode(path.with_suffix(".json")) == 0o640
