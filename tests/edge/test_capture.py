"""FrameCapture: which frames are kept (uncertain, disagreement, random), with which proposals."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.autolabel import background
from edge.capture import BackgroundModel, FrameCapture, median_u8
from edge.config import CaptureConfig
from edge.events import Box
from tests.edge.conftest import mode

WALL = 1_700_000_000.0
H, W = 120, 160
CAR = (60, 40, 50, 24)  # x, y, w, h of the bright "car" in frames made by scene()


def make(tmp_path: Path, seed: int = 0, threshold: float = 0.5, **over: object) -> FrameCapture:
    """Uncertain band [0.3, 0.7] around the threshold 0.5; disagreement and random off."""
    base: dict[str, object] = dict(enabled=True, dir=str(tmp_path / "cap"), uncertain_margin=0.2,
                                   min_interval_s=0.0, disagreement=False, random_per_hour=0.0,
                                   background_every=1, background_frames=5, disagreement_every=1)
    base.update(over)
    return FrameCapture(CaptureConfig(**base), threshold, rng=random.Random(seed))  # type: ignore[arg-type]


def scene(seed: int, car: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """An empty grey street with a little sensor noise, and optionally a bright car."""
    img = (100 + np.random.default_rng(seed).integers(-4, 5, size=(H, W))).astype(np.uint8)
    if car is not None:
        x, y, w, h = car
        img[y : y + h, x : x + w] = 230
    return img


def sidecar(cap: FrameCapture, cid: str) -> dict:
    return json.loads((cap.store.folder / f"{cid}.json").read_text())


def written(cap: FrameCapture) -> list[str]:
    """Ids of the frames written so far, oldest first (the writer thread saves them)."""
    cap.flush()
    return [c["id"] for c in cap.store.list()]


def warm_background(cap: FrameCapture, n: int = 5) -> None:
    """Empty-street frames with confident "no car" scores: they fill the background only."""
    for i in range(n):
        assert cap.offer(scene(100 + i), i, WALL + i, 0.01, [], now=float(i)) is None
    assert cap.background.bg is not None


def test_disabled_does_nothing(tmp_path: Path) -> None:
    cap = make(tmp_path, enabled=False, random_per_hour=3_600_000.0)
    assert cap.offer(scene(0), 1, WALL, 0.5, [], now=1.0) is None
    assert cap.offer(scene(0), 2, WALL, 0.5, [], now=2.0) is None
    assert not (tmp_path / "cap").exists()


def test_uncertain_band_is_inclusive_and_rate_limited(tmp_path: Path) -> None:
    cap = make(tmp_path, min_interval_s=10.0)
    got = [cap.offer(scene(i), i, WALL + i, s, [], now=t) is not None
           for i, (s, t) in enumerate([(0.29, 0.0), (0.3, 1.0), (0.7, 2.0), (0.5, 10.9), (0.7, 11.0),
                                       (0.71, 30.0), (0.95, 40.0)])]
    assert got == [False, True, False, False, True, False, False]
    assert len(written(cap)) == 2
    assert cap.saved == {"uncertain": 2, "disagreement": 0, "random": 0}


def test_the_uncertain_band_follows_the_detectors_threshold(tmp_path: Path) -> None:
    cap = make(tmp_path, threshold=0.8, uncertain_margin=0.1)
    assert [cap.offer(scene(i), i, WALL + i, s, [], now=float(i)) for i, s in enumerate([0.5, 0.69, 0.75, 0.9, 0.91])] \
        == [None, None, "uncertain", "uncertain", None]
    off = make(tmp_path / "off", uncertain_margin=0.0)
    assert off.offer(scene(0), 0, WALL, 0.5, [], now=0.0) is None


def test_saved_frame_carries_the_model_boxes_as_proposals(tmp_path: Path, umask_000: None) -> None:
    cap = make(tmp_path)
    box = Box(60.0, 40.0, 50.0, 24.0, 0.55)
    img = scene(1, CAR)
    assert cap.offer(img, 42, WALL, np.float32(0.55), [box], now=1.0) == "uncertain"
    (cid,) = written(cap)
    assert cid.endswith("-00000042")
    side = sidecar(cap, cid)
    assert side["reason"] == "uncertain" and side["top_score"] == 0.55 and side["labels"] is None
    assert side["proposals"] == [{"x": 60.0, "y": 40.0, "width": 50.0, "height": 24.0, "score": 0.55,
                                  "source": "model"}]  # no background yet: the model's boxes only
    with Image.open(cap.store.image_path(cid)) as im:
        np.testing.assert_array_equal(np.asarray(im), img)
    assert mode(cap.store.folder) == 0o750 and mode(cap.store.image_path(cid)) == 0o640


def test_a_moving_car_the_model_missed_is_saved_with_its_motion_box(tmp_path: Path) -> None:
    cap = make(tmp_path, disagreement=True)
    warm_background(cap)
    assert cap.offer(scene(7, CAR), 10, WALL + 10, 0.05, [], now=10.0) == "disagreement"  # it moved
    (cid,) = written(cap)
    side = sidecar(cap, cid)
    assert side["reason"] == "disagreement"
    (prop,) = side["proposals"]
    assert prop["source"] == "motion"
    x, y, w, h = CAR
    assert abs(prop["x"] - x) <= 4 and abs(prop["y"] - y) <= 4
    assert abs(prop["width"] - w) <= 6 and abs(prop["height"] - h) <= 6
    # The same disagreement on the next frames is not saved again (a car standing in view).
    assert cap.offer(scene(8, CAR), 11, WALL + 11, 0.05, [], now=11.0) is None
    # Model and motion agree on the car: nothing to look at.
    agree = [Box(float(x), float(y), float(w), float(h), 0.9)]
    assert cap.offer(scene(9, CAR), 12, WALL + 12, 0.9, agree, now=12.0) is None


def test_agreeing_model_and_motion_are_one_proposal_marked_both(tmp_path: Path) -> None:
    cap = make(tmp_path)
    warm_background(cap)
    x, y, w, h = CAR
    assert cap.offer(scene(7, CAR), 10, WALL + 10, 0.5, [Box(float(x), float(y), float(w), float(h), 0.5)],
                     now=10.0) == "uncertain"
    (cid,) = written(cap)
    assert [p["source"] for p in sidecar(cap, cid)["proposals"]] == ["both"]


def test_disagreement_checks_only_every_nth_frame_and_when_a_save_may_follow(tmp_path: Path,
                                                                            monkeypatch) -> None:
    import edge.autolabel

    calls = []
    real = edge.autolabel.propose
    monkeypatch.setattr(edge.autolabel, "propose",
                        lambda *a, **k: calls.append(threading.current_thread().name) or real(*a, **k))
    cap = make(tmp_path, disagreement=True, disagreement_every=4, min_interval_s=1000.0)
    warm_background(cap, 4)  # 4 offers, one check
    assert len(calls) == 1
    for i in range(8):
        cap.offer(scene(50 + i), 10 + i, WALL + i, 0.01, [], now=10.0 + i)
    assert len(calls) == 3
    assert all(name != "capture-writer" for name in calls)
    assert cap.offer(scene(70, CAR), 30, WALL + 30, 0.5, [], now=30.0) is not None  # uncertain: saved
    cap.flush()
    assert calls[-1] == "capture-writer", "an uncertain frame's proposals are made off the frame loop"
    n = len(calls)
    for i in range(8):  # within min_interval_s: no save possible, so no check either
        cap.offer(scene(80 + i, CAR), 40 + i, WALL + 40 + i, 0.01, [], now=40.0 + i)
    assert len(calls) == n


def test_random_trickle_follows_its_rate(tmp_path: Path) -> None:
    """1800 per hour with a frame a second: each frame has a 1 in 2 chance."""
    cap = make(tmp_path, random_per_hour=1800.0, uncertain_margin=0.0)
    chosen = 0
    for i in range(200):
        chosen += cap.offer(scene(i % 5), i, WALL + i, 0.0, [], now=float(i)) == "random"
        cap.flush()  # one at a time: none dropped for a busy writer
    assert 70 <= chosen <= 130, chosen
    assert cap.saved["random"] == chosen == len(written(cap))
    none = make(tmp_path / "off", random_per_hour=0.0, uncertain_margin=0.0)
    assert all(none.offer(scene(0), i, WALL + i, 0.0, [], now=float(i)) is None for i in range(50))


def test_background_is_the_median_of_spread_out_samples() -> None:
    bg = BackgroundModel(every=3, size=3)
    # Samples are frames 0, 3, 6, 9 (the 99s are never sampled); the oldest (10) has left the
    # window of 3, and the bright car in sample 6 (200) does not stay in the median.
    frames = [np.full((4, 4), v, np.uint8) for v in (10, 99, 99, 20, 99, 99, 200, 99, 99, 30)]
    for f in frames:
        bg.offer(f)
    assert bg.bg is not None
    np.testing.assert_array_equal(bg.bg, np.full((4, 4), 30, np.uint8))  # median of 20, 200, 30


def test_the_fast_median_equals_autolabels_background() -> None:
    rng = np.random.default_rng(3)
    for n in (3, 4, 5, 8, 9, 16):
        samples = list(rng.integers(0, 256, (n, 24, 32), dtype=np.uint8))
        np.testing.assert_array_equal(median_u8(samples), background(samples))


def test_the_folder_never_fills_up(tmp_path: Path) -> None:
    """A size cap far below what is offered: the folder stays under it, newest frames kept."""
    cap = make(tmp_path, max_bytes=1_000_000, random_per_hour=3_600_000.0)
    ids = []
    for i in range(20):  # random frames from the second on (the first has no time span yet)
        if cap.offer(np.random.default_rng(i).integers(0, 256, (240, 320), dtype=np.uint8), i, WALL + i, 0.0, [],
                     now=float(i)):
            ids.append(written(cap)[-1])
    on_disk = sum(p.stat().st_size for p in cap.store.folder.iterdir())
    assert on_disk <= 1_000_000
    left = [c["id"] for c in cap.store.list()]
    assert left == ids[-len(left):] and 5 <= len(left) < 20


def test_a_slow_disk_never_holds_the_frame_loop(tmp_path: Path, monkeypatch) -> None:
    """The writer is busy (an SD card's fsync): offers return at once, a few wait, the rest
    are dropped and counted; close() writes what waits."""
    cap = make(tmp_path, random_per_hour=3_600_000.0)
    release = threading.Event()
    real_add = cap.store.add
    monkeypatch.setattr(cap.store, "add", lambda *a, **k: release.wait(10) and real_add(*a, **k))
    assert cap.offer(scene(0), 0, WALL, 0.0, [], now=0.0) is None  # the first frame spans no time
    t0 = time.monotonic()
    reasons = [cap.offer(scene(i), i, WALL + i, 0.0, [], now=float(i)) for i in range(1, 21)]
    assert time.monotonic() - t0 < 2.0
    assert cap.dropped > 0 and reasons.count("random") + cap.dropped == 20
    release.set()
    cap.close()
    assert len(cap.store.list()) == reasons.count("random")


def test_a_failing_disk_is_logged_and_capture_goes_on(tmp_path: Path, monkeypatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cap = make(tmp_path)
    real_add = cap.store.add
    fail = [True]

    def add(*a: object, **k: object) -> str | None:
        if fail.pop() if fail else False:
            raise OSError(28, "No space left on device")
        return real_add(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(cap.store, "add", add)
    with caplog.at_level(logging.ERROR, logger="edge.capture"):
        cap.offer(scene(1), 1, WALL + 1, 0.5, [], now=1.0)
        cap.flush()
    assert any("saving a frame" in r.getMessage() for r in caplog.records)
    cap.offer(scene(2), 2, WALL + 2, 0.5, [], now=2.0)
    assert len(written(cap)) == 1


def test_capture_bench_prints_the_loops_costs(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.capture_bench import main

    assert main(["--frames", "60"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["source"] == "synthetic" and rep["frames"] == 60
    assert 0 < rep["background_ms_per_frame"] < rep["disagreement_check_ms"]["p50"]
    assert rep["offer_ms_per_frame"] > 0 and rep["write_ms"]["runs"] == 50
