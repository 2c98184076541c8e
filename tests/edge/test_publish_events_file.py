"""EventsFilePublisher on a real file system: durability, rotation, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge.config import EventsConfig
from edge.events import ARRIVED, LEFT, Box, Event
from edge.publish import PublishSetupError
from edge.publish.events_file import EventsFilePublisher
from tests.edge.conftest import mode


def make_event(i: int, kind: str | None = None) -> Event:
    kind = kind or (ARRIVED if i % 2 == 0 else LEFT)
    return Event(kind=kind, zone="drive", time=1_700_000_000.0 + i,
                 frame_id=i, score=0.87, box=Box(-3.0, 5.0, 100.0, 40.0, 0.87), dwell_s=None)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_appends_json_lines_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "events.jsonl"
    pub = EventsFilePublisher(EventsConfig(path=str(path)))
    events = [make_event(i) for i in range(3)]
    for e in events:
        pub.publish_event(e)
    pub.close()
    pub.close()
    assert read_lines(path) == [e.to_dict() for e in events]
    assert path.read_text().endswith("\n")


def test_reopening_appends_and_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "from an older run"}\n')
    pub = EventsFilePublisher(EventsConfig(path=str(path)))
    pub.publish_event(make_event(0))
    pub.close()
    pub = EventsFilePublisher(EventsConfig(path=str(path)))
    pub.publish_event(make_event(1))
    pub.close()
    lines = read_lines(path)
    assert lines[0] == {"event": "from an older run"}
    assert [line["frame_id"] for line in lines[1:]] == [0, 1]


def test_every_event_is_fsynced_before_publish_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    pub = EventsFilePublisher(EventsConfig(path=str(path)))
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        # The line must already be flushed out of Python's buffer when fsync is called.
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for i in range(4):
        pub.publish_event(make_event(i))
        assert len(synced) == i + 1
        assert synced[-1] == path.stat().st_size
    pub.close()


def test_rotates_by_size_and_keeps_only_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [make_event(100 + i, ARRIVED) for i in range(23)]  # all lines the same length
    line_len = len(json.dumps(events[0].to_dict(), separators=(",", ":"))) + 1
    cfg = EventsConfig(path=str(path), max_bytes=line_len * 5, backups=2)
    pub = EventsFilePublisher(cfg)
    for e in events:
        pub.publish_event(e)
    pub.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= cfg.max_bytes
    ids = [[line["frame_id"] - 100 for line in read_lines(tmp_path / name)]
           for name in ("events.jsonl.2", "events.jsonl.1", "events.jsonl")]
    # Oldest backup first: the newest 13 events survive, contiguous and in order.
    assert ids == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22]]


def test_zero_backups_means_never_rotate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    pub = EventsFilePublisher(EventsConfig(path=str(path), max_bytes=1024, backups=0))
    for i in range(40):  # well past max_bytes
        pub.publish_event(make_event(i))
    pub.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert len(read_lines(path)) == 40


def test_parent_that_is_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    target = blocker / "events.jsonl"
    with pytest.raises(PublishSetupError) as exc:
        EventsFilePublisher(EventsConfig(path=str(target)))
    msg = str(exc.value)
    assert str(target) in msg and "events.path" in msg


def test_path_that_is_a_directory_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PublishSetupError, match=r"events\.path.*directory"):
        EventsFilePublisher(EventsConfig(path=str(tmp_path)))


def test_read_only_file_gives_a_clear_error(tmp_path: Path) -> None:
    # /proc files exist but cannot be opened for appending, even by root.
    target = "/proc/version"
    with pytest.raises(PublishSetupError) as exc:
        EventsFilePublisher(EventsConfig(path=target))
    assert target in str(exc.value) and "events.path" in str(exc.value)


def test_write_failure_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    pub = EventsFilePublisher(EventsConfig(path=str(path)))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    pub.publish_event(make_event(0))  # must not take the daemon down
    pub.publish_event(make_event(1))
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "No space left" in errors[0].getMessage()
    monkeypatch.undo()
    pub.publish_event(make_event(2))
    assert any("works again" in r.getMessage() for r in caplog.records)
    pub.close()
    with pytest.raises(RuntimeError, match="closed"):
        pub.publish_event(make_event(3))


def test_build_publishers_and_fan_out_isolation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edge.config import parse_config
    from edge.publish import MultiPublisher, build_publishers
    from edge.publish.base import Publisher

    cfg = parse_config({"events": {"path": str(tmp_path / "events.jsonl")}})
    multi = build_publishers(cfg, ["drive"])
    assert [type(p).__name__ for p in multi.publishers] == ["EventsFilePublisher"]

    class Broken(Publisher):
        def publish_event(self, event: Event) -> None:
            raise OSError("broken pipe")

    fan = MultiPublisher([Broken(), *multi.publishers])
    fan.publish_event(make_event(0))  # the broken one must not stop the file from getting it
    fan.publish_state("drive", True, 0.9)
    fan.flush(0.1)
    fan.close()
    assert [line["frame_id"] for line in read_lines(tmp_path / "events.jsonl")] == [0]
    assert any("Broken.publish_event failed" in r.getMessage() for r in caplog.records)


def test_file_folder_and_rotated_file_are_private_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    """Events say when someone is home: 0640 file, 0750 folder, even under umask 000."""
    path = tmp_path / "state" / "events.jsonl"
    pub = EventsFilePublisher(EventsConfig(path=str(path), max_bytes=1024, backups=2))
    try:
        for i in range(12):  # > 1024 bytes: at least one rotation creates a new live file
            pub.publish_event(make_event(i))
    finally:
        pub.close()
    assert (tmp_path / "state" / "events.jsonl.1").exists(), "no rotation happened"
    assert mode(path.parent) == 0o750
    assert mode(path) == 0o640
