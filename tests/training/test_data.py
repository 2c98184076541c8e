"""`make data`: mirror copy, verification, clear errors."""

from __future__ import annotations

import shutil

import pytest

from training.data import fetch_cardata, verify_cardata
from training.datasets import DatasetError


def test_mirror_copy_and_verify(tmp_path, cardata):
    mirror = tmp_path / "mirror"
    shutil.copytree(cardata, mirror / "CarData")
    info = fetch_cardata(tmp_path / "data" / "CarData", mirror)
    assert info == {"train_windows": 1050, "test_scenes": 170, "cars_in_test": 200}


def test_incomplete_copy_is_a_clear_error(tmp_path, cardata):
    bad = tmp_path / "CarData"
    shutil.copytree(cardata, bad)
    (bad / "TrainImages" / "pos-3.pgm").unlink()
    with pytest.raises(DatasetError, match="549 pos.*expected 550.*make data"):
        verify_cardata(bad)
    shutil.rmtree(bad / "TestImages")
    with pytest.raises(DatasetError, match="TestImages is missing"):
        verify_cardata(bad)


def test_no_mirror_and_no_network_says_how_to_provide_data(tmp_path):
    with pytest.raises(DatasetError, match="DATA_MIRROR"):
        fetch_cardata(tmp_path / "CarData", tmp_path / "empty-mirror", url="http://127.0.0.1:9/CarData.tar.gz")


def test_fetch_all_links_every_source_and_checks_it(tmp_path, data_root):
    from tests.conftest import SHARED
    from training.data import fetch_all

    results = fetch_all(tmp_path / "data", SHARED)
    assert [r["ok"] for r in results] == [True] * 5, results
    by = {r["name"]: r["detail"] for r in results}
    assert "785 pictures, 3978 labelled objects, 0 bad label lines" in by["drone-madison"]
    assert "vehicles 2826, non-vehicles 3900" == by["gti-vehicles"]
    assert (tmp_path / "data" / "drone-madison").is_symlink()
    assert (tmp_path / "data" / "CarData").is_dir() and not (tmp_path / "data" / "CarData").is_symlink()


def test_one_missing_source_is_reported_and_the_others_go_on(tmp_path, data_root):
    from tests.conftest import SHARED
    from training.data import fetch_all

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("CarData", "drone-madison", "gti-vehicles", "CNRPark-A"):
        (mirror / name).symlink_to(SHARED / name)
    results = {r["name"]: r for r in fetch_all(tmp_path / "data", mirror)}
    bad = results["openimages-vehicles"]
    assert not bad["ok"] and "roboflow" in bad["detail"] and "DATA_MIRROR" in bad["detail"]
    assert all(r["ok"] for n, r in results.items() if n != "openimages-vehicles"), results
