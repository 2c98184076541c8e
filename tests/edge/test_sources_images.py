"""ImageFolderSource on real picture files written to a temporary folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.config import ConfigError, SourceConfig
from edge.sources.base import SourceExhausted
from edge.sources.images import ImageFolderSource, natural_key

W, H = 40, 30


def cfg(folder: Path, **over: object) -> SourceConfig:
    base = dict(kind="images", path=str(folder), width=W, height=H, loop=False, pace=False)
    base.update(over)
    return SourceConfig(**base)  # type: ignore[arg-type]


def grey_png(path: Path, value: int, size: tuple[int, int] = (W, H)) -> None:
    Image.new("L", size, value).save(path)


def read_all(src: ImageFolderSource) -> list:
    frames = []
    with pytest.raises(SourceExhausted):
        while True:
            frames.append(src.read())
    return frames


def test_natural_order_and_only_pictures(tmp_path: Path) -> None:
    for name, value in [("img10.png", 100), ("img2.png", 20), ("img1.png", 10), ("IMG3.PNG", 30)]:
        grey_png(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "sub.png").mkdir()  # a folder with a picture-like name
    src = ImageFolderSource(cfg(tmp_path))
    src.open()
    frames = read_all(src)
    assert [int(f.image[0, 0]) for f in frames] == [10, 20, 30, 100]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3]
    stamps = [f.timestamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_natural_key() -> None:
    names = ["a10.png", "a2.png", "A1.png", "b.png"]
    assert sorted(names, key=natural_key) == ["A1.png", "a2.png", "a10.png", "b.png"]


def test_every_supported_format_colour_and_size_is_normalised(tmp_path: Path) -> None:
    Image.new("RGB", (W, H), (255, 0, 0)).save(tmp_path / "1.jpg", quality=95)
    Image.new("L", (W, H), 77).save(tmp_path / "2.pgm")
    Image.new("RGB", (W, H), (0, 0, 255)).save(tmp_path / "3.bmp")
    Image.new("RGB", (W, H), (0, 255, 0)).save(tmp_path / "4.jpeg", quality=95)
    Image.new("L", (W * 2, H * 3), 200).save(tmp_path / "5.png")  # another size: resized
    src = ImageFolderSource(cfg(tmp_path))
    src.open()
    frames = read_all(src)
    assert all(f.image.shape == (H, W) and f.image.dtype == np.uint8 for f in frames)
    values = [int(f.image[H // 2, W // 2]) for f in frames]
    # ITU-R 601 luma: red 76, pgm 77, blue 29, green 150, grey 200 (JPEG is off by a little)
    assert values[1] == 77 and values[2] == 29 and values[4] == 200
    assert abs(values[0] - 76) <= 3 and abs(values[3] - 150) <= 3


def test_corrupt_picture_is_skipped_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grey_png(tmp_path / "a1.png", 10)
    (tmp_path / "a2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    grey_png(tmp_path / "a3.png", 30)
    src = ImageFolderSource(cfg(tmp_path, loop=True))
    src.open()
    with caplog.at_level(logging.WARNING, logger="edge.sources.images"):
        values = [int(src.read().image[0, 0]) for _ in range(6)]
    assert values == [10, 30, 10, 30, 10, 30]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "a2.png" in warnings[0]
    assert [p.name for p in src.skipped] == ["a2.png"]


def test_truncated_picture_is_skipped(tmp_path: Path) -> None:
    grey_png(tmp_path / "1.png", 10)
    Image.new("L", (W, H), 50).save(tmp_path / "2.jpg")
    data = (tmp_path / "2.jpg").read_bytes()
    (tmp_path / "2.jpg").write_bytes(data[: len(data) // 2])
    src = ImageFolderSource(cfg(tmp_path))
    src.open()
    frames = read_all(src)
    assert [int(f.image[0, 0]) for f in frames] == [10]


def test_loop_wraps_and_ids_keep_counting(tmp_path: Path) -> None:
    grey_png(tmp_path / "1.png", 1)
    grey_png(tmp_path / "2.png", 2)
    src = ImageFolderSource(cfg(tmp_path, loop=True))
    src.open()
    frames = [src.read() for _ in range(5)]
    assert [int(f.image[0, 0]) for f in frames] == [1, 2, 1, 2, 1]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]


def test_paced_at_source_fps(tmp_path: Path) -> None:
    grey_png(tmp_path / "1.png", 1)
    src = ImageFolderSource(cfg(tmp_path, loop=True, pace=True, fps=20.0))
    src.open()
    frames = [src.read() for _ in range(6)]
    elapsed = (frames[-1].timestamp_ns - frames[0].timestamp_ns) / 1e9
    assert 0.18 < elapsed < 1.0  # 5 intervals of 50 ms


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere.*does not exist"):
        ImageFolderSource(cfg(tmp_path / "nowhere")).open()


def test_file_instead_of_folder(tmp_path: Path) -> None:
    grey_png(tmp_path / "x.png", 1)
    with pytest.raises(ConfigError, match="is a file"):
        ImageFolderSource(cfg(tmp_path / "x.png")).open()


def test_folder_without_pictures(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ConfigError, match="contains no pictures.*png"):
        ImageFolderSource(cfg(tmp_path)).open()


def test_folder_of_only_corrupt_pictures(tmp_path: Path) -> None:
    (tmp_path / "1.png").write_bytes(b"nope")
    (tmp_path / "2.jpg").write_bytes(b"nope")
    src = ImageFolderSource(cfg(tmp_path, loop=True))
    src.open()
    with pytest.raises(ConfigError, match="none of its pictures can be decoded"):
        src.read()


def test_empty_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="source.path"):
        ImageFolderSource(cfg(Path("x"), path=""))


def test_reads_real_dataset_pictures() -> None:
    folder = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "CarData" / "TestImages"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    src = ImageFolderSource(cfg(folder, width=320, height=240))
    src.open()
    start = time.monotonic()
    frames = [src.read() for _ in range(5)]
    assert time.monotonic() - start < 2.0
    assert [f.frame_id for f in frames] == list(range(5))
    with Image.open(folder / "test-0.pgm") as img:
        first = np.asarray(img.convert("L").resize((320, 240), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(frames[0].image, first)
