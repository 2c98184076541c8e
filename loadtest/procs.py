"""Child processes the load test starts, and the guarantee that none outlives it.

Every child runs in its own process group (so a kill reaches whatever it starts), under
`setpriv --pdeathsig SIGKILL` (so even a SIGKILLed harness takes its children with it),
and carries FLEET_RUN_ENV=<run id> in its environment (so a test can look through /proc
for anything left behind). The registry's cleanup runs from `finally`, atexit and the
SIGTERM/SIGINT/SIGHUP handlers, whichever comes first; it is idempotent.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FLEET_RUN_ENV = "FLEET_TEST_RUN"  # marks every process a run starts (see processes_of_run)
_TERM_GRACE_S = 3.0  # SIGTERM, then SIGKILL: a daemon's own shutdown budget is 2 s


class Interrupted(Exception):
    """A signal asked the harness to stop; raised in the main thread so `finally` runs."""


def _pdeathsig_prefix() -> list[str]:
    found = shutil.which("setpriv")
    return [found, "--pdeathsig", "SIGKILL", "--"] if found else []


class ProcessRegistry:
    """Starts children and ends every one of them, by process group, exactly once."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.procs: list[subprocess.Popen[bytes]] = []
        self._prefix = _pdeathsig_prefix()
        self._old_handlers: dict[int, Any] = {}
        self._closed = False

    def install(self) -> None:
        """atexit + signal handlers; call from the main thread."""
        atexit.register(self.cleanup)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    def spawn(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start argv in a new session, stdout and stderr appended to log_path."""
        if self._closed:
            raise RuntimeError("ProcessRegistry.spawn after cleanup")
        full_env = {**os.environ, **(env or {}), FLEET_RUN_ENV: self.run_id}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([*self._prefix, *argv], stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                    cwd=cwd, start_new_session=True)
        self.procs.append(proc)
        return proc

    def terminate(self, procs: Sequence[subprocess.Popen[bytes]], grace_s: float = _TERM_GRACE_S) -> list[int]:
        """SIGTERM each group, wait up to grace_s, SIGKILL the rest; returns pids that needed SIGKILL."""
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        killed = []
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(p.pid)
                _signal_group(p, signal.SIGKILL)
                p.wait(timeout=5)
            _signal_group(p, signal.SIGKILL)  # anything the child started and left behind
        return killed

    def cleanup(self) -> None:
        """End every child still running (idempotent), then restore the signal handlers."""
        if self._closed:
            return
        self._closed = True
        for sig in self._old_handlers:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            log.info("stopping %d process(es) still running", len(alive))
        self.terminate(alive)
        for p in self.procs:
            _signal_group(p, signal.SIGKILL)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        atexit.unregister(self.cleanup)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def processes_of_run(run_id: str) -> list[int]:
    """Pids of live processes whose environment carries this run's marker (zombies excluded)."""
    needle = f"{FLEET_RUN_ENV}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and _state(entry) != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _state(proc_dir: Path) -> str:
    stat = (proc_dir / "stat").read_text()
    return stat[stat.rindex(")") + 2:].split()[0]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB from /proc/<pid>/status; {} once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat: the whole machine's load,
    which on a shared box includes other people's work (reported as such)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user..steal; guest time is already inside user
    return float(total - idle), float(total)
