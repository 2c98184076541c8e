"""make_source(): the registry maps source.kind to a class; bad settings fail clearly."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.config import ConfigError, SourceConfig, parse_config
from edge.sources import (
    SOURCES,
    ImageFolderSource,
    Picamera2Source,
    RetryingSource,
    SyntheticSource,
    VideoSource,
    make_retrying_source,
    make_source,
)
from edge.sources.base import FrameSource


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("picamera2", Picamera2Source), ("video", VideoSource), ("images", ImageFolderSource),
     ("synthetic", SyntheticSource)],
)
def test_each_kind_builds_its_class(kind: str, cls: type) -> None:
    src = make_source(SourceConfig(kind=kind, path="/somewhere"))  # type: ignore[arg-type]
    assert type(src) is cls and isinstance(src, FrameSource)


def test_registry_covers_every_configurable_kind() -> None:
    kinds = SourceConfig.__dataclass_fields__["kind"].type
    for kind in ("picamera2", "video", "images", "synthetic"):
        assert kind in kinds and kind in SOURCES
    assert set(SOURCES) == {"picamera2", "video", "images", "synthetic"}


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="'webcam' is not a known frame source.*'picamera2'.*'synthetic'"):
        make_source(SourceConfig(kind="webcam"))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["video", "images"])
def test_file_kinds_need_a_path(kind: str) -> None:
    with pytest.raises(ConfigError, match="source.path"):
        make_source(SourceConfig(kind=kind, path=""))  # type: ignore[arg-type]


def test_nonsense_size_is_rejected() -> None:
    with pytest.raises(ConfigError, match="positive"):
        make_source(SourceConfig(kind="synthetic", width=0))


def test_retrying_source_from_config() -> None:
    cfg = parse_config({"source": {"kind": "synthetic", "retry_initial_s": 0.25, "retry_max_s": 8.0,
                                   "pace": False}}).source
    stop = threading.Event()
    src = make_retrying_source(cfg, stop)
    assert isinstance(src, RetryingSource) and isinstance(src.inner, SyntheticSource)
    assert (src.initial_s, src.max_s) == (0.25, 8.0) and src.stop_event is stop
    src.open()
    assert src.read().frame_id == 0
    src.close()


@pytest.mark.parametrize("kind", ["picamera2", "video", "images", "synthetic"])
def test_sources_leave_capture_wait_to_the_reader(kind: str, tmp_path: Path, video_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame.capture_wait_s has one owner, the daemon, which times the whole (retrying) read;
    a source that set it too would only be overwritten, or mislead a caller that trusted it."""
    from PIL import Image

    from tests.fakes.picamera2 import install_fake_picamera2

    install_fake_picamera2(monkeypatch)
    for i in range(2):
        Image.new("L", (320, 240), 40 * i).save(tmp_path / f"{i}.png")
    path = {"video": str(video_path), "images": str(tmp_path)}.get(kind, "")
    src = make_source(SourceConfig(kind=kind, path=path, pace=True, fps=30.0))  # type: ignore[arg-type]
    src.open()
    try:
        frames = [src.read() for _ in range(2)]  # the second one waited for the pacer / the camera
    finally:
        src.close()
    assert [f.capture_wait_s for f in frames] == [0.0, 0.0]


def test_importing_sources_imports_no_optional_dependency() -> None:
    code = ("import sys, edge.sources; "
            "assert not {'picamera2', 'libcamera', 'av'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
