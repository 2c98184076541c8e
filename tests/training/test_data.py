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
