"""CaptureStore: ids, labels, the size cap (oldest unlabelled first) and the YOLO export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.capture_store import CaptureNotFound, CaptureStore, CaptureStoreError, make_id
from tests.edge.conftest import mode

WALL = 1_700_000_000.0
PROPOSAL = {"x": 10.0, "y": 5.0, "width": 40.0, "height": 20.0, "score": 0.55, "source": "model"}


def image(seed: int = 0, h: int = 60, w: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)


def add(store: CaptureStore, i: int, **kw: object) -> str:
    cid = store.add(image(i), WALL + i, i, "uncertain", 0.5, [PROPOSAL], **kw)  # type: ignore[arg-type]
    assert cid is not None
    return cid


def test_ids_sort_in_time_order_and_round_trip(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    ids = [add(store, i) for i in (3, 1, 2)]
    listed = store.list()
    assert [c["id"] for c in listed] == sorted(ids), "time order is name order"
    assert listed[0] == {"id": make_id(WALL + 1, 1), "time": WALL + 1, "labelled": False, "no_car": False,
                         "n_proposals": 1}
    got = store.get(ids[0])
    assert got == {"id": ids[0], "width": 80, "height": 60, "proposals": [PROPOSAL], "labels": None,
                   "no_car": False}
    with Image.open(store.image_path(ids[0])) as im:
        np.testing.assert_array_equal(np.asarray(im), image(3))
    assert mode(store.folder) == 0o750 and mode(store.image_path(ids[0])) == 0o640


@pytest.mark.parametrize("bad", ["../etc/passwd", "..", "/etc/passwd", "20231114-221320-000-00000001/../x",
                                 "20231114-221320-000-00000001.png", "", "a\0b", "%2e%2e"])
def test_ids_never_reach_outside_the_folder(tmp_path: Path, bad: str) -> None:
    (tmp_path / "passwd.png").write_bytes(b"secret")
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    add(store, 1)
    for call in (store.image_path, store.get, lambda c: store.set_labels(c, [], True)):
        with pytest.raises(CaptureStoreError, match="not valid"):
            call(bad)


def test_unknown_id_is_not_found(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    with pytest.raises(CaptureNotFound):
        store.image_path(make_id(WALL, 9))
    with pytest.raises(CaptureNotFound):
        store.get(make_id(WALL, 9))


def test_labels_are_validated_and_written_atomically(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    cid = add(store, 1)
    box = {"x": 1, "y": 2, "width": 30, "height": 20}
    store.set_labels(cid, [box], False)
    assert store.get(cid)["labels"] == [{"x": 1.0, "y": 2.0, "width": 30.0, "height": 20.0}]
    assert store.list()[0]["labelled"] is True
    assert not list(store.folder.glob("*.tmp"))
    bad_cases = [
        ([{"x": 70, "y": 2, "width": 30, "height": 20}], False, "inside the 80x60 picture"),
        ([{"x": 1, "y": 2, "width": 0, "height": 20}], False, "width and height > 0"),
        ([{"x": 1, "y": 2, "width": float("nan"), "height": 20}], False, "finite number"),
        ([{"x": 1, "y": 2, "width": 3}], False, "lacks height"),
        (["box"], False, "must be an object"),
        ([box], True, "no_car = true but 1 box"),
        (None, True, "pass labels = \\[\\]"),
    ]
    for labels, no_car, msg in bad_cases:
        with pytest.raises(CaptureStoreError, match=msg):
            store.set_labels(cid, labels, no_car)  # type: ignore[arg-type]
    assert store.get(cid)["labels"] == [{"x": 1.0, "y": 2.0, "width": 30.0, "height": 20.0}], \
        "a refused write keeps the earlier labels"
    store.set_labels(cid, [], True)
    assert store.get(cid)["no_car"] is True and store.list()[0]["no_car"] is True
    store.set_labels(cid, None, False)
    assert store.list()[0]["labelled"] is False


def test_cap_evicts_oldest_unlabelled_first_and_keeps_labelled(tmp_path: Path) -> None:
    probe = CaptureStore(tmp_path / "probe", 10_000_000)
    add(probe, 0)
    per_frame = sum(p.stat().st_size for p in probe.folder.iterdir())
    store = CaptureStore(tmp_path / "cap", int(per_frame * 4.5))
    ids = [add(store, i) for i in range(4)]
    store.set_labels(ids[0], [], True)  # the oldest is labelled: it must survive
    new = add(store, 4)
    left = [c["id"] for c in store.list()]
    assert left == [ids[0], ids[2], ids[3], new], "the oldest *unlabelled* frame went"
    total = sum(p.stat().st_size for p in store.folder.iterdir())
    assert total <= store.max_bytes
    # A second instance (the page's) sees the same folder.
    assert [c["id"] for c in CaptureStore(store.folder, store.max_bytes).list()] == left


def test_labelled_frames_alone_filling_the_cap_refuse_new_frames(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    probe = CaptureStore(tmp_path / "probe", 10_000_000)
    add(probe, 0)
    per_frame = sum(p.stat().st_size for p in probe.folder.iterdir())
    store = CaptureStore(tmp_path / "cap", int(per_frame * 2.5))
    for i in range(2):
        store.set_labels(add(store, i), [], True)
    for i in range(2, 5):
        assert store.add(image(i), WALL + i, i, "random", 0.1, []) is None
    assert len(store.list()) == 2 and all(c["labelled"] for c in store.list())
    assert not list(store.folder.glob("*.tmp"))
    assert sum("labelled frames alone" in r.getMessage() for r in caplog.records) == 1


def test_export_yolo_writes_only_labelled_frames_in_time_order(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    ids = [add(store, i) for i in range(4)]
    store.set_labels(ids[2], [{"x": 20, "y": 15, "width": 40, "height": 30}], False)
    store.set_labels(ids[0], [], True)
    store.set_labels(ids[1], [{"x": 0, "y": 0, "width": 80, "height": 60},
                              {"x": 10, "y": 10, "width": 8, "height": 6}], False)
    out = tmp_path / "yolo"
    summary = store.export_yolo(out)
    assert summary == {"dest": str(out), "frames": 3, "boxes": 3, "no_car": 1, "skipped": []}
    assert (out / "classes.yaml").read_text() == "names: [car]\n"
    assert sorted(p.stem for p in (out / "images").iterdir()) == ids[:3]
    assert sorted(p.stem for p in (out / "labels").iterdir()) == ids[:3]
    assert (out / "labels" / f"{ids[0]}.txt").read_text() == ""
    assert (out / "labels" / f"{ids[2]}.txt").read_text() == "0 0.500000 0.500000 0.500000 0.500000\n"
    assert (out / "labels" / f"{ids[1]}.txt").read_text().splitlines() == [
        "0 0.500000 0.500000 1.000000 1.000000", "0 0.175000 0.216667 0.100000 0.100000"]
    # Exporting again replaces the earlier export; a folder of something else is refused.
    store.set_labels(ids[1], None, False)
    assert store.export_yolo(out)["frames"] == 2 and len(list((out / "images").iterdir())) == 2
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(CaptureStoreError, match="not an earlier export"):
        store.export_yolo(other)
    assert (other / "keep.txt").read_text() == "x"


def test_a_broken_frame_is_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    ids = [add(store, i) for i in range(3)]
    for cid in ids:
        store.set_labels(cid, [], True)
    store.image_path(ids[1]).unlink()
    (store.folder / f"{make_id(WALL + 9, 9)}.json").write_text("{not json")
    listed = [c["id"] for c in store.list()]
    assert listed == ids, "an unreadable sidecar is left out of the list"
    summary = store.export_yolo(tmp_path / "yolo")
    assert summary["frames"] == 2 and [s["id"] for s in summary["skipped"]] == [ids[1]]
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_sidecar_is_versioned_json(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    cid = add(store, 1)
    side = json.loads((store.folder / f"{cid}.json").read_text())
    assert side["version"] == 2 and side["reason"] == "uncertain" and side["labels"] is None


def test_export_captures_command(tmp_path: Path) -> None:
    """`python -m edge export-captures` writes the YOLO folder; no labelled frame is an error."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    store = CaptureStore(tmp_path / "cap", 10_000_000)
    ids = [add(store, i) for i in range(3)]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge", "export-captures", *argv], cwd=root,
                              capture_output=True, text=True, timeout=60)

    r = run("--captures", str(store.folder), "--out", str(tmp_path / "none"))
    assert r.returncode == 1 and "no labelled frames" in r.stderr
    store.set_labels(ids[1], [{"x": 20, "y": 15, "width": 40, "height": 30}], False)
    r = run("--captures", str(store.folder), "--out", str(tmp_path / "yolo"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 1
    assert [p.name for p in (tmp_path / "yolo" / "labels").iterdir()] == [f"{ids[1]}.txt"]
    r = run("--captures", str(tmp_path / "missing"), "--out", str(tmp_path / "y2"))
    assert r.returncode == 1 and "--captures" in r.stderr and "not a folder" in r.stderr


def test_the_trainers_yolo_reader_reads_the_export_back(tmp_path: Path) -> None:
    """The contract with `python -m training finetune --data`: the same boxes, in pixels,
    in time order, "no car" as a picture without objects, no problems reported."""
    from training.yolo import LabelProblems, boxes_by_role, class_names, resolve_classes, scan

    store = CaptureStore(tmp_path / "cap", 10_000_000)
    ids = [add(store, i) for i in range(3)]
    store.set_labels(ids[0], [{"x": 0, "y": 0, "width": 80, "height": 60}], False)
    store.set_labels(ids[1], [], True)
    store.set_labels(ids[2], [{"x": 12.5, "y": 7, "width": 30, "height": 20},
                              {"x": 50, "y": 30, "width": 25, "height": 25}], False)
    out = tmp_path / "yolo"
    store.export_yolo(out)
    car, ignore, n = resolve_classes(class_names(out), ["car"], [], str(out))
    problems = LabelProblems()
    items = scan(out, n, problems)
    assert problems.to_dict()["bad_lines"] == 0 and not problems.labels_without_picture
    assert [it.picture.stem for it in items] == ids
    got = [boxes_by_role(it.objects, 80, 60, car, ignore)[0].round(2).tolist() for it in items]
    assert got == [[[0.0, 0.0, 80.0, 60.0]], [], [[12.5, 7.0, 30.0, 20.0], [50.0, 30.0, 25.0, 25.0]]]
