"""YOLO folders as exporters write them, and every kind of bad label line, counted per file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training import yolo


@pytest.mark.parametrize("text,names", [
    ("names: [Ambulance, Bus, Car]\n", ["Ambulance", "Bus", "Car"]),
    ("path: x\nnames:\n  - car\n  - 'truck'\nnc: 2\n", ["car", "truck"]),
    ("names:\n  0: car\n  1: bus\ntrain: images\n", ["car", "bus"]),
    ("# comment\nnames: ['a b', \"c\"]\n", ["a b", "c"]),
])
def test_class_names_in_every_export_form(text, names):
    assert yolo.parse_class_names(text) == names


def test_class_file_without_names_is_a_clear_error(tmp_path):
    (tmp_path / "data.yaml").write_text("nc: 3\n")
    with pytest.raises(yolo.YoloError, match="data.yaml.*names"):
        yolo.class_names(tmp_path)


def test_classes_txt_and_parent_folder(tmp_path):
    (tmp_path / "classes.txt").write_text("car\nvan\n")
    (tmp_path / "train").mkdir()
    assert yolo.class_names(tmp_path / "train") == ["car", "van"]


def test_bad_lines_are_counted_per_file_and_good_lines_kept(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("\n".join([
        "0 0.5 0.5 0.2 0.2",       # good
        "0 0.5 0.5 0.2",           # 4 columns
        "0 x 0.5 0.2 0.2",         # not a number
        "0 0.95 0.5 0.2 0.2",      # runs off the right edge
        "7 0.5 0.5 0.1 0.1",       # class not in the list
        "1 0.1 0.1 0.0 0.1",       # zero width
        "# a comment", "",
        "1 0.999 0.5 0.004 0.2",   # exporter rounding: inside the slack
    ]))
    probs = yolo.LabelProblems()
    objs = yolo.parse_label_file(f, 2, probs)
    assert [o.cls for o in objs] == [0, 1]
    lines = probs.bad_lines["a.txt"]
    assert len(lines) == 5 and probs.n_bad_lines == 5
    assert any("line 2" in m and "4 columns" in m for m in lines)
    assert any("line 3" in m and "not numbers" in m for m in lines)
    assert any("line 4" in m and "out of range" in m for m in lines)
    assert any("line 5" in m and "class 7" in m for m in lines)
    assert probs.to_dict()["files_with_bad_lines"] == 1


def _folder(root, names=("a", "b", "c"), labels=None):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n in names:
        Image.fromarray(np.full((40, 80), 128, np.uint8)).save(root / "images" / f"{n}.jpg")
    for n, text in (labels or {}).items():
        (root / "labels" / f"{n}.txt").write_text(text)


def test_scan_pictures_without_labels_and_labels_without_pictures(tmp_path):
    _folder(tmp_path, labels={"a": "0 0.5 0.5 0.5 0.5\n", "ghost": "0 0.5 0.5 0.1 0.1\n"})
    probs = yolo.LabelProblems()
    items = yolo.scan(tmp_path, 1, probs)
    assert [i.picture.stem for i in items] == ["a", "b", "c"]
    assert len(items[0].objects) == 1 and items[1].objects == []
    assert len(probs.labels_without_picture) == 1 and probs.labels_without_picture[0].endswith("ghost.txt")


def test_roboflow_split_folders_are_found(tmp_path):
    _folder(tmp_path / "train", names=("a",))
    _folder(tmp_path / "valid", names=("b",))
    assert [d.name for d in yolo.find_split_dirs(tmp_path)] == ["train", "valid"]


def test_not_a_yolo_folder_says_what_layout_is_expected(tmp_path):
    with pytest.raises(yolo.YoloError, match="images/.*labels/"):
        yolo.find_split_dirs(tmp_path)


def test_classes_resolve_by_name_or_number_and_unknown_names_are_errors():
    names = ["Ambulance", "Bus", "Car"]
    assert yolo.resolve_classes(names, ["car"], ["bus", "0"], "x") == ({2}, {1, 0}, 3)
    with pytest.raises(yolo.YoloError, match="'van'.*Ambulance, Bus, Car"):
        yolo.resolve_classes(names, ["van"], [], "x")
    with pytest.raises(yolo.YoloError, match="no car class"):
        yolo.resolve_classes(names, [], [], "x")
    assert yolo.resolve_classes(None, ["0"], [], "x") == ({0}, set(), None)


def test_boxes_by_role_in_pixels_clipped():
    objs = [yolo.YoloObject(2, 0.5, 0.5, 0.5, 0.25), yolo.YoloObject(1, 0.995, 0.5, 0.02, 0.5),
            yolo.YoloObject(3, 0.1, 0.1, 0.1, 0.1)]
    cars, ign = yolo.boxes_by_role(objs, 200, 100, {2}, {1})
    np.testing.assert_allclose(cars, [[50, 37.5, 100, 25]])
    np.testing.assert_allclose(ign, [[197, 25, 3, 50]], atol=1e-4)  # clipped at the right edge
