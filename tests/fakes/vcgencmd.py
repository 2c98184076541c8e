"""A fake `vcgencmd` runner for edge.platform.PlatformProbe (the Pi-only seam)."""

from __future__ import annotations

import subprocess


class VcgencmdRunner:
    """Answers like the Pi's `vcgencmd` does, byte for byte (including the trailing newline
    and the `'C` unit), and records the argv it was called with."""

    def __init__(self, temp: str = "48.3", throttled: str = "0x50005") -> None:
        self.temp, self.throttled = temp, throttled
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> str:
        self.calls.append(list(cmd))
        if cmd[1:] == ["measure_temp"]:
            return f"temp={self.temp}'C\n"
        if cmd[1:] == ["get_throttled"]:
            return f"throttled={self.throttled}\n"
        raise subprocess.CalledProcessError(255, cmd, output='error=1 error_msg="Command not registered"\n')


def failing_runner(cmd: list[str]) -> str:
    """vcgencmd without access to /dev/vchiq (user not in the `video` group) exits non-zero."""
    raise subprocess.CalledProcessError(255, cmd, output="VCHI initialization failed\n")
