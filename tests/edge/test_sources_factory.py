"""make_source(): the registry maps source.kind to a class; bad settings fail clearly."""

from __future__ import annotations

import subprocess
import sys
import threading

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


def test_importing_sources_imports_no_optional_dependency() -> None:
    code = ("import sys, edge.sources; "
            "assert not {'picamera2', 'libcamera', 'av'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
