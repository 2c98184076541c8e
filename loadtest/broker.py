"""The one real mosquitto of a load test: started, SIGKILLed and restarted on one port.

Persistence is on (saved every second) so the recorder's persistent session and
subscription survive a kill: after a restart the daemons may reconnect before the recorder
does, and the broker must queue their events for it instead of dropping them, or the test
would count the harness's own blind spot as a lost event.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.procs import ProcessRegistry, cpu_seconds, memory_kb

MOSQUITTO_FALLBACK = "/usr/sbin/mosquitto"  # Debian installs it outside a user's PATH


class BrokerError(RuntimeError):
    """mosquitto is missing, exits, or does not listen in time."""


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (MOSQUITTO_FALLBACK if os.path.exists(MOSQUITTO_FALLBACK) else None)
    if not found:
        raise BrokerError("mosquitto is not installed: `sudo apt-get install mosquitto` "
                          "(the load test runs a real broker on 127.0.0.1)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BrokerUsage:
    """CPU and memory of every mosquitto incarnation, read from /proc before each kill."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_kb: int = 0
    rss_samples_kb: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "cpu_s": round(self.cpu_s, 2),
            "cpu_percent_of_one_core": round(100.0 * self.cpu_s / self.wall_s, 1) if self.wall_s else None,
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            "last_rss_mb": round(self.rss_samples_kb[-1] / 1024, 1) if self.rss_samples_kb else None,
        }


class Broker:
    def __init__(self, registry: ProcessRegistry, workdir: Path, binary: str | None = None) -> None:
        self.registry = registry
        self.binary = binary or find_mosquitto()
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        persist = workdir / "mosquitto-db"
        persist.mkdir(exist_ok=True)
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Stay who we are: a broker started as root would switch to the mosquitto user, and
            # a change of user clears the parent-death signal that ends it with the harness.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "persistence true\n"
            f"persistence_location {persist}/\n"
            "autosave_interval 1\n"
            # the recorder must never be the one that drops (default: 1000 per client)
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.usage = BrokerUsage()
        self._started_at = 0.0
        self._cpu_at_start = 0.0

    def start(self, timeout_s: float = 10.0) -> float:
        """Start and wait until it accepts connections; returns that moment (epoch seconds)."""
        if self.proc is not None:
            raise BrokerError("broker already running")
        self.proc = self.registry.spawn([self.binary, "-c", str(self.conf)], self.log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self._started_at = time.monotonic()
                    self._cpu_at_start = cpu_seconds(self.proc.pid) or 0.0
                    return time.time()
            except OSError:
                time.sleep(0.01)
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def sample(self) -> None:
        """Record the running broker's RSS (called periodically by the harness)."""
        if self.proc is not None:
            rss = memory_kb(self.proc.pid).get("VmRSS")
            if rss:
                self.usage.rss_samples_kb.append(rss)

    def kill(self) -> float:
        """SIGKILL (no goodbye to anyone, like a power cut); returns the moment (epoch s)."""
        if self.proc is None:
            raise BrokerError("broker not running")
        self._account()
        proc, self.proc = self.proc, None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        return time.time()

    def stop(self) -> None:
        if self.proc is not None:
            self._account()
            proc, self.proc = self.proc, None
            self.registry.terminate([proc])

    def _account(self) -> None:
        assert self.proc is not None
        self.sample()
        cpu = cpu_seconds(self.proc.pid)
        if cpu is not None:
            self.usage.cpu_s += cpu - self._cpu_at_start
        self.usage.wall_s += time.monotonic() - self._started_at
        self.usage.peak_rss_kb = max(self.usage.peak_rss_kb, memory_kb(self.proc.pid).get("VmHWM", 0))
