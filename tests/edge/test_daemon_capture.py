"""Capture through the real daemon on the shared highway clip ("a user's camera"): frames
worth labelling are saved with model and motion proposals, under the size cap, and the
labelled ones export as a YOLO folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.capture_store import CaptureStore
from tests.edge.test_daemon import ROOT, write_config

pytestmark = pytest.mark.timeout(300)

CAP_BYTES = 4_000_000


def test_daemon_captures_the_clip_with_proposals_and_exports_labels(trained_model_dir: Path, video_path: Path,
                                                                     tmp_path: Path) -> None:
    cap_dir = tmp_path / "capture"
    cfg = write_config(tmp_path / "c.toml", trained_model_dir, tmp_path, video_path, http={"enabled": False},
                       source={"pace": False, "loop": False},
                       # uncertain frames off: the quick CI model scores near its threshold on most
                       # frames, which would leave no frame to the disagreement rule under test
                       capture={"enabled": True, "dir": str(cap_dir), "max_bytes": CAP_BYTES, "min_interval_s": 0.0,
                                "uncertain_margin": 0.0, "disagreement_every": 1, "background_every": 5,
                                "background_frames": 5, "random_per_hour": 0.0})
    r = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(cfg), "--max-frames", "300"],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    store = CaptureStore(cap_dir, CAP_BYTES)
    frames = store.list()
    assert len(frames) >= 5, f"only {len(frames)} frames captured from 300"
    assert sum(p.stat().st_size for p in cap_dir.iterdir()) <= CAP_BYTES
    sides = [json.loads((cap_dir / f"{f['id']}.json").read_text()) for f in frames]
    assert {s["reason"] for s in sides} == {"disagreement"}, "a highway has cars moving"
    sources = {p["source"] for s in sides for p in s["proposals"]}
    assert sources & {"motion", "both"}, "background subtraction proposes the moving cars"
    assert all((s["width"], s["height"]) == (320, 240) for s in sides), "processing-frame pixels"
    # A user corrects three of them (boxes from the proposals, one "no car"); they export.
    for f in frames[:2]:
        got = store.get(f["id"])
        boxes = [{k: min(max(p[k], 0), 1e9) for k in ("x", "y", "width", "height")} for p in got["proposals"]
                 if p["x"] >= 0 and p["y"] >= 0 and p["x"] + p["width"] <= 320 and p["y"] + p["height"] <= 240]
        store.set_labels(f["id"], boxes, False)
    store.set_labels(frames[2]["id"], [], True)
    out = subprocess.run([sys.executable, "-m", "edge", "export-captures", "--captures", str(cap_dir), "--out",
                          str(tmp_path / "yolo")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["frames"] == 3
    assert sorted(p.stem for p in (tmp_path / "yolo" / "images").iterdir()) == [f["id"] for f in frames[:3]]
