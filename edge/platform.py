"""The Pi-only readings (SoC temperature, throttling) behind one small seam.

On a Pi, `vcgencmd` reports them; elsewhere they are absent, and the latency line simply
leaves them out. Tests inject a fake runner.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

Runner = Callable[[list[str]], str]
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
# `vcgencmd measure_temp` prints "temp=48.3'C"; a bare "[\d.]+" would also accept "temp=."
# and then float() would raise, breaking the "never raises" promise.
_TEMP = re.compile(r"temp=(-?\d+(?:\.\d+)?)")
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+)")
# What a runner may raise: a missing/unrunnable binary, non-zero exit, timeout, undecodable output.
_RUN_ERRORS = (OSError, subprocess.SubprocessError, ValueError)


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=2, check=True).stdout


class PlatformProbe:
    """Reads temperature and `get_throttled` when available; never raises."""

    def __init__(self, runner: Runner | None = None, vcgencmd: str | None = None, thermal: Path = THERMAL) -> None:
        self.vcgencmd = vcgencmd if vcgencmd is not None else shutil.which("vcgencmd")
        self.runner = runner or _run
        self.thermal = thermal

    def temperature_c(self) -> float | None:
        if self.vcgencmd:
            try:
                m = _TEMP.search(self.runner([self.vcgencmd, "measure_temp"]))
                if m:
                    return float(m.group(1))
            except _RUN_ERRORS:
                pass
        try:
            return int(self.thermal.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            return None

    def throttled(self) -> int | None:
        """The get_throttled bit field (0 = fine; bit 0 under-voltage, bit 2 throttled, ...)."""
        if not self.vcgencmd:
            return None
        try:
            m = _THROTTLED.search(self.runner([self.vcgencmd, "get_throttled"]))
        except _RUN_ERRORS:
            return None
        return int(m.group(1), 16) if m else None

    def readings(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        t = self.temperature_c()
        if t is not None:
            out["soc_temp_c"] = t
        th = self.throttled()
        if th is not None:
            out["throttled"] = th
        return out
