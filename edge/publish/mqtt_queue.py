"""The MQTT publisher's durable queue: pending events, in order, in a JSON-lines log.

Every event is appended and fsync'd before publish_event returns, so neither a broker
outage nor a power cut loses it; it leaves the file only when the broker's PUBACK arrives.
The queue knows nothing about MQTT: the publisher's sender thread takes events from it
(`take`) and reports acknowledgements (`done`).

Why not stdlib sqlite3 (WAL)? It was measured, not assumed: a sqlite3 queue with the same
interface (WAL, synchronous=FULL per insert, a DELETE per acknowledgement) behind the same
MqttPublisher, on the two fault tests (ext4, 2 shared cores, 600 events at ~200/s with the
broker SIGKILLed after 200 and restarted after 400; then SIGTERM with 500 events and a
SIGSTOPped broker). Both delivered events 200..599 exactly once and in order, and both
closed in 0.88-0.94 s against the hung broker (that is the close budget, not the queue).
publish_event cost the same within the noise of a shared machine (p50 0.4-2.9 ms, p99
3-37 ms for either). What differed: sqlite wrote 9.8-9.9 MB to disk for those 600 events,
this log 2.5-4.0 MB (2.5-4x less wear on a Pi's SD card), while sqlite loaded a 10,000-event
backlog at start in 0.04-0.06 s against 0.10-0.31 s here, once per start. Lower SD wear on
every event beats a faster start after a long outage, and this log is one file a person can
read with `jq`; so it stays. Torn last lines (power cut mid-append) are skipped and
counted on load, see open().
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edge.files import open_append, open_replace
from edge.publish import PublishSetupError, prepare_file_path

log = logging.getLogger(__name__)


@dataclass(eq=False)
class QueuedEvent:
    seq: int
    msg: Any  # the JSON-able event dict
    handed: bool = False  # given to paho (paho re-sends it on reconnect by itself)
    done: bool = False

    def payload(self) -> bytes:
        return json.dumps(self.msg).encode("utf-8")


@dataclass
class DiskQueue:
    """Pending events, in order, mirrored to a JSON-lines log.

    Lines are {"seq": n, "msg": {...}} when an event is queued and {"done": n} when it was
    acknowledged or dropped; the file is compacted when done lines outnumber pending ones,
    so a long outage costs O(n) disk writes, not O(n^2).
    """

    path: Path
    max_items: int
    items: dict[int, QueuedEvent] = field(default_factory=dict)
    unhanded: deque[QueuedEvent] = field(default_factory=deque)
    next_seq: int = 0
    _file: IO[bytes] | None = None
    _done_lines: int = 0
    _disk_ok: bool = True
    _closed: bool = False

    def check(self) -> None:
        """What open() will need, without touching the file: a SIGHUP reload checks the new
        queue path before the running publisher gives up its queue."""
        prepare_file_path(self.path, "MQTT queue file", "mqtt.queue_path", "/var/lib/car-detector/mqtt-queue.jsonl")
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise self._setup_error("read and write it", PermissionError(13, "Permission denied"))
        if not os.access(self.path.parent, os.W_OK | os.X_OK):  # compaction: tmp + rename
            raise self._setup_error(f"create files in {self.path.parent}", PermissionError(13, "Permission denied"))

    def open(self) -> list[QueuedEvent]:
        """Load the backlog a previous run left; returns the items dropped by max_items."""
        self.check()
        bad = self._load()
        if bad:
            log.warning("MQTT queue %s: skipped %d unreadable line(s) (torn write?)", self.path, bad)
        dropped = self._enforce_bound()
        try:
            self._rewrite()
        except OSError as exc:
            raise self._setup_error("write it", exc) from None
        if self.items:
            log.info("MQTT queue %s: %d event(s) from a previous run will be re-sent", self.path, len(self.items))
        return dropped

    def _setup_error(self, what: str, exc: OSError) -> PublishSetupError:
        return PublishSetupError(
            f"MQTT queue file {self.path} (config key mqtt.queue_path): cannot {what}: "
            f"{exc.strerror or exc}; point mqtt.queue_path at a writable location"
        )

    def _load(self) -> int:
        bad = 0
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._setup_error("read it", exc) from None
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if "seq" in rec:
                    seq = int(rec["seq"])
                    self.items[seq] = QueuedEvent(seq, rec["msg"])
                else:
                    seq = int(rec["done"])
                    self.items.pop(seq, None)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            self.next_seq = max(self.next_seq, seq + 1)
        self.items = dict(sorted(self.items.items()))
        self.unhanded = deque(self.items.values())
        return bad

    def _enforce_bound(self) -> list[QueuedEvent]:
        dropped = []
        while len(self.items) > self.max_items:
            oldest = self.items.pop(next(iter(self.items)))
            if self.unhanded and self.unhanded[0] is oldest:
                self.unhanded.popleft()
            oldest.done = True
            dropped.append(oldest)
        return dropped

    def _write(self, rec: dict[str, Any], sync: bool) -> None:
        """Append one record; a failing disk degrades to memory-only, loudly, once."""
        if self._closed:  # a late ack after close(): the file may have a new owner (reload)
            return
        try:
            if self._file is None:
                self._file = open_append(self.path)
            self._file.write((json.dumps(rec, separators=(",", ":")) + "\n").encode("utf-8"))
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            if self._disk_ok:
                log.error("MQTT queue %s: cannot write (%s); events are kept in memory only "
                          "until it works again (mqtt.queue_path)", self.path, exc)
            self._disk_ok = False
            return
        if not self._disk_ok:
            log.warning("MQTT queue %s: writing works again", self.path)
            self._disk_ok = True

    def _rewrite(self) -> None:
        """Replace the file by just the pending items (atomic: tmp + rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open_replace(tmp) as f:
            for item in self.items.values():
                f.write((json.dumps({"seq": item.seq, "msg": item.msg}, separators=(",", ":")) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        if self._file is not None:
            self._file.close()
            self._file = None
        os.replace(tmp, self.path)
        self._file = open_append(self.path)
        self._done_lines = 0

    def append(self, msg: Any) -> list[QueuedEvent]:
        """Queue one event; returns the oldest items dropped to stay within max_items."""
        item = QueuedEvent(self.next_seq, msg)
        self.next_seq += 1
        self.items[item.seq] = item
        self.unhanded.append(item)
        self._write({"seq": item.seq, "msg": msg}, sync=True)
        dropped = self._enforce_bound()
        for d in dropped:
            self._write({"done": d.seq}, sync=False)
        self._done_lines += len(dropped)
        self._maybe_compact()
        return dropped

    def take(self, limit: int) -> list[QueuedEvent]:
        """The next not-yet-handed items, oldest first, keeping at most `limit` in flight."""
        room = limit - (len(self.items) - len(self.unhanded))
        out = []
        while room > 0 and self.unhanded:
            item = self.unhanded.popleft()
            item.handed = True
            out.append(item)
            room -= 1
        return out

    def done(self, item: QueuedEvent) -> None:
        """Acknowledged: forget it (a no-op if it was already dropped)."""
        if item.done:
            return
        item.done = True
        if self.items.pop(item.seq, None) is None:
            return
        self._write({"done": item.seq}, sync=False)
        self._done_lines += 1
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._done_lines == 0 or not self._disk_ok or self._closed:
            return
        if not self.items or self._done_lines > max(256, len(self.items)):
            try:
                self._rewrite()
            except OSError as exc:
                log.error("MQTT queue %s: compaction failed: %s", self.path, exc)

    def close(self) -> None:
        """Compact and let go of the file for good: after this nothing here writes to it,
        since the next owner (a reloaded publisher, the next start) may already have it."""
        if self._closed:
            return
        self._closed = True
        if self._file is not None:
            if self._done_lines and self._disk_ok:
                try:
                    self._rewrite()
                except OSError as exc:
                    log.error("MQTT queue %s: compaction failed: %s", self.path, exc)
            if self._file is not None:
                self._file.close()
                self._file = None
