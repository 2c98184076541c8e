"""A real mosquitto broker on 127.0.0.1 for the MQTT tests.

The broker can be stopped and started again on the same port mid-test, which is how the
outage tests cut the connection the way a rebooting home server does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (MOSQUITTO if os.path.exists(MOSQUITTO) else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "mosquitto"], check=True, env=env,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"mosquitto is not installed and `apt-get install mosquitto` failed: {exc} "
                    f"{detail.decode(errors='replace')[-500:]}")
    found = shutil.which("mosquitto") or (MOSQUITTO if os.path.exists(MOSQUITTO) else None)
    if not found:
        pytest.fail("apt-get installed mosquitto but no mosquitto binary is on PATH or at /usr/sbin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process at a time on a fixed port; stop()/start() simulate an outage."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            assert self.proc is None, "broker already running"
            logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf, stderr=logf)
            logf.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s}s")

    def stop(self) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is read or acknowledged, which leaves
        a client's QoS 1 messages in flight."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL (works on a paused broker too): the kernel drops every connection."""
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def mosquitto_binary() -> str:
    return _mosquitto_binary()


@pytest.fixture
def mosquitto(mosquitto_binary: str, tmp_path: Path) -> Iterator[Broker]:
    """A running broker on a free 127.0.0.1 port, stopped at the end of the test."""
    broker = Broker(mosquitto_binary, tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_stopped(mosquitto_binary: str, tmp_path: Path) -> Iterator[Broker]:
    """A broker configured on a free port but not started (the test starts it)."""
    broker = Broker(mosquitto_binary, tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The most permissive umask: files and folders must still come out 0640/0750."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
