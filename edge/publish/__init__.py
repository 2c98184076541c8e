"""Publishers: where events, per-zone state and stats leave the daemon.

Submodules are imported lazily by `build_publishers` so a Pi with MQTT switched off does
not need paho-mqtt installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.events import Event
from edge.files import make_dirs
from edge.publish.base import CLOSE_TIMEOUT_S, Publisher

if TYPE_CHECKING:  # pragma: no cover
    from edge.config import Config

log = logging.getLogger(__name__)


class PublishSetupError(RuntimeError):
    """A publisher that cannot start because of its configuration or the file system.

    Raised at startup only (never from publish_*), so a misconfigured unit fails loudly
    instead of silently dropping events.
    """


def prepare_file_path(path: Path, what: str, key: str, example: str) -> None:
    """Create the parent folder of a file a publisher appends to, or say what is wrong.

    `what` names the file for people ("events file"), `key` the config key to fix.
    Folders it creates are 0750 whatever the umask (see edge.files).
    """
    try:
        make_dirs(path.parent)
    except OSError as exc:
        raise PublishSetupError(
            f"{what} {path} (config key {key}): cannot create directory {path.parent}: "
            f"{exc.strerror or exc}; point {key} at a writable location or fix the directory's owner/permissions"
        ) from None
    if path.is_dir():
        raise PublishSetupError(f"{what} {path} (config key {key}) is a directory; give a file name such as {example}")


class MultiPublisher(Publisher):
    """Fans out to several publishers; one failing must not starve the others, because
    the events file is the record of last resort when MQTT misbehaves (and vice versa)."""

    def __init__(self, publishers: Iterable[Publisher]) -> None:
        self.publishers = list(publishers)

    def _each(self, what: str, *args: Any) -> None:
        for pub in self.publishers:
            try:
                getattr(pub, what)(*args)
            except Exception:
                log.exception("%s.%s failed", type(pub).__name__, what)

    def start(self, drop_failed: bool = False) -> None:
        """Start each publisher. drop_failed (a reload, after the old publishers are closed):
        one that cannot start is logged and left out, so the others, the events file above
        all, keep recording; otherwise (daemon start) the error ends the start-up."""
        for pub in list(self.publishers):
            try:
                pub.start()
            except Exception as exc:
                if not drop_failed:
                    raise
                log.error("%s cannot start (%s); it stays off until the config is fixed and "
                          "reloaded", type(pub).__name__, exc)
                self.publishers.remove(pub)

    def publish_event(self, event: Event) -> None:
        self._each("publish_event", event)

    def publish_state(self, zone: str, present: bool, score: float) -> None:
        self._each("publish_state", zone, present, score)

    def publish_stats(self, stats: dict[str, Any]) -> None:
        self._each("publish_stats", stats)

    def publish_snapshot(self, jpeg: bytes) -> None:
        self._each("publish_snapshot", jpeg)

    def forget_zones(self, zones: list[str]) -> None:
        self._each("forget_zones", zones)

    def flush(self, timeout_s: float = 1.0) -> None:
        self._each("flush", timeout_s)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """One deadline for all: each publisher gets what the previous ones left over."""
        deadline = time.monotonic() + timeout_s
        for pub in self.publishers:
            try:
                pub.close(max(0.0, deadline - time.monotonic()))
            except Exception:
                log.exception("%s.close failed", type(pub).__name__)


def build_publishers(cfg: Config, zones: list[str], on_queue_depth: Callable[[int], None] | None = None,
                     start: bool = True, on_identity_conflict: Callable[[], None] | None = None
                     ) -> MultiPublisher:
    """The publishers the config asks for: the events file always, MQTT when enabled.

    on_queue_depth: told the number of events waiting for the broker whenever it changes.
    on_identity_conflict: called when another daemon claims this camera.id on the broker.
    start=False: checked and built, not started (see Publisher.start); for a reload.
    """
    from edge.publish.events_file import EventsFilePublisher

    pubs: list[Publisher] = [EventsFilePublisher(cfg.events)]
    if cfg.mqtt.enabled:
        from edge.publish.mqtt import MqttPublisher

        try:
            pubs.append(MqttPublisher(cfg.mqtt, zones, camera_id=cfg.camera.id, on_queue_depth=on_queue_depth,
                                      on_identity_conflict=on_identity_conflict, start=False))
        except BaseException:
            pubs[0].close()
            raise
    multi = MultiPublisher(pubs)
    if start:
        try:
            multi.start()
        except BaseException:
            multi.close()
            raise
    return multi


__all__ = ["MultiPublisher", "PublishSetupError", "Publisher", "build_publishers"]
