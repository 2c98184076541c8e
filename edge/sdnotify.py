"""systemd's sd_notify protocol, spoken directly (no libsystemd binding on the Pi needed).

Type=notify units wait for READY=1; WatchdogSec= units are restarted when WATCHDOG=1 stops
arriving, which is how a hung camera turns into a restart instead of a silent outage.
Outside systemd (NOTIFY_SOCKET unset) every call is a no-op, so the same daemon runs in a
terminal or in tests unchanged.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    """'@name' is Linux's abstract namespace, spelled with a leading NUL on the wire."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class Notifier:
    """Sends sd_notify datagrams; never raises, because a lost notification must not take
    the frame loop down (systemd's own watchdog is the backstop)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = _address(raw) if raw else None
        self._raw_address = raw
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed_once = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send one raw notification; True when it went out."""
        if self._address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode("utf-8"), self._address)
                return True
            except OSError as exc:
                if not self._failed_once:
                    log.warning("sd_notify to %s failed: %s (further failures logged at debug)",
                                self._raw_address, exc)
                    self._failed_once = True
                else:
                    log.debug("sd_notify to %s failed: %s", self._raw_address, exc)
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self) -> bool:
        """Sent after every completed frame (progress, not a timer): at any fps above
        2/WatchdogSec that is already more often than systemd asks, so no interval is kept."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """Type=notify-reload (systemd 253+) needs the monotonic timestamp of the reload."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    """A newline would start a new KEY=VALUE assignment in the datagram."""
    return " ".join(text.splitlines())
