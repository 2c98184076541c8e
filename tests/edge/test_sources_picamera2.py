"""Picamera2Source against the fake picamera2 (tests/fakes/picamera2.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edge.config import ConfigError, SourceConfig
from edge.sources.base import SourceError
from edge.sources.picamera2_source import Picamera2Source
from tests.fakes.picamera2 import (
    BUSY_INIT_MESSAGE,
    PADDING_VALUE,
    CameraRig,
    fake_luma,
    hide_picamera2,
    install_fake_picamera2,
)


def cfg(**over: object) -> SourceConfig:
    base = dict(kind="picamera2", width=100, height=60, fps=15.0, capture_timeout_s=0.2,
                main_width=1000, main_height=600)
    base.update(over)
    return SourceConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> CameraRig:
    return install_fake_picamera2(monkeypatch)


def read_n(src: Picamera2Source, n: int) -> list:
    return [src.read() for _ in range(n)]


def test_module_imports_without_picamera2() -> None:
    code = ("import sys, edge.sources; "
            "assert 'picamera2' not in sys.modules and 'libcamera' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_picamera2_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_picamera2(monkeypatch)
    src = Picamera2Source(cfg())
    with pytest.raises(ConfigError) as info:
        src.open()
    msg = str(info.value)
    assert "sudo apt install python3-picamera2" in msg and "--system-site-packages" in msg
    src.close()  # safe after a failed open


def test_configures_lores_yuv_at_frame_size_and_rate(rig: CameraRig) -> None:
    src = Picamera2Source(cfg(fps=12.5), buffer_count=3)
    src.open()
    (cam,) = rig.instances
    conf = cam.camera_configuration()
    assert conf["lores"]["format"] == "YUV420" and conf["lores"]["size"] == (100, 60)
    assert conf["main"]["size"] == (1000, 600)
    assert conf["controls"]["FrameDurationLimits"] == (80000, 80000)
    assert conf["colour_space"].full_range  # 0..255 luma like the training pictures
    assert conf["buffer_count"] == 3
    assert cam.started
    src.close()


def test_frames_are_the_y_plane_without_stride_padding(rig: CameraRig) -> None:
    src = Picamera2Source(cfg())
    src.open()
    assert rig.instances[0].stream_configuration("lores")["stride"] == 128  # padded: 100 -> 128
    frames = read_n(src, 3)
    src.close()
    for i, frame in enumerate(frames):
        assert frame.image.shape == (60, 100) and frame.image.dtype == np.uint8
        assert frame.image.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(frame.image, fake_luma(i, 100, 60))
        assert PADDING_VALUE not in frame.image
    assert [f.frame_id for f in frames] == [0, 1, 2]


def test_sensor_timestamp_is_the_frame_time(rig: CameraRig) -> None:
    src = Picamera2Source(cfg())
    src.open()
    frames = read_n(src, 4)
    src.close()
    stamps = [r.metadata["SensorTimestamp"] for r in rig.requests]
    assert [f.timestamp_ns for f in frames] == stamps
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    age_ms = (time.monotonic_ns() - frames[-1].timestamp_ns) / 1e6
    assert 20 <= age_ms < 1000  # the rig stamps frames 20 ms before delivering them
    assert abs(frames[-1].wall_time - (time.time() - age_ms / 1000)) < 0.5


def test_every_request_is_released(rig: CameraRig) -> None:
    src = Picamera2Source(cfg())
    src.open()
    read_n(src, 10)
    src.close()
    assert len(rig.requests) == 10 and rig.unreleased() == []


def test_request_released_even_when_make_array_fails(rig: CameraRig) -> None:
    rig.make_array_errors = 1
    src = Picamera2Source(cfg())
    src.open()
    with pytest.raises(SourceError, match="injected make_array failure"):
        src.read()
    assert rig.unreleased() == []
    frame = src.read()  # the camera is still usable
    src.close()
    np.testing.assert_array_equal(frame.image, fake_luma(1, 100, 60))
    assert rig.unreleased() == []


def test_odd_size_is_rounded_by_camera_and_resized_back(rig: CameraRig) -> None:
    src = Picamera2Source(cfg(width=101, height=61))
    src.open()
    assert rig.instances[0].stream_configuration("lores")["size"] == (100, 60)
    frame = src.read()
    src.close()
    assert frame.image.shape == (61, 101)


def test_adjusted_lores_size_is_resized_to_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = install_fake_picamera2(monkeypatch, lores_size_override=(128, 64))
    src = Picamera2Source(cfg())
    src.open()
    frame = src.read()
    src.close()
    assert frame.image.shape == (60, 100)
    # Nearly the same picture, just rescaled: compare against the resized expected luma.
    from PIL import Image
    expected = np.asarray(Image.fromarray(fake_luma(0, 128, 64)).resize((100, 60), Image.Resampling.BILINEAR))
    assert np.abs(frame.image.astype(int) - expected).mean() < 1.0
    assert rig.unreleased() == []


def test_busy_camera_at_init_is_a_source_error_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_picamera2(monkeypatch, busy_inits=1)
    src = Picamera2Source(cfg())
    with pytest.raises(SourceError, match="another process") as info:
        src.open()
    assert BUSY_INIT_MESSAGE in str(info.value)
    src.open()  # the other process let go
    src.close()


def test_camera_held_by_another_instance_is_busy(rig: CameraRig) -> None:
    first = Picamera2Source(cfg())
    first.open()
    second = Picamera2Source(cfg())
    with pytest.raises(SourceError, match="could not be opened"):
        second.open()
    first.close()
    second.open()
    second.close()


def test_busy_at_start_closes_the_camera_again(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = install_fake_picamera2(monkeypatch, busy_starts=1)
    src = Picamera2Source(cfg())
    with pytest.raises(SourceError, match="Device or resource busy"):
        src.open()
    assert rig.open_instances() == []  # not left holding the camera for the retry
    src.open()
    assert src.read().frame_id == 0
    src.close()


def test_no_camera_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_picamera2(monkeypatch, cameras=[])
    with pytest.raises(SourceError, match="camera 0 not found"):
        Picamera2Source(cfg()).open()


def test_dead_camera_times_out_without_leaking(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = install_fake_picamera2(monkeypatch, dead_after=2)
    src = Picamera2Source(cfg(capture_timeout_s=0.15))
    src.open()
    read_n(src, 2)
    start = time.monotonic()
    with pytest.raises(SourceError, match="no frame from camera 0 within 0.15 s"):
        src.read()
    assert 0.1 < time.monotonic() - start < 1.0
    rig.revive()  # an abandoned capture job must not grab (and never release) this frame
    src.close()
    assert rig.unreleased() == [] and len(rig.requests) == 2


def test_stop_event_interrupts_a_capture_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_picamera2(monkeypatch, dead_after=0)
    stop = threading.Event()
    src = Picamera2Source(cfg(capture_timeout_s=10.0), stop_event=stop, poll_s=0.05)
    src.open()
    threading.Timer(0.1, stop.set).start()
    start = time.monotonic()
    with pytest.raises(SourceError, match="stopping"):
        src.read()
    assert time.monotonic() - start < 0.5
    src.close()


def test_close_stops_and_closes_and_is_idempotent(rig: CameraRig) -> None:
    src = Picamera2Source(cfg())
    src.open()
    cam = rig.instances[0]
    src.close()
    src.close()
    assert cam.stop_count == 1 and not cam.is_open
    with pytest.raises(SourceError, match="before open"):
        src.read()


def test_frame_ids_keep_increasing_across_reopen(rig: CameraRig) -> None:
    src = Picamera2Source(cfg())
    src.open()
    ids = [f.frame_id for f in read_n(src, 2)]
    src.close()
    src.open()
    ids += [f.frame_id for f in read_n(src, 2)]
    src.close()
    assert ids == [0, 1, 2, 3]


def test_main_stream_is_yuv_and_never_copied(rig: CameraRig) -> None:
    """The main stream only fixes the sensor mode; copying it per frame would cost more than the detector."""
    src = Picamera2Source(cfg())
    src.open()
    main = rig.instances[0].camera_configuration()["main"]
    assert main["format"] == "YUV420" and main["size"] == (1000, 600)
    read_n(src, 3)
    src.close()
    assert not hasattr(src, "snapshot")  # /snapshot.jpg serves the processed frame (Pipeline.snapshot_frame)
    assert rig.unreleased() == []


@pytest.mark.parametrize("bad", [None, 0, "later"])
def test_timestamp_not_on_the_monotonic_clock_falls_back_to_arrival(
    rig: CameraRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bad: object
) -> None:
    src = Picamera2Source(cfg())
    src.open()
    real_next = rig.instances[0]._next_request

    def with_bad_timestamp():
        request = real_next()
        request.metadata["SensorTimestamp"] = bad
        return request

    monkeypatch.setattr(rig.instances[0], "_next_request", with_bad_timestamp)
    before = time.monotonic_ns()
    with caplog.at_level("WARNING"):
        frames = read_n(src, 2)
    src.close()
    assert all(before <= f.timestamp_ns <= time.monotonic_ns() for f in frames)
    assert len([r for r in caplog.records if "SensorTimestamp" in r.getMessage()]) == 1
