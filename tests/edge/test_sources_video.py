"""VideoSource on the real highway clip, decoded by PyAV."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from edge.config import ConfigError, SourceConfig
from edge.sources.base import SourceExhausted
from edge.sources.video import VideoSource

CLIP = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "video" / "highway-320x240.avi"
pytestmark = pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} not available (run make data)")


def cfg(**over: object) -> SourceConfig:
    base = dict(kind="video", path=str(CLIP), width=320, height=240, loop=False, pace=False)
    base.update(over)
    return SourceConfig(**base)  # type: ignore[arg-type]


def first_frames_by_pyav(n: int) -> list[np.ndarray]:
    with av.open(str(CLIP)) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="gray"))
            if len(out) == n:
                return out
    return out


def test_whole_clip_once_then_exhausted() -> None:
    src = VideoSource(cfg())
    src.open()
    frames = []
    with pytest.raises(SourceExhausted, match="ended"):
        while True:
            frames.append(src.read())
    src.close()
    assert len(frames) == 500
    assert all(f.image.shape == (240, 320) and f.image.dtype == np.uint8 for f in frames)
    assert [f.frame_id for f in frames] == list(range(500))
    stamps = [f.timestamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert stamps[-1] <= time.monotonic_ns()
    assert src.fps == pytest.approx(15.0, abs=0.01)


def test_frames_are_the_decoded_pictures_in_greyscale() -> None:
    src = VideoSource(cfg())
    src.open()
    ours = [src.read().image for _ in range(3)]
    src.close()
    for mine, reference in zip(ours, first_frames_by_pyav(3)):
        np.testing.assert_array_equal(mine, reference)
    assert not np.array_equal(ours[0], ours[2])  # traffic moves
    assert ours[0].min() < 30 and ours[0].max() > 220  # full-range grey, not 16..235 luma


def test_loop_wraps_to_the_first_frame_and_ids_keep_counting() -> None:
    src = VideoSource(cfg(loop=True))
    src.open()
    frames = [src.read() for _ in range(502)]
    src.close()
    assert [f.frame_id for f in frames[498:]] == [498, 499, 500, 501]
    np.testing.assert_array_equal(frames[500].image, frames[0].image)
    np.testing.assert_array_equal(frames[501].image, frames[1].image)
    stamps = [f.timestamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_resized_to_the_configured_size() -> None:
    src = VideoSource(cfg(width=160, height=120))
    src.open()
    small = src.read().image
    src.close()
    assert small.shape == (120, 160) and small.flags["C_CONTIGUOUS"]
    full = first_frames_by_pyav(1)[0].astype(float)
    halved = full.reshape(120, 2, 160, 2).mean(axis=(1, 3))
    assert np.abs(small - halved).mean() < 6  # same picture, scaled


def test_paced_at_the_files_own_rate() -> None:
    src = VideoSource(cfg(pace=True, fps=100.0))  # source.fps is ignored for files: 15 fps
    src.open()
    frames = [src.read() for _ in range(7)]
    src.close()
    elapsed = (frames[-1].timestamp_ns - frames[0].timestamp_ns) / 1e9
    assert 0.3 < elapsed < 1.5  # 6 intervals of 1/15 s = 0.4 s; loose for loaded CI machines


def test_unpaced_is_fast() -> None:
    src = VideoSource(cfg())
    src.open()
    start = time.monotonic()
    for _ in range(30):
        src.read()
    src.close()
    assert time.monotonic() - start < 1.0


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(ConfigError, match="nope.avi.*does not exist"):
        VideoSource(cfg(path=str(missing))).open()


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 100)
    src = VideoSource(cfg(path=str(junk)))
    with pytest.raises(ConfigError, match="junk.avi.*cannot be opened as a video"):
        src.open()
    src.close()


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        VideoSource(cfg(path=str(tmp_path))).open()


def test_empty_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="source.path"):
        VideoSource(cfg(path=""))


def test_close_is_idempotent_and_reopen_starts_over() -> None:
    src = VideoSource(cfg())
    src.open()
    first = src.read()
    src.close()
    src.close()
    src.open()
    again = src.read()
    src.close()
    np.testing.assert_array_equal(first.image, again.image)
    assert again.frame_id == 1


# --- files that end early: say what happened ------------------------------------------------

from tests.edge.clips import announced_and_decodable, truncate_clip, write_clip  # noqa: E402


def test_a_video_without_frames_says_so(tmp_path: Path) -> None:
    empty = write_clip(CLIP, tmp_path / "empty.avi", frames=0)
    for loop in (False, True):
        src = VideoSource(cfg(path=str(empty), loop=loop))
        src.open()
        with pytest.raises(SourceExhausted, match=r"contains no decodable frames \(its header announces 0\)"):
            src.read()
        src.close()


def test_a_truncated_video_says_how_far_it_got(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cut = truncate_clip(CLIP, tmp_path / "cut.avi", keep=0.3)
    announced, decodable = announced_and_decodable(cut)
    assert announced == 500 and 0 < decodable < 500
    src = VideoSource(cfg(path=str(cut)))
    src.open()
    with caplog.at_level("WARNING", logger="edge.sources.video"), \
            pytest.raises(SourceExhausted) as exc:
        for _ in range(501):
            src.read()
    src.close()
    assert str(exc.value).endswith(f"ended after {decodable} of the 500 frames its header announces: "
                                   "the file is truncated or damaged (source.loop = false)")
    assert len(caplog.records) == 1
    assert f"ended after {decodable} of the 500 frames" in caplog.records[0].getMessage()


def test_a_truncated_video_loops_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cut = truncate_clip(CLIP, tmp_path / "cut.avi", keep=0.1)
    _, decodable = announced_and_decodable(cut)
    src = VideoSource(cfg(path=str(cut), loop=True))
    src.open()
    with caplog.at_level("WARNING", logger="edge.sources.video"):
        ids = [src.read().frame_id for _ in range(3 * decodable)]
    src.close()
    assert ids == list(range(3 * decodable))
    assert len(caplog.records) == 1 and "truncated" in caplog.records[0].getMessage()


def test_a_complete_video_says_how_many_frames(tmp_path: Path) -> None:
    short = write_clip(CLIP, tmp_path / "short.avi", frames=12)
    src = VideoSource(cfg(path=str(short)))
    src.open()
    with pytest.raises(SourceExhausted, match=r"ended after 12 frames \(source.loop = false\)$"):
        for _ in range(13):
            src.read()
