"""Dataset loading and validation: the errors a user with their own camera folder will hit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.datasets import (
    DatasetError,
    group_key,
    load_picture_folder,
    load_uiuc_windows,
    parse_truth,
    split_by_order,
)


def _pics(folder, n, colour=False, size=(150, 150), prefix="20150703_0805_"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        shape = (size[1], size[0], 3) if colour else (size[1], size[0])
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{prefix}{i}.jpg")


def test_folder_loads_colour_any_size_as_grey_windows(tmp_path):
    _pics(tmp_path / "busy", 6, colour=True)
    _pics(tmp_path / "free", 4, size=(64, 48))
    ws, rep = load_picture_folder(tmp_path, {"busy": "car", "free": "no_car"})
    assert ws.images.shape == (10, 40, 100) and ws.images.dtype == np.uint8
    assert rep.per_class == {"car": 6, "no_car": 4}


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    _pics(tmp_path / "car", 60)
    _pics(tmp_path / "no_car", 60)
    (tmp_path / "car" / "broken.jpg").write_bytes(b"not a jpeg at all")
    ws, rep = load_picture_folder(tmp_path, max_corrupt_fraction=0.05)
    assert len(ws) == 120
    assert rep.to_dict()["corrupt"] == 1 and rep.corrupt[0].endswith("broken.jpg")


def test_too_many_corrupt_files_is_an_error(tmp_path):
    _pics(tmp_path / "car", 3)
    _pics(tmp_path / "no_car", 3)
    for i in range(3):
        (tmp_path / "car" / f"bad{i}.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="unreadable"):
        load_picture_folder(tmp_path)


def test_empty_class_is_an_error(tmp_path):
    _pics(tmp_path / "car", 3)
    (tmp_path / "no_car").mkdir()
    with pytest.raises(DatasetError, match="no_car.*empty"):
        load_picture_folder(tmp_path)


def test_one_class_only_is_an_error(tmp_path):
    _pics(tmp_path / "car", 3)
    (tmp_path / "no_car").mkdir()
    (tmp_path / "no_car" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(DatasetError):
        load_picture_folder(tmp_path, max_corrupt_fraction=0.5)


def test_wrong_layout_names_the_missing_folder(tmp_path):
    _pics(tmp_path / "cars", 3)
    with pytest.raises(DatasetError, match=r"class folder 'car'.*found folders \['cars'\]"):
        load_picture_folder(tmp_path)
    with pytest.raises(DatasetError, match="TrainImages"):
        load_uiuc_windows(tmp_path)


def test_bad_class_mapping(tmp_path):
    with pytest.raises(DatasetError, match="must be 'car' or 'no_car'"):
        load_picture_folder(tmp_path, {"busy": "vehicle"})


def test_split_by_order_holds_out_the_latest_files_per_class(tmp_path):
    _pics(tmp_path / "car", 20)
    _pics(tmp_path / "no_car", 20)
    ws, _ = load_picture_folder(tmp_path)
    tr, va = split_by_order(ws, 0.25)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 40
    held = sorted(int(ws.names[i].split("_")[-1].split(".")[0]) for i in va if ws.labels[i] == 1)
    assert held == [15, 16, 17, 18, 19]  # natural order: 15..19, not 5..9 or random
    assert group_key("20150703_0805_12.jpg") == "20150703_0805_"


def test_parse_truth_single_and_multi_scale(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("0: (48,26)\n1: (61,20) (63,-14)\n2: \n")
    assert parse_truth(f) == {0: [(48, 26, 100)], 1: [(61, 20, 100), (63, -14, 100)], 2: []}
    f.write_text("0: (10,20,150) (5,6,80)\n")
    assert parse_truth(f) == {0: [(10, 20, 150), (5, 6, 80)]}
    f.write_text("0: (1,2,3,4)\n")
    with pytest.raises(DatasetError, match="2 or 3 numbers"):
        parse_truth(f)
    f.write_text("zero: (1,2)\n")
    with pytest.raises(DatasetError, match=":1:"):
        parse_truth(f)


def test_real_uiuc_windows(cardata):
    ws, rep = load_uiuc_windows(cardata)
    assert ws.summary() == {"n": 1050, "car": 550, "no_car": 500}
    assert rep.corrupt == []
