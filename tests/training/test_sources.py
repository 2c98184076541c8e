"""Mix specs, loaders and validation splits: by time, number range or source photo, never at random."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.datasets import DatasetError
from training.sources import (
    DEFAULT_SPEC,
    Picture,
    SourceSpec,
    load_source,
    load_spec,
    split,
)


def _spec(tmp_path, body: str):
    f = tmp_path / "mix.toml"
    f.write_text(body)
    return f


def test_default_spec_names_every_shared_set():
    spec = load_spec(DEFAULT_SPEC, "data")
    assert {s.name for s in spec.sources} == {"uiuc", "drone-madison", "openimages-vehicles", "gti-vehicles",
                                              "CNRPark-A"}
    assert sum(spec.weights.values()) == pytest.approx(1.0)
    oi = next(s for s in spec.sources if s.name == "openimages-vehicles")
    assert oi.split == "source_photo" and set(oi.ignore_classes) == {"Ambulance", "Bus", "Truck"}


@pytest.mark.parametrize("body,match", [
    ('[[source]]\nname="a"\nkind="video"\npath="x"\n', "kind = 'video'"),
    ('[[source]]\nname="a"\nkind="yolo"\npath="x"\nweight=0\n', "weight = 0"),
    ('[[source]]\nname="a"\nkind="yolo"\npath="x"\nsplit="random"\n', "split = 'random'"),
    ('[[source]]\nname="a"\nkind="yolo"\npath="x"\ncolour=true\n', "unknown key 'colour'"),
    ('[[source]]\nname="a"\nkind="yolo"\n', "missing key 'path'"),
    ('[[source]]\nname="a"\nkind="folder"\npath="x"\n', "classes is required"),
    ('[[source]]\nname="a"\nkind="folder"\npath="x"\nclasses={busy="yes"}\n', "'car' or 'no_car'"),
    ('[[source]]\nname="a"\nkind="yolo"\npath="x"\n[[source]]\nname="a"\nkind="yolo"\npath="y"\n', "unique"),
    ('[[source]]\nname="a"\nkind="yolo"\npath="x"\nscale=8\n', "scale must be in \\[0.1, 4\\], got 8"),
    ('[[source]]\nname="a"\nkind="folder"\npath="x"\nclasses={busy="car"}\nscale=2\n', "1 unless kind = 'yolo'"),
    ('source = 3\n', "no \\[\\[source\\]\\]"),
    ('[[source]\n', "not valid TOML"),
])
def test_bad_specs_name_the_source_and_key(tmp_path, body, match):
    with pytest.raises(DatasetError, match=match):
        load_spec(_spec(tmp_path, body), tmp_path)


def _pic(name, car=True):
    boxes = np.array([[1, 1, 5, 5]], np.float32) if car else np.zeros((0, 4), np.float32)
    return Picture(name, np.zeros((8, 8), np.uint8), boxes, np.zeros((0, 4), np.float32))


def test_order_split_holds_out_the_last_files_of_each_class_folder():
    pics = [_pic(f"d/vehicles/Far/image{i}.png") for i in range(20)]
    pics += [_pic(f"d/non/image{i}.png", car=False) for i in range(10)]
    tr, va = split(SourceSpec("g", "folder", "d", classes=(("vehicles", "car"),)), pics)
    assert sorted(pics[i].name for i in va) == sorted(
        [f"d/vehicles/Far/image{i}.png" for i in (17, 18, 19)] + ["d/non/image9.png", "d/non/image8.png"])
    assert not set(tr) & set(va) and len(tr) + len(va) == 30


def test_order_split_gap_leaves_the_frames_just_before_the_held_out_ones_unused():
    pics = [_pic(f"site/images/frame_{i * 8:06d}.png") for i in range(20)]
    tr, va = split(SourceSpec("s", "yolo", "d", val_fraction=0.25, val_gap=3), pics)
    assert [pics[i].name[-10:-4] for i in va] == [f"{i * 8:06d}" for i in range(15, 20)]
    assert tr == list(range(12))  # 12, 13, 14 sit in the gap: neither side


def test_val_gap_only_for_the_order_split():
    with pytest.raises(DatasetError, match="val_gap"):
        SourceSpec("c", "folder", "d", split="time", val_gap=2, classes=(("busy", "car"),)).check("cmd")
    with pytest.raises(DatasetError, match="val_gap = -1"):
        SourceSpec("s", "yolo", "d", val_gap=-1).check("cmd")


def test_time_split_keeps_whole_capture_times_together():
    names = [f"20150703_{t}_{s}.jpg" for t in ("0805", "0810", "1805", "1810") for s in range(5)]
    tr, va = split(SourceSpec("c", "folder", "d", split="time", val_fraction=0.25,
                              classes=(("busy", "car"),)), [_pic(n) for n in names])
    assert {names[i][:13] for i in va} == {"20150703_1810"}


def test_time_split_refuses_names_without_a_time():
    with pytest.raises(DatasetError, match="YYYYMMDD_HHMM"):
        split(SourceSpec("c", "folder", "d", split="time", classes=(("busy", "car"),)), [_pic("frame1.jpg")])


def test_source_photo_split_keeps_augmented_copies_together():
    names = [f"img{i:02d}_jpg.rf.{k}.jpg" for i in range(10) for k in ("aaa", "bbb")]
    tr, va = split(SourceSpec("o", "yolo", "d", split="source_photo", val_fraction=0.2), [_pic(n) for n in names])
    src = lambda i: names[i].split("_jpg.rf.")[0]  # noqa: E731
    assert {src(i) for i in va} == {"img08", "img09"} and not {src(i) for i in tr} & {src(i) for i in va}


def test_real_splits_share_no_source_photo_or_frame(data_root):
    spec = load_spec(DEFAULT_SPEC, data_root)
    oi = next(s for s in spec.sources if s.name == "openimages-vehicles")
    src = load_source(oi, spec.path_of(oi), None)
    key = lambda i: src.pictures[i].name.rsplit("/", 1)[-1].split("_jpg.rf.")[0]  # noqa: E731
    assert not {key(i) for i in src.train} & {key(i) for i in src.val}
    assert src.report["labels"]["bad_lines"] == 0
    # Buses/trucks/ambulances became ignore regions, cars boxes (stored at 320 px: scaled from 416).
    assert sum(len(p.ignore) for p in src.pictures) == 170 + 198 + 192
    assert sum(len(p.boxes) for p in src.pictures) == 914
    assert max(p.image.shape[0] for p in src.pictures) == 320


def _yolo_folder(root, n=6, broken=1):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [car, bus]\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (120, 160), dtype=np.uint8)).save(root / "images" / f"f{i:03d}.png")
        (root / "labels" / f"f{i:03d}.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.2 0.2 0.1 0.1\n9 0.5 0.5 0.1 0.1\n")
    for i in range(broken):
        (root / "images" / f"z{i}.jpg").write_bytes(b"not a picture")


def test_yolo_source_counts_unreadable_pictures_and_bad_lines(tmp_path):
    _yolo_folder(tmp_path / "y", n=60, broken=1)
    s = SourceSpec("y", "yolo", str(tmp_path / "y"), car_classes=("car",), ignore_classes=("bus",), max_side=80)
    src = load_source(s, tmp_path / "y", tmp_path / "cache")
    assert len(src.pictures) == 60 and src.report["unreadable"] == 1
    assert src.report["labels"]["bad_lines"] == 60
    p = src.pictures[0]
    assert p.image.shape == (60, 80) and p.scale == 0.5
    np.testing.assert_allclose(p.boxes, [[30, 15, 20, 30]])
    assert len(p.ignore) == 1
    # Second load comes from the cache, same content.
    again = load_source(s, tmp_path / "y", tmp_path / "cache")
    assert again.report == src.report and len(list((tmp_path / "cache").iterdir())) == 1


def test_too_many_unreadable_pictures_is_an_error(tmp_path):
    _yolo_folder(tmp_path / "y", n=4, broken=2)
    s = SourceSpec("y", "yolo", str(tmp_path / "y"))
    with pytest.raises(DatasetError, match="2 of 6 pictures are unreadable"):
        load_source(s, tmp_path / "y", None)


def test_a_split_without_cars_is_an_error(tmp_path):
    root = tmp_path / "f"
    for cls in ("car", "no_car"):
        (root / cls).mkdir(parents=True)
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(root / "car" / "a.png")
    for i in range(5):
        Image.fromarray(np.zeros((50, 50), np.uint8)).save(root / "no_car" / f"{i}.png")
    s = SourceSpec("f", "folder", str(root), classes=(("car", "car"), ("no_car", "no_car")))
    with pytest.raises(DatasetError, match="has no car"):
        load_source(s, root, None)
    assert len(load_source(s, root, None, require_split=False).pictures) == 6


def test_missing_folder_says_run_make_data(tmp_path):
    with pytest.raises(DatasetError, match="make data"):
        load_source(SourceSpec("x", "yolo", "x"), tmp_path / "nope", None)


def test_jpeg_draft_decoding_keeps_boxes_on_the_original_scale(tmp_path):
    """A 640 px JPEG is decoded at 320 by draft mode: boxes must be scaled by 0.5, not 1."""
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img = np.zeros((640, 640), np.uint8)
    img[100:200, 300:500] = 255
    for i in range(4):
        Image.fromarray(img).save(root / "images" / f"f{i}.jpg", quality=95)
        (root / "labels" / f"f{i}.txt").write_text("0 0.625 0.234375 0.3125 0.15625\n")
    src = load_source(SourceSpec("y", "yolo", str(root), car_classes=("0",), max_side=320), root, None)
    p = src.pictures[0]
    assert p.image.shape == (320, 320) and p.scale == 0.5
    np.testing.assert_allclose(p.boxes, [[150, 50, 100, 50]], atol=0.01)
    assert p.image[60:90, 160:240].mean() > 200 and p.image[10:40, 10:40].mean() < 20


def test_processing_scale_stores_what_the_daemon_feeds_the_model(tmp_path):
    """scale = 2 is the daemon's processing.scales = [2]: the same resize (edge.preprocess),
    boxes on the resized picture."""
    from edge.preprocess import scaled

    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (75, 101), dtype=np.uint8) for _ in range(4)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(root / "images" / f"f{i}.png")
        (root / "labels" / f"f{i}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    src = load_source(SourceSpec("y", "yolo", str(root), car_classes=("0",), scale=2.0), root, None)
    p = src.pictures[0]
    np.testing.assert_array_equal(p.image, scaled(frames[0], [2.0])[0].image)
    assert p.image.shape == (150, 202)
    np.testing.assert_allclose(p.boxes, [[80.8, 45, 40.4, 60]], atol=0.01)
