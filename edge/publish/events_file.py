"""The events file: an append-only JSON-lines record that survives power cuts.

Every event is flushed and fsync'd before publish_event returns, because a Pi in a garage
loses power without warning and an event that only reached the page cache is lost.
Rotation is size-based (events.jsonl -> events.jsonl.1 ... .N) so the SD card never fills.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO

from edge.config import EventsConfig
from edge.events import Event
from edge.files import open_append
from edge.publish import PublishSetupError, prepare_file_path
from edge.publish.base import CLOSE_TIMEOUT_S, Publisher

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    """Make renames durable too; best effort (not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class EventsFilePublisher(Publisher):
    """Appends Event.to_dict() lines to cfg.path.

    cfg.backups = 0 means "never rotate" (the logging.RotatingFileHandler convention),
    not "delete the history": this file is the record of last resort.
    """

    def __init__(self, cfg: EventsConfig) -> None:
        self.path = Path(cfg.path)
        self.max_bytes = cfg.max_bytes
        self.backups = cfg.backups
        self._lock = threading.Lock()
        self._write_failed = False
        self._closed = False
        self._file: IO[bytes] | None = self._open()

    def _setup_error(self, what: str, exc: OSError) -> PublishSetupError:
        reason = exc.strerror or str(exc)
        return PublishSetupError(
            f"events file {self.path} (config key events.path): cannot {what}: {reason}; "
            "point events.path at a writable location or fix the directory's owner/permissions"
        )

    def _open(self) -> IO[bytes]:
        """Open for append (never truncates), creating the parent directory."""
        prepare_file_path(self.path, "events file", "events.path", "/var/lib/car-detector/events.jsonl")
        try:
            return open_append(self.path)  # lives as long as the publisher; 0640 when new
        except OSError as exc:
            raise self._setup_error("open it for appending", exc) from None

    def _rotate(self) -> None:
        """Shift .1 -> .2 ... and the live file to .1; the oldest backup falls off the end."""
        assert self._file is not None
        self._file.close()
        self._file = None
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        _fsync_dir(self.path.parent)
        self._file = open_append(self.path)

    def publish_event(self, event: Event) -> None:
        line = (json.dumps(event.to_dict(), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"events file {self.path} is closed; publish_event after close()")
            try:
                if self._file is None:  # an earlier rotation failed half way
                    self._file = open_append(self.path)
                size = self._file.tell()
                if self.backups > 0 and size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                    assert self._file is not None
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                # Disk full or the card went read-only: keep the daemon (and MQTT) running,
                # but say so loudly the first time and again when it recovers.
                if not self._write_failed:
                    log.error("cannot write event to %s: %s (events.path)", self.path, exc)
                self._write_failed = True
                return
            if self._write_failed:
                log.warning("writing events to %s works again", self.path)
                self._write_failed = False

    def flush(self, timeout_s: float = 1.0) -> None:
        """Nothing to do: every event is already on disk when publish_event returns."""

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Nothing to wait for (see flush); timeout_s is the Publisher contract."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                try:
                    self._file.close()
                finally:
                    self._file = None
